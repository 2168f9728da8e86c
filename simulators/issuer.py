"""The issuer host: a trio TCP server speaking one network's spec and framing.

Per connection: one reader that frames, decodes and *decides* each request as
it arrives (in arrival order, the ledger row and balance change committed
then), and one task per request that waits out any delay and sends the answer
under the connection's send lock. Answers therefore go out of order, and a
reversal sent while its original's answer is still delayed finds the original.

Blast radius: a frame that does not decode is answered 30 when its MTI and
F11 are readable (``switch.codec.salvage``); otherwise, like a frame over the
size limit, it closes that connection with a logged reason. Other
connections keep being served.

Delays and silences: the card book's ``answer_delay`` (the 12-second card)
and ``never_answers`` apply to authorizations and financial requests, and the
configured faults (:mod:`simulators.faults`) to every request but network
management. Neither changes the decision.

A 0500 (cutover) is answered 0510 with the business day's ledger totals
(:mod:`simulators.cutover`); network management 0800 with 0810, a key
exchange (0800, F70 = 161) by taking the new zone PIN key
(:func:`simulators.security.accept_key`).

Security, when the simulator's config names keys (its own key store,
:func:`simulators.security.open_keys`): with a ``mac_key`` every request's MAC
is verified (a bad or missing one is answered 63 and never decided) and every
answer is signed; with a ``pin_key`` F52 is verified against the card's PIN
(55 when wrong). The 3-D Secure CAVV of enrolled cards is always checked
(05 when invalid or absent). With ``tls_cert`` the port speaks TLS only.

The ledger commits on the event loop; its WAL is checkpointed on a thread
(:meth:`Issuer.checkpoints`), never inside a commit (:mod:`switch.walcheckpoint`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import sqlite3
from collections import Counter
from dataclasses import dataclass, field

import trio

import specs
from simulators import cardbook as cardbook_mod
from simulators import cutover, faults, security
from simulators.cardbook import NETWORKS, CardBook
from simulators.decisions import (
    Checks,
    Decision,
    answer_for,
    decide,
    decide_network_management,
    decide_reversal,
    format_error,
)
from simulators.ledger import Ledger
from switch import codec, ecommerce, tls
from switch.cards import mask_pan, mask_text
from switch.config import SimulatorConfig
from switch.errors import CodecError, FramingError, SecurityError
from switch.framing import FrameDecoder, Framing, encode_frame
from switch.guard import Guard
from switch.keys import KeyStore
from switch.messages import (
    F_NETWORK_MGMT,
    F_PAN,
    F_STAN,
    KEY_EXCHANGE,
    is_request,
    is_reversal,
)
from switch.vault import Vault

__all__ = ["Issuer", "Reply", "serve"]

log = logging.getLogger("simulators.issuer")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """What to do with one request once it is decided."""

    answer: dict[str, str]
    row_id: int | None = None
    plan: faults.FaultPlan = field(default_factory=faults.FaultPlan)


# The ledger's WAL is checkpointed every _CHECKPOINT_COMMITS commits (a few
# pages each) and started over once it holds _RESTART_FRAMES 4 KiB frames
# (about 320 MiB at most). Starting over holds the write lock, and the loop
# waits: at 1,000 TPS (~6 frames a transaction) 4,000 frames meant that every
# 0.65 s, and a RESTART was under 66 of the 100 slowest answers of a 10 s run;
# and the hold grows with the ledger (3.4 ms at first, 13.5 ms after 3 minutes
# at 1,000 TPS), so it is kept rare (switch.walcheckpoint).
_CHECKPOINT_COMMITS = 200
_RESTART_FRAMES = 80_000
_LEDGERED = ("01", "02", "04")  # MTI classes the ledger keeps a row for


class _CloseConnection(Exception):
    """The stream cannot be read on: close this connection (reason in the message)."""


class Issuer:
    """One simulated issuer: its card book, ledger, faults and counters."""

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        vault: Vault,
        cardbook: CardBook | None = None,
        checks: Checks | None = None,
        keys: KeyStore | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.spec = specs.load(config.spec)
        self.framing = Framing(kind=config.framing, header=config.header)
        self.network = config.name if config.name in NETWORKS else config.spec
        book = cardbook or cardbook_mod.load(config.cardbook)
        self.cards = book.network(self.network) if self.network in NETWORKS else book
        self.keys = keys
        self.guard = Guard(self.spec, keys, mac_key=config.mac_key, pin_key=config.pin_key)
        if checks is None:  # PIN checked when this issuer has a zone PIN key; CAVV always
            checks = security.checks(self._pin_keys if config.pin_key else None)
        self.checks = checks
        self.rng = rng or random.Random()
        self.ledger = Ledger.open(config.ledger, vault, self.cards)
        self.answered: Counter[str] = Counter()
        self._flush_wanted = trio.Event()
        self._checkpoint_wanted = trio.Event()
        self._checkpointed_at = 0  # ledger.commits at the last checkpoint asked for

    def close(self) -> None:
        self.ledger.close()

    def _pin_keys(self) -> list[bytes]:
        """The zone PIN key now (and the previous one in its grace time); none = PIN wrong."""
        if self.keys is None or self.config.pin_key is None:
            return []
        return self.keys.candidates(self.config.pin_key)

    # -- the synchronous part: decode, decide, record --------------------------------

    def on_frame(self, frame: bytes, now: dt.datetime) -> Reply | None:
        """Decide one frame; None when nothing is to be answered. Raises _CloseConnection."""
        try:
            request = codec.decode(frame, self.spec)
        except CodecError as exc:
            readable = codec.salvage(exc)
            if not (is_request(readable.get("t", "")) and readable.get(F_STAN)):
                raise _CloseConnection(
                    f"undecodable frame, no MTI and STAN to answer: {exc}"
                ) from None
            log.warning("%s: format error, answering 30: %s", self.network, mask_text(str(exc)))
            decision = format_error(str(exc))
            return Reply(answer=answer_for(readable, decision), row_id=None)
        try:
            self.guard.check(frame, request)
        except SecurityError as exc:
            return self._refuse(request, now, str(exc))
        return self.on_request(request, now)

    def _refuse(self, request: dict[str, str], now: dt.datetime, reason: str) -> Reply | None:
        """A request whose MAC does not verify: answered 63, journaled, never decided."""
        mti = request.get("t", "")
        log.warning("%s: %s stan %s refused: %s", self.network, mti, request.get(F_STAN), reason)
        if not is_request(mti):
            return None
        decision = Decision(response_code="63", reason=reason)
        row_id = self.ledger.record(request, now, decision) if mti[:2] in _LEDGERED else None
        return Reply(answer=answer_for(request, decision), row_id=row_id)

    def on_request(self, request: dict[str, str], now: dt.datetime) -> Reply | None:
        mti = request.get("t", "")
        if not is_request(mti):
            log.warning("%s: ignoring a %s that is not a request", self.network, mti)
            return None
        if mti[:2] == "08":
            if request.get(F_NETWORK_MGMT) == KEY_EXCHANGE:
                decision, extra = security.accept_key(request, self.keys, self.config)
                log.warning(
                    "%s: key exchange -> %s (%s)",
                    self.network,
                    decision.response_code,
                    decision.reason,
                )
                return Reply(answer={**answer_for(request, decision), **extra})
            return Reply(answer=answer_for(request, decide_network_management(request)))
        if mti[:2] == "05":  # cutover: the business day's totals (simulators.cutover)
            day = cutover.business_day(request)
            rows = self.ledger.settlement_rows(day) if day else None
            return Reply(answer=cutover.answer(request, rows))
        plan = faults.plan(self.config.faults, request, self.rng.random)
        if is_reversal(mti):
            row_id, decision = self.ledger.reverse(
                request, now, lambda o: decide_reversal(request, o)
            )
        elif mti[:2] in ("01", "02"):
            row_id, decision = self._authorize(request, now)
            card = self.cards.get(request.get(F_PAN, ""))
            if card is not None and (card.answer_delay or card.never_answers):
                plan = faults.FaultPlan(
                    delay=plan.delay + card.answer_delay,
                    answer=plan.answer and not card.never_answers,
                    close=plan.close,
                    garble=plan.garble,
                    copies=plan.copies,
                    kinds=(*plan.kinds, "card"),
                )
        else:
            decision = Decision(response_code="12", reason=f"MTI {mti} not handled by an issuer")
            row_id = self.ledger.record(request, now, decision)
        log.debug(
            "%s: %s stan %s %s -> %s (%s)",
            self.network,
            mti,
            request.get(F_STAN, ""),
            mask_pan(request.get(F_PAN, "")),
            decision.response_code,
            decision.reason,
        )
        return Reply(answer=answer_for(request, decision), row_id=row_id, plan=plan)

    def _authorize(self, request: dict[str, str], now: dt.datetime) -> tuple[int, Decision]:
        card = self.cards.get(request.get(F_PAN, ""))
        try:
            eco = ecommerce.read(self.spec, request)
        except CodecError as exc:  # a broken e-commerce TLV is a format error
            decision = format_error(str(exc))
            return self.ledger.record(request, now, decision), decision
        return self.ledger.authorize(
            request,
            now,
            lambda state: decide(
                request,
                card,
                state,
                now=now,
                network=self.network,
                ecommerce=eco,
                checks=self.checks,
            ),
            daily=card is not None and bool(card.daily_limit),
        )

    # -- the trio shell ----------------------------------------------------------------

    def on_frames(
        self, frames: list[bytes], now: dt.datetime
    ) -> tuple[list[Reply], _CloseConnection | None]:
        """Decide the frames of one read under one ledger COMMIT, in arrival order.

        Stops at a frame that closes the connection: the replies decided before
        it are still answered, then the connection closes.
        """
        replies: list[Reply] = []
        with self.ledger.batch():
            for frame in frames:
                try:
                    reply = self.on_frame(frame, now)
                except _CloseConnection as exc:
                    return replies, exc
                if reply is not None:
                    replies.append(reply)
        return replies, None

    async def serve_connection(self, stream: trio.abc.Stream) -> None:
        peer = _peer(stream)
        decoder = FrameDecoder(self.framing)
        send_lock = trio.Lock()
        try:
            async with trio.open_nursery() as nursery:
                try:
                    async for data in stream:
                        frames = decoder.feed(bytes(data))
                        if not frames:
                            continue
                        replies, closing = self.on_frames(frames, dt.datetime.now(dt.UTC))
                        plain = [r for r in replies if not r.plan.faulty]
                        for reply in replies:
                            if reply.plan.faulty:  # delays, silences, faults: a task each
                                nursery.start_soon(self._answer, stream, send_lock, reply)
                        if plain:  # the rest go out together, in one send
                            await self._send(stream, send_lock, plain)
                        if closing is not None:
                            raise closing
                except (FramingError, _CloseConnection) as exc:
                    log.warning(
                        "%s: closing connection from %s: %s",
                        self.network,
                        peer,
                        mask_text(str(exc)),
                    )
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(stream)

    async def _answer(self, stream: trio.abc.Stream, send_lock: trio.Lock, reply: Reply) -> None:
        """One answer with its fault plan: wait, stay silent, close, garble or repeat."""
        plan = reply.plan
        if plan.delay:
            await trio.sleep(plan.delay)
        if not plan.answer:
            return
        if plan.close:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                async with send_lock:
                    await stream.aclose()
            return
        await self._send(stream, send_lock, [reply])

    async def _send(
        self, stream: trio.abc.Stream, send_lock: trio.Lock, replies: list[Reply]
    ) -> None:
        """Encode (sign) ``replies`` and send them with one ``send_all``; note them sent."""
        wire: list[bytes] = []
        sent: list[Reply] = []
        for reply in replies:
            try:
                body = self.guard.encode(reply.answer)
            except CodecError as exc:
                log.error("%s: cannot encode an answer: %s", self.network, mask_text(str(exc)))
                continue
            if reply.plan.garble:
                body = faults.garble(body)
            wire += [encode_frame(body, self.framing)] * reply.plan.copies
            sent.append(reply)
        if not wire:
            return
        try:
            async with send_lock:
                await stream.send_all(b"".join(wire))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        now = dt.datetime.now(dt.UTC)
        for reply in sent:
            self.answered[reply.answer.get("39", "")] += 1
            if reply.row_id is not None:
                self.ledger.answered(reply.row_id, now)
        self._flush_wanted.set()

    async def flush_answer_times(self) -> None:
        """Write the noted answer times in groups: whatever piled up since the last write."""
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted = trio.Event()
            self.ledger.flush()
            if self.ledger.commits - self._checkpointed_at >= _CHECKPOINT_COMMITS:
                self._checkpointed_at = self.ledger.commits
                self._checkpoint_wanted.set()

    async def checkpoints(self) -> None:
        """Checkpoint the ledger's WAL on a thread, asked for by the flusher."""
        self.ledger.manual_checkpoints()
        while True:
            await self._checkpoint_wanted.wait()
            self._checkpoint_wanted = trio.Event()
            try:
                await trio.to_thread.run_sync(self.ledger.checkpoint, _RESTART_FRAMES)
            except sqlite3.Error as exc:  # the WAL only grows until the next one succeeds
                log.warning("%s: ledger checkpoint failed: %s", self.network, exc)


def _peer(stream: trio.abc.Stream) -> str:
    inner = getattr(stream, "transport_stream", stream)  # under TLS, the TCP stream
    sock = getattr(inner, "socket", None)
    try:
        host, port = sock.getpeername()[:2] if sock is not None else ("?", 0)
    except OSError:
        return "?"
    return f"{host}:{port}"


async def serve(
    config: SimulatorConfig,
    *,
    vault: Vault,
    cardbook: CardBook | None = None,
    checks: Checks | None = None,
    keys: KeyStore | None = None,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one issuer simulator until cancelled; reports its bound port (port 0 works)."""
    issuer = Issuer(config, vault=vault, cardbook=cardbook, checks=checks, keys=keys, rng=rng)
    try:
        context = None  # built before binding: a TLS file that does not load leaves no socket
        if config.tls_cert is not None and config.tls_key is not None:
            files = {
                "tls_cert": config.tls_cert,
                "tls_key": config.tls_key,
                "tls_client_ca": config.tls_client_ca,
            }
            with tls.naming_files(f"simulator {config.name}", files):
                context = tls.server_context(config.tls_cert, config.tls_key, config.tls_client_ca)
        tcp = await trio.open_tcp_listeners(config.port, host=config.host)
        port = int(tcp[0].socket.getsockname()[1])
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(tcp)
        if context is not None:
            listeners = [trio.SSLListener(t, context, https_compatible=False) for t in tcp]
        log.info(
            "simulator %s (%s, %s framing%s) listening on %s:%d",
            config.name,
            config.spec,
            config.framing,
            ", TLS" if config.tls_cert else "",
            config.host,
            port,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(issuer.flush_answer_times)
            nursery.start_soon(issuer.checkpoints)
            await nursery.start(trio.serve_listeners, issuer.serve_connection, listeners)
            task_status.started(port)
    finally:
        issuer.close()
