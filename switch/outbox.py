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

A peer that stops reading must not hold the switch, and that is the
caller's to judge: :attr:`Outbox.sending_since` says since when the current
``send_all`` has waited for the stream to take its bytes (a watchdog of the
caller's closes a peer that takes nothing for too long), and
:meth:`wait_below` lets the reader of the same connection stop reading while
answers pile up behind a stalled flush. No deadline per send: a cancel scope
around each ``send_all`` would cost every answer (~3% of a lone
transaction's instructions) to catch a peer that almost never stalls.
"""

from __future__ import annotations

import trio

__all__ = ["Outbox"]


class Outbox:
    __slots__ = ("_chunks", "_flushing", "_taken", "gather", "sending_since", "stream")

    def __init__(self, stream: trio.abc.SendStream, *, gather: bool = True) -> None:
        self.stream = stream
        self.gather = gather
        # trio.current_time() when the send_all in progress began; None between sends.
        self.sending_since: float | None = None
        self._chunks: list[bytes] = []
        self._flushing = False
        self._taken: trio.Event | None = None  # only while wait_below() waits

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

    async def wait_below(self, limit: int) -> None:
        """Wait while ``limit`` or more messages are queued behind a flush."""
        while len(self._chunks) >= limit and self._flushing:
            if self._taken is None:
                self._taken = trio.Event()
            await self._taken.wait()

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
                self.sending_since = trio.current_time()
                await self.stream.send_all(data)
                self.sending_since = None
                self._wake()
        finally:
            self._flushing = False
            self.sending_since = None
            self._wake()

    def _wake(self) -> None:
        if self._taken is not None:
            self._taken.set()
            self._taken = None
