"""Trio shell: the outbound link to one issuer network.

Owns the TCP connection(s) to the issuer's endpoints, the link's STAN space
and in-flight table (switch.matching), sign-on and echo (0800) both ways (the
issuer's own 0800 is answered, translate.network_answer), and the
reconnect loop with exponential backoff. It knows nothing of journals or
acquirers: ``exchange(message)`` sends one request and returns the answer,
or raises LinkDown / IssuerTimeout; late and unmatched answers are handed to
callbacks the server supplies.

Invariants:
- a request is in the in-flight table before its bytes leave, so an answer
  can never arrive "before" its request;
- each connection has exactly one sender at a time (coalescing outbox);
- a dead connection fails its own in-flight requests with LinkDown(sent=True)
  (they may have reached the issuer: the caller reverses them), never others'.

Timeouts: every request of a link waits the same ``config.timeout``, so their
deadlines come in the order they were sent. One expiry task per link wakes
at the oldest live deadline and times out what is due, instead of a cancel
scope per request (a deadline registered and removed in trio for every
message). Answered requests leave the deadline queue from its head as they
finish, so it holds only what is still waiting, and what came after it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

import specs
from switch import codec
from switch.config import Endpoint, IssuerConfig
from switch.errors import (
    CodecError,
    FramingError,
    IssuerTimeout,
    LinkDown,
    SecurityError,
    reason_of,
)
from switch.framing import FrameDecoder, Framing, encode_frame
from switch.guard import Guard
from switch.keys import KeyStore
from switch.matching import InFlight, StanAllocator, match_key
from switch.messages import F_KEY_BLOCK, F_NETWORK_MGMT, KEY_EXCHANGE, is_request
from switch.outbox import Outbox
from switch.translate import network_answer, transmission_time

__all__ = ["IssuerLink", "LinkStats"]

log = logging.getLogger("switch.link")

LateHandler = Callable[[Any, dict[str, str]], Awaitable[None]]
UnmatchedHandler = Callable[[str, dict[str, str] | None, str], Awaitable[None]]


@dataclass(slots=True)
class _Pending:
    message: dict[str, str]
    context: Any
    conn: _Conn
    done: trio.Event = field(default_factory=trio.Event)
    answer: dict[str, str] | None = None
    error: Exception | None = None
    deadline: float = math.inf  # trio time the link's expiry task gives up on it


@dataclass(slots=True)
class LinkStats:
    sent: int = 0
    answered: int = 0
    timeouts: int = 0
    late: int = 0
    unmatched: int = 0
    reconnects: int = 0
    last_echo: float | None = None
    last_error: str | None = None
    connected_to: str | None = None


class _Conn:
    """One connection: a stream, its decoder and a coalescing outbox."""

    def __init__(self, stream: trio.abc.Stream, framing: Framing, endpoint: Endpoint) -> None:
        self.stream = stream
        self.framing = framing
        self.endpoint = endpoint
        self.decoder = FrameDecoder(framing)
        self.outbox = Outbox(stream)
        self.alive = True
        self.last_activity = trio.current_time()

    async def send(self, data: bytes) -> None:
        try:
            await self.outbox.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.alive = False
            raise LinkDown(f"send to {self.endpoint} failed: {reason_of(exc)}") from None
        self.last_activity = trio.current_time()


class IssuerLink:
    def __init__(
        self,
        config: IssuerConfig,
        *,
        spec_dirs: tuple[Any, ...] = (),
        on_late: LateHandler | None = None,
        on_unmatched: UnmatchedHandler | None = None,
        ssl_context: ssl.SSLContext | None = None,
        keys: KeyStore | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.spec = specs.load(config.spec, spec_dirs)
        self.keys = keys
        self.guard = Guard(self.spec, keys, mac_key=config.mac_key, pin_key=config.pin_key)
        self.framing = Framing(
            kind=config.framing, header=config.header, max_frame=config.max_frame
        )
        self.stans = StanAllocator()
        self.in_flight: InFlight[_Pending] = InFlight(late_window=max(60.0, config.timeout * 20))
        self.stats = LinkStats()
        self.on_late = on_late
        self.on_unmatched = on_unmatched
        self.ssl_context = ssl_context
        self.admin_down = False
        self._conns: list[_Conn] = []
        self._rr = 0
        self.state = "down"
        self.up_event = trio.Event()
        self._changed = trio.Event()
        self._deadlines: deque[_Pending] = deque()  # in sending order
        self._expiry_kick = trio.Event()

    # -- what the processor calls -------------------------------------------------

    @property
    def is_up(self) -> bool:
        return bool(self._conns) and not self.admin_down

    def allocate_stan(self, mti: str) -> str:
        return self.stans.allocate(self.in_flight, mti)  # type: ignore[arg-type]

    async def exchange(
        self, message: dict[str, str], *, context: Any = None, timeout: float | None = None
    ) -> dict[str, str]:
        """Send ``message`` (F11 already the switch STAN) and wait for its answer.

        LinkDown(sent=False) means the bytes never left; LinkDown(sent=True)
        and IssuerTimeout mean the issuer may have it (reverse if it debits).
        """
        if not self.is_up:
            raise _down("link is down", sent=False)
        conn = self._pick()
        frame = encode_frame(self.guard.encode(message), self.framing)
        pending = _Pending(message=message, context=context, conn=conn)
        key = self.in_flight.add(message["t"], message["11"], pending)
        try:
            await conn.send(frame)
        except LinkDown as exc:
            self.in_flight.forget(key)
            await self._lost(conn, str(exc))
            raise _down(str(exc), sent=False) from None
        self.stats.sent += 1
        if timeout is None:
            await self._wait(pending)
        else:
            with trio.move_on_after(timeout):
                await pending.done.wait()
        if pending.answer is not None:
            self.stats.answered += 1
            return pending.answer
        if pending.error is not None:
            raise pending.error
        self.stats.timeouts += 1
        self.in_flight.give_up(key, trio.current_time())
        raise IssuerTimeout(f"{self.name}: no answer to STAN {message['11']} in time")

    async def _wait(self, pending: _Pending) -> None:
        """Wait for the answer; the expiry task ends the wait at ``config.timeout``."""
        deadlines = self._deadlines
        pending.deadline = trio.current_time() + self.config.timeout
        deadlines.append(pending)
        if len(deadlines) == 1:
            self._expiry_kick.set()  # the expiry task sleeps until it has a deadline
        try:
            await pending.done.wait()
        finally:
            pending.done.set()  # timed out, answered or cancelled: no longer waiting
            while deadlines and deadlines[0].done.is_set():
                deadlines.popleft()

    async def _expire(self) -> None:
        """Time out waiting requests at their deadline (one task per link)."""
        deadlines = self._deadlines
        while True:
            now = trio.current_time()
            while deadlines and (deadlines[0].done.is_set() or deadlines[0].deadline <= now):
                deadlines.popleft().done.set()  # a timeout when no answer came
            self._expiry_kick = trio.Event()
            with trio.move_on_at(deadlines[0].deadline if deadlines else math.inf):
                await self._expiry_kick.wait()

    def _notify(self) -> None:
        """Wake every task waiting for a change of link state."""
        self._changed.set()
        self._changed = trio.Event()

    def set_admin_down(self, down: bool) -> None:
        """Operator action: a link set down answers 91 at once and drops its connections."""
        self.admin_down = down
        self._notify()
        if down:
            for conn in list(self._conns):
                conn.alive = False

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": "admin-down" if self.admin_down else self.state,
            "connections": len(self._conns),
            "endpoint": self.stats.connected_to,
            "in_flight": len(self.in_flight),
            "sent": self.stats.sent,
            "answered": self.stats.answered,
            "timeouts": self.stats.timeouts,
            "late": self.stats.late,
            "unmatched": self.stats.unmatched,
            "reconnects": self.stats.reconnects,
            "last_echo": self.stats.last_echo,
            "last_error": self.stats.last_error,
        }

    # -- the shell ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep ``config.connections`` connections up until cancelled."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire)
            for slot in range(self.config.connections):
                nursery.start_soon(self._keep_connected, slot)

    async def _keep_connected(self, slot: int) -> None:
        delay = self.config.reconnect_min
        attempt = 0
        while True:
            if self.admin_down:
                await self._changed.wait()
                continue
            endpoint = self.config.endpoints[(slot + attempt) % len(self.config.endpoints)]
            try:
                stream = await self._connect(endpoint)
            except (OSError, LinkDown, trio.TooSlowError) as exc:
                self.stats.last_error = f"connect {endpoint}: {exc or 'timed out'}"
                log.warning("link %s: cannot connect to %s: %s", self.name, endpoint, exc)
                attempt += 1
                with trio.move_on_after(delay):
                    await self._changed.wait()
                delay = min(delay * 2, self.config.reconnect_max)
                continue
            conn = _Conn(stream, self.framing, endpoint)
            signed_on = False
            self.stats.connected_to = str(endpoint)
            log.info("link %s: connected to %s", self.name, endpoint)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read, conn, nursery.cancel_scope)
                    # Errors are caught here, inside the nursery: escaping it they
                    # would arrive wrapped in an ExceptionGroup and take the switch down.
                    try:
                        await self._sign_on(conn)
                    except (LinkDown, IssuerTimeout) as exc:
                        self.stats.last_error = f"sign-on: {exc}"
                        log.warning("link %s: %s", self.name, self.stats.last_error)
                        nursery.cancel_scope.cancel()
                    else:
                        signed_on = True
                        delay = self.config.reconnect_min
                        self._conns.append(conn)
                        self.state = "up"
                        self.up_event.set()
                        nursery.start_soon(self._echo, conn, nursery.cancel_scope)
                        while conn.alive and not self.admin_down:
                            await self._changed.wait()
                        nursery.cancel_scope.cancel()
            finally:
                await self._lost(conn, self.stats.last_error or "closed")
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
            self.stats.reconnects += 1
            attempt += 1
            if not self.admin_down:
                await trio.sleep(delay)
            if not signed_on:  # it never came up (e.g. TLS refused our certificate): back off
                delay = min(delay * 2, self.config.reconnect_max)

    async def _connect(self, endpoint: Endpoint) -> trio.abc.Stream:
        with trio.fail_after(max(self.config.timeout, 1.0)):
            if self.ssl_context is None:
                return await trio.open_tcp_stream(endpoint.host, endpoint.port)
            from switch import tls  # cryptography is loaded only for TLS

            try:  # handshaken here: an issuer that does not verify never counts as connected
                return await tls.open_stream(endpoint.host, endpoint.port, self.ssl_context)
            except trio.BrokenResourceError as exc:
                raise LinkDown(f"TLS handshake: {reason_of(exc)}") from None

    async def _lost(self, conn: _Conn, reason: str) -> None:
        conn.alive = False
        if conn in self._conns:
            self._conns.remove(conn)
        if not self._conns:
            self.state = "down"
            self.up_event = trio.Event()
        for key_pending in self._pending_on(conn):
            key_pending.error = _down(f"connection lost: {reason}", sent=True)
            key_pending.done.set()
        self._notify()

    def _pending_on(self, conn: _Conn) -> list[_Pending]:
        lost = []
        for p in list(self.in_flight._live.values()):
            if p.conn is conn:
                self.in_flight.forget(match_key(p.message["t"], p.message["11"]))
                lost.append(p)
        return lost

    def _pick(self) -> _Conn:
        self._rr = (self._rr + 1) % len(self._conns)
        return self._conns[self._rr]

    async def _read(self, conn: _Conn, scope: trio.CancelScope) -> None:
        try:
            while True:
                data = await conn.stream.receive_some(65536)
                if not data:
                    raise LinkDown(f"{conn.endpoint} closed the connection")
                conn.last_activity = trio.current_time()
                for frame in conn.decoder.feed(bytes(data)):
                    await self._on_frame(conn, frame)
                if conn.decoder.error is not None:  # nothing more will be read here
                    raise conn.decoder.error
        except FramingError as exc:
            self.stats.last_error = f"framing: {exc}"
            log.error("link %s: closing, bad framing from issuer: %s", self.name, exc)
        except (LinkDown, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.stats.last_error = reason_of(exc)
            log.warning("link %s: connection lost: %s", self.name, self.stats.last_error)
        conn.alive = False
        self._notify()
        scope.cancel()

    async def _on_frame(self, conn: _Conn, frame: bytes) -> None:
        try:
            answer = codec.decode(frame, self.spec)
        except CodecError as exc:
            self.stats.unmatched += 1
            log.error("link %s: undecodable answer: %s", self.name, exc)
            if self.on_unmatched is not None:
                await self.on_unmatched(self.name, None, f"undecodable: {exc}")
            return
        mti, stan = answer.get("t", ""), answer.get("11", "")
        try:
            self.guard.check(frame, answer)
        except SecurityError as exc:
            bad: SecurityError | None = exc
            log.error("link %s: answer %s STAN %s refused: %s", self.name, mti, stan, exc)
        else:
            bad = None
        if bad is None and mti[:2] == "08" and is_request(mti):
            await self._answer_issuer(conn, answer)
            return
        result = self.in_flight.answer(mti, stan, trio.current_time())
        if result.kind == "matched" and result.item is not None:
            if bad is not None:  # never acted on: the waiting request fails with 63
                result.item.error = bad
            else:
                result.item.answer = answer
            result.item.done.set()
        elif bad is not None:
            self.stats.unmatched += 1
            if self.on_unmatched is not None:
                await self.on_unmatched(self.name, answer, f"bad MAC: {bad}")
        elif result.kind == "late" and result.item is not None:
            self.stats.late += 1
            log.warning(
                "link %s: late answer %s STAN %s rc %s", self.name, mti, stan, answer.get("39")
            )
            if self.on_late is not None:
                await self.on_late(result.item.context, answer)
        else:
            self.stats.unmatched += 1
            log.warning("link %s: unmatched answer %s STAN %s", self.name, mti, stan)
            if self.on_unmatched is not None:
                await self.on_unmatched(self.name, answer, "no request with this STAN")

    async def _answer_issuer(self, conn: _Conn, request: dict[str, str]) -> None:
        """The issuer's own 0800 (an echo, a sign-on): answered on its connection."""
        reply = network_answer(request)
        log.info(
            "link %s: issuer's 0800 F70 %s answered %s",
            self.name,
            request.get(F_NETWORK_MGMT),
            reply["39"],
        )
        try:
            frame = encode_frame(self.guard.encode(reply), self.framing)
        except CodecError as exc:
            log.error("link %s: cannot answer the issuer's 0800: %s", self.name, exc)
            return
        await conn.send(frame)  # LinkDown: the reader drops this connection

    async def _network_request(
        self, conn: _Conn, code: str, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        stan = self.allocate_stan("0800")
        msg = {"t": "0800", "7": transmission_time(dt.datetime.now(dt.UTC)), "11": stan, "70": code}
        msg.update(extra or {})
        pending = _Pending(message=msg, context=None, conn=conn)
        key = self.in_flight.add("0800", stan, pending)
        try:
            await conn.send(encode_frame(self.guard.encode(msg), self.framing))
            with trio.move_on_after(self.config.timeout):
                await pending.done.wait()
        finally:
            self.in_flight.forget(key)
        if pending.error is not None:
            raise pending.error
        if pending.answer is None:
            raise IssuerTimeout(f"{self.name}: no answer to 0800/{code}")
        return pending.answer

    async def exchange_key(self) -> str:
        """Dynamic key exchange (0800, F70 = 161): send a new issuer ZPK under the KEK.

        The new key travels as a TR-31 block in F120; the issuer answers 0810
        with 39 = 00 and the key's check value in F120. Only then does the new
        key stay current here (the old one is kept for the rotation's grace
        time); any failure restores the old key. Returns the new KCV.
        """
        keys, name, kek = self.keys, self.config.pin_key, self.config.kek_key
        if keys is None or name is None or kek is None:
            raise SecurityError(f"link {self.name}: key exchange needs pin_key and kek_key")
        if not self._conns:
            raise LinkDown(f"link {self.name} is down")
        old = keys.get(name)
        entry = keys.rotate(name)
        try:
            block = keys.export_tr31(name, kek)
            answer = await self._network_request(self._pick(), KEY_EXCHANGE, {F_KEY_BLOCK: block})
            kcv = answer.get(F_KEY_BLOCK, "")
            if answer.get("39") != "00" or kcv.upper() != entry.kcv.upper():
                raise SecurityError(
                    f"link {self.name}: key exchange refused ({answer.get('39')}, "
                    f"KCV {kcv or '-'} vs {entry.kcv})"
                )
        except BaseException:
            keys.rotate(name, value=old)
            raise
        log.warning("link %s: new zone PIN key in use, KCV %s", self.name, entry.kcv)
        return entry.kcv

    async def _sign_on(self, conn: _Conn) -> None:
        if not self.config.sign_on:
            return
        answer = await self._network_request(conn, "001")
        if answer.get("39") != "00":
            raise LinkDown(f"sign-on refused with {answer.get('39')}")
        log.info("link %s: signed on", self.name)

    async def _echo(self, conn: _Conn, scope: trio.CancelScope) -> None:
        interval = self.config.echo_interval
        while conn.alive:
            idle_for = trio.current_time() - conn.last_activity
            if idle_for < interval:
                await trio.sleep(interval - idle_for)
                continue
            try:
                await self._network_request(conn, "301")
                self.stats.last_echo = trio.current_time()
                conn.last_activity = trio.current_time()
            except (IssuerTimeout, LinkDown) as exc:
                self.stats.last_error = f"echo: {exc}"
                log.warning("link %s: echo failed, reconnecting: %s", self.name, exc)
                conn.alive = False
                self._notify()
                scope.cancel()
                return


def _down(text: str, *, sent: bool) -> LinkDown:
    return LinkDown(text, sent=sent)
