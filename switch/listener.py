"""Trio shell: one acquirer listener and its connections.

Each connection gets its own nursery, a FrameDecoder and a coalescing
:class:`~switch.outbox.Outbox` (one sender per stream: answers that are ready
together go out in one ``send_all``). Every frame is processed in its own task, so many requests are
in flight per connection and answers go back in whatever order they finish.

Blast radius: a frame that cannot be answered (no readable MTI/F11) or a
broken length prefix closes *that* connection with a logged reason; other
connections and their transactions carry on. So does an acquirer that stops
reading its answers: the connection stops reading too once answers pile up,
and is closed when it has taken none for ``idle_timeout``. And one that
sends faster than the switch answers: past ``_MAX_INFLIGHT`` requests in the
switch the connection reads no more until one is done, so TCP holds the
rest back instead of the switch's memory.
"""

from __future__ import annotations

import logging
import ssl
from time import perf_counter
from typing import Any

import trio

import specs
from switch.config import ListenerConfig
from switch.errors import CodecError, FramingError, reason_of
from switch.framing import FrameDecoder, Framing, encode_frame
from switch.guard import Guard
from switch.keys import KeyStore
from switch.outbox import Outbox
from switch.processor import Processor

__all__ = ["Listener"]

log = logging.getLogger("switch.listener")

# Answers queued behind a send the acquirer is not taking: past this many the
# connection stops reading, so TCP pushes back on the acquirer instead of its
# answers piling up in memory.
_MAX_BACKLOG = 1024
# Requests of one connection in the switch at once: past this many it stops
# reading until one is answered, so an acquirer sending faster than the
# switch and its issuers answer is held back by TCP, not by the switch's memory.
_MAX_INFLIGHT = 4096


class Listener:
    def __init__(
        self,
        config: ListenerConfig,
        processor: Processor,
        *,
        spec_dirs: tuple[Any, ...] = (),
        ssl_context: ssl.SSLContext | None = None,
        keys: KeyStore | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.processor = processor
        self.spec = specs.load(config.spec, spec_dirs)
        self.guard = Guard(self.spec, keys, mac_key=config.mac_key, pin_key=config.pin_key)
        self.framing = Framing(
            kind=config.framing, header=config.header, max_frame=config.max_frame
        )
        self.ssl_context = ssl_context
        self.connections = 0
        self.accepted = 0
        self.closed_for_errors = 0
        self.port: int | None = None

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": f"{self.config.host}:{self.port or self.config.port}",
            "spec": self.config.spec,
            "connections": self.connections,
            "accepted": self.accepted,
            "closed_for_errors": self.closed_for_errors,
            "tls": self.ssl_context is not None,
        }

    async def run(
        self,
        *,
        handler_nursery: trio.Nursery | None = None,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections until cancelled.

        Connections run in ``handler_nursery`` when given, so that cancelling
        this task stops *accepting* while open connections finish their
        in-flight requests (graceful shutdown).
        """
        tcp = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
        self.port = tcp[0].socket.getsockname()[1]
        listeners: list[trio.abc.Listener[Any]] = list(tcp)
        if self.ssl_context is not None:
            listeners = [trio.SSLListener(t, self.ssl_context, https_compatible=False) for t in tcp]
        log.info(
            "listener %s on %s:%s (%s)", self.name, self.config.host, self.port, self.config.spec
        )
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(
                self._connection, listeners, handler_nursery=handler_nursery or nursery
            )

    async def _connection(self, stream: trio.abc.Stream) -> None:
        self.accepted += 1
        if self.connections >= self.config.max_connections:
            log.warning(
                "listener %s: refusing connection, %d already open", self.name, self.connections
            )
            await trio.aclose_forcefully(stream)
            return
        self.connections += 1
        conn = _Conn(Outbox(stream), _peer(stream))
        outbox = conn.outbox
        decoder = FrameDecoder(self.framing)
        try:
            # The watchdog runs beside the connection's nursery, not in it: the
            # nursery ends when the last request is answered, the watchdog never.
            async with trio.open_nursery() as guard:
                async with trio.open_nursery() as nursery:
                    conn.scope = nursery.cancel_scope
                    guard.start_soon(self._watch, conn)
                    try:
                        # One scope for the connection, its deadline pushed on by
                        # each read (not a scope per read); it cancels only the
                        # read: requests run in the nursery, outside it.
                        with trio.CancelScope() as idle:
                            while True:
                                idle.deadline = trio.current_time() + self.config.idle_timeout
                                await outbox.wait_below(_MAX_BACKLOG)
                                data = await stream.receive_some(65536)
                                if not data:
                                    break
                                read_at = perf_counter()
                                for frame in decoder.feed(bytes(data)):
                                    if conn.inflight >= _MAX_INFLIGHT:
                                        await conn.wait_room()
                                    conn.inflight += 1
                                    nursery.start_soon(self._process, frame, conn, read_at)
                                if decoder.error is not None:  # its frames are answered, then close
                                    raise decoder.error
                        if idle.cancelled_caught:
                            conn.reason = f"idle for {self.config.idle_timeout:.0f}s"
                    except FramingError as exc:
                        conn.reason = f"framing error: {exc}"
                        self.closed_for_errors += 1
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                        conn.reason = f"connection error: {reason_of(exc)}"  # a TLS refusal too
                    # Peer closed its sending side or idle: let in-flight requests
                    # finish and answer (half-close), then close.
                guard.cancel_scope.cancel()
        finally:
            self.connections -= 1
            log.info(
                "listener %s: connection from %s closed: %s",
                self.name,
                conn.peer,
                conn.reason or "closed by peer",
            )
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _watch(self, conn: _Conn) -> None:
        """Close a connection whose acquirer has taken no answer for ``idle_timeout``.

        It may still be writing, so the read side's idle deadline does not see
        it. One timer per connection, woken once a timeout while answers flow,
        instead of a deadline around every send.
        """
        timeout = self.config.idle_timeout
        outbox = conn.outbox
        while True:
            since = outbox.sending_since
            if since is None:
                await trio.sleep(timeout)  # a send that starts meanwhile is seen on waking
            elif trio.current_time() - since < timeout:
                await trio.sleep_until(since + timeout)
            else:
                self.closed_for_errors += 1
                log.warning(
                    "listener %s: closing connection from %s: it took no answer for %.0fs",
                    self.name,
                    conn.peer,
                    timeout,
                )
                # Over "idle": a read side that waited behind this send was not idle.
                conn.reason = f"took no answer for {timeout:.0f}s"
                conn.scope.cancel()
                return

    async def _process(self, frame: bytes, conn: _Conn, read_at: float) -> None:
        try:
            stages = self.processor.stages
            stages.add("queued", perf_counter() - read_at)
            with self.processor.hold():  # shutdown waits until the answer is on the stream
                try:
                    answer = await self.processor.handle(self.name, self.guard, frame)
                except CodecError as exc:
                    self.closed_for_errors += 1
                    log.warning(
                        "listener %s: closing connection from %s: unanswerable frame: %s",
                        self.name,
                        conn.peer,
                        exc,
                    )
                    conn.close(f"unanswerable frame: {exc}")
                    return
                if answer is None:
                    return
                answered_at = perf_counter()
                try:
                    await conn.outbox.send(encode_frame(self.guard.encode(answer), self.framing))
                    stages.add("answer_send", perf_counter() - answered_at)
                except CodecError as exc:
                    log.error("listener %s: cannot encode answer: %s", self.name, exc)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    log.warning(
                        "listener %s: answer to %s lost, connection gone: %s",
                        self.name,
                        conn.peer,
                        exc,
                    )
                    conn.close(f"answer lost: {exc}")
        finally:
            conn.answered()


class _Conn:
    """What the tasks of one acquirer connection share, and why it was closed."""

    __slots__ = ("_room", "inflight", "outbox", "peer", "reason", "scope")

    def __init__(self, outbox: Outbox, peer: str) -> None:
        self.outbox = outbox
        self.peer = peer
        self.reason: str | None = None  # None: the peer closed it
        self.scope = trio.CancelScope()  # the connection's nursery's, once it is open
        self.inflight = 0  # requests read and not yet done with
        self._room: trio.Event | None = None  # only while the reader waits for room

    async def wait_room(self) -> None:
        """Wait until a request in flight is done with."""
        self._room = room = trio.Event()
        await room.wait()

    def answered(self) -> None:
        """A request is done with (answered, or dropped): room for the next."""
        self.inflight -= 1
        if self._room is not None:
            self._room.set()
            self._room = None

    def close(self, reason: str) -> None:
        """Cancel the connection's nursery; the first reason given is the one logged."""
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()


def _peer(stream: trio.abc.Stream) -> str:
    inner = getattr(stream, "transport_stream", stream)
    sock = getattr(inner, "socket", None)
    try:
        host, port = sock.getpeername()[:2] if sock is not None else ("?", 0)
    except OSError:
        return "?"
    return f"{host}:{port}"
