"""Coalescing writes on one stream: what is queued when it is free leaves in one ``send_all``.

Trio forbids two tasks in ``send_all`` on one stream, and every ``send_all``
is a system call and a trip through the scheduler; so the switch never sends
a message by itself when others are ready. An :class:`Outbox` has one sender
at a time: a task that finds a flush running leaves its bytes to it and
returns at once, and the flusher keeps sending until nothing is queued.

With ``gather`` (the default) the flusher first lets the tasks that are
already runnable queue their bytes: answers woken together by one journal
commit or one issuer read then leave in one ``send_all``, not one by one.

Used by the acquirer listener, the issuer link and the load driver (bench).
Errors of the stream reach the task that is flushing; the caller decides what
they mean (a lost answer, a link down).
"""

from __future__ import annotations

import trio

__all__ = ["Outbox"]


class Outbox:
    __slots__ = ("_chunks", "_flushing", "gather", "stream")

    def __init__(self, stream: trio.abc.SendStream, *, gather: bool = True) -> None:
        self.stream = stream
        self.gather = gather
        self._chunks: list[bytes] = []
        self._flushing = False

    def __len__(self) -> int:
        """Messages queued and not yet handed to the stream."""
        return len(self._chunks)

    def put(self, data: bytes) -> None:
        """Queue ``data`` for the next flush."""
        self._chunks.append(data)

    async def send(self, data: bytes) -> None:
        """Queue ``data`` and flush (or leave it to the flush already running)."""
        self._chunks.append(data)
        await self.flush()

    async def flush(self) -> None:
        """Send everything queued, in order; return at once if another task is flushing."""
        if self._flushing:
            return
        self._flushing = True
        chunks = self._chunks
        try:
            if self.gather:
                await trio.lowlevel.cancel_shielded_checkpoint()
            while chunks:
                data = b"".join(chunks) if len(chunks) > 1 else chunks[0]
                chunks.clear()
                await self.stream.send_all(data)
        finally:
            self._flushing = False
