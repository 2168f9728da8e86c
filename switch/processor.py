"""The path of one acquirer request, from decoded frame to answer.

decode/validate → duplicate? → reversal? → Luhn → route → link up? →
translate → journal (write-ahead) → issuer → match → translate back → journal
→ answer. Every decision is made by a pure function (codec, cards, routing,
translate, recent); this module sequences them, awaits the link and the
journal, and owns the consequences of what goes wrong:

- issuer timeout, the connection dying after the request left, or an answer
  without a response code (F39): answer 91 and queue an automatic reversal in
  the SAF (persisted, so it survives a crash);
- a late answer: journaled as ``late`` (its reversal is already queued);
- a duplicate (same listener, F41, F11, F7/F37, MTI class): never forwarded
  again; it gets the first request's answer, waiting for it if in flight;
- an acquirer reversal: matched to its original in memory or in the journal,
  sent with the *issuer-side* original data; if the issuer cannot be reached
  it goes to the SAF and the acquirer is told it is accepted.

No clear PAN leaves memory: legs carry the masked PAN and the keyed token,
and only the issuer-out leg and the SAF carry the PAN, AES-GCM encrypted.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from time import perf_counter
from typing import Any

import trio

import specs
from switch import codec, reversals
from switch.cards import luhn_valid, mask_pan, mask_text
from switch.config import Config
from switch.errors import (
    CardError,
    CodecError,
    IssuerTimeout,
    JournalError,
    LinkDown,
    RoutingError,
    SecurityError,
)
from switch.guard import Guard, translate_pin
from switch.issuer_link import IssuerLink
from switch.journal import JournalWriter, Leg
from switch.messages import (
    APPROVED,
    F_ORIGINAL_DATA,
    F_PAN,
    F_PIN_BLOCK,
    F_REPLACEMENT_AMOUNTS,
    F_RESPONSE_CODE,
    F_RRN,
    F_STAN,
    F_TERMINAL,
    F_TRANSMISSION_TIME,
    is_repeat,
    is_reversal,
)
from switch.recent import SEP, RecentTransactions, joined
from switch.routing import RouteTable
from switch.saf import SafStore
from switch.stages import StageTimes, percentiles
from switch.translate import (
    local_answer,
    parse_original_data,
    rrn_for,
    to_acquirer,
    to_issuer,
)
from switch.vault import Vault

__all__ = ["Processor", "Txn", "new_txn_id", "now_us"]

log = logging.getLogger("switch.txn")

# Kept from a finished request: enough to answer duplicates and find originals.
_KEEP = frozenset({"t", "3", "4", "7", "11", "37", "41", "42", "49", "90", "95"})


_ANSWERED = trio.Event()
_ANSWERED.set()


# Uniqueness, not secrecy (a txn id is no secret): seeded once from the OS.
_ids = random.Random(secrets.randbits(128))


def new_txn_id() -> str:
    """A time-ordered id: 13 hex digits of wall-clock microseconds, 48 random bits.

    The journal's indexes on it (the transactions key, legs.txn_id) then grow
    at their right edge, as a sequence does, instead of dirtying a random
    page per insert (a 4 KiB WAL frame per commit each); the random tail
    keeps ids unique across processes and clock steps.
    """
    return f"{time.time_ns() // 1000:013x}{_ids.getrandbits(48):012x}"


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(slots=True, eq=False)
class Txn:
    txn_id: str
    listener: str
    request: dict[str, str]
    started: float
    link: str | None = None
    issuer_request: dict[str, str] | None = None
    pan_enc: bytes | None = None
    answer: dict[str, str] | None = None
    state: str = "in_flight"
    rrn: str = ""
    done: trio.Event = field(default_factory=trio.Event)
    # (PAN, masked PAN, token) of the last leg: one HMAC per card, not per leg.
    card: tuple[str, str, str] | None = None
    recent_handle: int = -1  # its entry in Processor.recent
    mark: float = 0.0  # perf_counter at the last stage boundary (switch.stages)

    def finish(self, answer: dict[str, str] | None, state: str) -> None:
        self.answer = answer
        self.state = state
        # Forget card data once answered: only what matching needs stays.
        self.request = {k: v for k, v in self.request.items() if k in _KEEP}
        if self.issuer_request is not None:
            self.issuer_request = {k: v for k, v in self.issuer_request.items() if k in _KEEP}
        self.card = None
        self.pan_enc = None  # the SAF copy was taken when a reversal was queued
        self.done.set()
        # `recent` keeps the packed form (Txn.packed), but a link may hold this
        # Txn for its late-answer window: share one set Event rather than keep
        # three objects each for the collector to walk. Waiters were woken.
        self.done = _ANSWERED

    def packed(self) -> Packed:
        """The finished transaction as ``recent`` keeps it: one string.

        A Txn is an object the garbage collector tracks, and a full collection
        walked every one kept for minutes: 50,000 at 1,000 TPS, with their
        index lists, took 120-360 ms in one pause. A tuple of strings is
        untracked only once a collection has seen it: at 1,000 TPS the young
        collection met a thousand of them a second. A string is never
        tracked. (A value holding ``SEP``, a NUL, keeps the flat tuple of
        strings: ``recent.joined``.)

        Layout: id, listener, link ("" for none), state, RRN, then the length
        of each of the request, issuer request and answer (-1 for none) and
        their field, value pairs one after another.
        """
        request, issuer, answer = self.request, self.issuer_request, self.answer
        return joined(
            self.txn_id,
            self.listener,
            self.link or "",
            self.state,
            self.rrn,
            str(2 * len(request)),
            "-1" if issuer is None else str(2 * len(issuer)),
            "-1" if answer is None else str(2 * len(answer)),
            *chain.from_iterable(request.items()),
            *chain.from_iterable((issuer or {}).items()),
            *chain.from_iterable((answer or {}).items()),
        )

    @classmethod
    def unpacked(cls, item: Txn | Packed) -> Txn:
        """``item`` as a Txn: a live one as it is, a packed one rebuilt (finished)."""
        if isinstance(item, Txn):
            return item
        parts = item.split(SEP) if isinstance(item, str) else item
        messages: list[dict[str, str] | None] = []
        at = 8
        for size in map(int, parts[5:8]):
            pairs = parts[at : at + max(size, 0)]
            messages.append(None if size < 0 else dict(zip(pairs[::2], pairs[1::2], strict=True)))
            at += max(size, 0)
        txn_id, listener, link, state, rrn = parts[:5]
        return cls(
            txn_id=txn_id,
            listener=listener,
            request=messages[0] or {},
            started=0.0,
            link=link or None,
            issuer_request=messages[1],
            answer=messages[2],
            state=state,
            rrn=rrn,
            done=_ANSWERED,
        )


# Txn.packed()'s form (see there).
Packed = str | tuple[str, ...]


class _Hold:
    """``Processor.hold()``: a plain context manager (one per request, so no generator)."""

    __slots__ = ("processor",)

    def __init__(self, processor: Processor) -> None:
        self.processor = processor

    def __enter__(self) -> None:
        self.processor._enter()

    def __exit__(self, *exc: object) -> None:
        self.processor._leave()


def _amount(message: Mapping[str, str]) -> int | None:
    value = message.get("4")
    return int(value) if value and value.isdigit() else None


class Processor:
    def __init__(
        self,
        config: Config,
        *,
        links: Mapping[str, IssuerLink],
        writer: JournalWriter,
        saf: SafStore,
        vault: Vault,
        saf_kick: Callable[[str], None] = lambda link: None,
        find_original: Callable[..., Any] | None = None,
    ) -> None:
        self.config = config
        self.links = links
        self.writer = writer
        self.saf = saf
        self.vault = vault
        self.saf_kick = saf_kick
        self.find_original_in_journal = find_original
        self.routes = RouteTable(config.routes)
        self.recent: RecentTransactions[Txn | Packed] = RecentTransactions(
            window=config.switch.recent_window, limit=config.switch.recent_limit
        )
        self.institution_id = config.switch.institution_id
        self.spec_dirs = config.switch.spec_dirs
        self._rrn_seq = secrets.randbelow(1_000_000)
        self.in_flight = 0
        self._busy = 0  # requests in flight + answers still on their way out
        self.idle = trio.Event()
        self.idle.set()
        self.counters: dict[str, int] = {}
        # trio times of answers in the last minute (for TPS): pruned as it grows,
        # so a long run does not keep one float per transaction forever.
        self.completed: deque[float] = deque()
        self.stages = StageTimes()  # where the time goes (switch.stages)

    # -- legs ---------------------------------------------------------------------

    def _leg(self, txn: Txn, kind: str, msg: Mapping[str, str], **extra: Any) -> Leg:
        pan = msg.get(F_PAN) or txn.request.get(F_PAN) or ""
        card = txn.card
        if pan and (card is None or card[0] != pan):
            card = txn.card = (pan, mask_pan(pan), self.vault.token(pan))
        return Leg(
            txn_id=txn.txn_id,
            leg=kind,
            time_us=now_us(),
            link=txn.listener if kind.startswith("acquirer") else txn.link,
            mti=msg.get("t"),
            stan=msg.get(F_STAN),
            rrn=msg.get(F_RRN) or txn.rrn or None,
            f7=msg.get(F_TRANSMISSION_TIME),
            terminal=msg.get(F_TERMINAL) or txn.request.get(F_TERMINAL),
            merchant=msg.get("42") or txn.request.get("42"),
            pan_masked=card[1] if pan and card else None,
            pan_token=card[2] if pan and card else None,
            amount=_amount(msg),
            currency=msg.get("49"),
            processing_code=msg.get("3"),
            response_code=msg.get("39"),
            auth_code=msg.get("38"),
            **extra,
        )

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # -- entry point ----------------------------------------------------------------

    async def handle(self, listener: str, guard: Guard, frame: bytes) -> dict[str, str] | None:
        """Process one frame from an acquirer; return the answer (None: no answer).

        Raises CodecError when the frame cannot be answered (no MTI/F11): the
        listener then closes that connection with a logged reason.
        """
        self.in_flight += 1
        self._enter()
        try:
            return await self._handle(listener, guard, frame)
        finally:
            self.in_flight -= 1
            now = trio.current_time()
            completed = self.completed
            completed.append(now)
            while completed[0] <= now - 60:
                completed.popleft()
            self._leave()

    def hold(self) -> _Hold:
        """Not idle while this lasts: a listener holds it until its answer is sent.

        Graceful shutdown waits for ``idle``; an answer that has left ``handle``
        but not yet reached the stream must not be cut off by it.
        """
        return _Hold(self)

    def _enter(self) -> None:
        self._busy += 1
        if self._busy == 1:
            self.idle = trio.Event()

    def _leave(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self.idle.set()

    async def _handle(self, listener: str, guard: Guard, frame: bytes) -> dict[str, str] | None:
        begun = perf_counter()
        spec = guard.spec
        try:
            request = codec.decode(frame, spec)
            codec.validate(request, spec)
        except CodecError as exc:
            return self._format_error(listener, exc)
        mti = request["t"]
        try:
            guard.check(frame, request)
        except SecurityError as exc:
            # A bad or missing MAC: declined with 63, journaled, never forwarded.
            bad = Txn(
                txn_id=new_txn_id(),
                listener=listener,
                request=request,
                started=trio.current_time(),
                rrn=request.get(F_RRN, ""),
            )
            return self._reject(bad, exc.response_code, str(exc))
        if mti[:2] == "08":
            return local_answer(request, APPROVED)  # echo / sign-on to the switch itself
        if mti[2] not in "02":
            self._count("unsolicited")
            log.warning("%s: ignoring unsolicited %s from acquirer", listener, mti)
            return None
        found = self.recent.duplicate_of(listener, request)
        duplicate = None if found is None else Txn.unpacked(found)
        if duplicate is not None and not (is_repeat(mti) and is_reversal(mti)):
            return await self._duplicate(listener, request, duplicate)
        txn = Txn(
            txn_id=new_txn_id(),
            listener=listener,
            request=request,
            started=trio.current_time(),
        )
        txn.rrn = request.get(F_RRN, "")
        txn.mark = begun
        txn.recent_handle = self.recent.add(listener, request, txn, trio.current_time())
        try:
            if is_reversal(mti):
                return await self._reversal(txn, spec, duplicate)
            return await self._authorize(txn, guard)
        finally:
            if not txn.done.is_set():  # cancelled or crashed mid-way: never leave waiters hanging
                txn.finish(txn.answer, txn.state)
            self.recent.replace(txn.recent_handle, txn.packed())

    # -- local answers ------------------------------------------------------------

    def _format_error(self, listener: str, exc: CodecError) -> dict[str, str]:
        self._count("format_error")
        partial = codec.salvage(exc)
        mti, stan = partial.get("t", ""), partial.get("11", "")
        log.warning(
            "%s: format error: %s (MTI %s, STAN %s)", listener, exc, mti or "?", stan or "?"
        )
        if not (mti and stan and mti[2:3] in ("0", "2") and mti.isdigit()):
            raise exc
        txn = Txn(txn_id=new_txn_id(), listener=listener, request=partial, started=0.0)
        try:
            answer = local_answer(partial, "30")
        except ValueError:
            raise exc from None
        self.writer.record(
            self._leg(txn, "acquirer_in", partial, note=mask_text(f"format error: {exc}")[:200]),
            self._leg(txn, "acquirer_out", answer, state="rejected"),
        )
        return answer

    def _reject(self, txn: Txn, code: str, reason: str) -> dict[str, str]:
        self._count(f"rejected_{code}")
        answer = local_answer(txn.request, code, rrn=txn.rrn or None)
        latency = int((trio.current_time() - txn.started) * 1_000_000)
        self.writer.record(
            self._leg(txn, "acquirer_in", txn.request, note=reason),
            self._leg(
                txn, "acquirer_out", answer, state="rejected", note=reason, latency_us=latency
            ),
        )
        txn.finish(answer, "rejected")
        return answer

    async def _duplicate(
        self, listener: str, request: dict[str, str], first: Txn
    ) -> dict[str, str]:
        self._count("duplicate")
        log.info(
            "%s: duplicate of txn %s (F41 %s F11 %s) not forwarded",
            listener,
            first.txn_id,
            request.get("41"),
            request.get("11"),
        )
        await first.done.wait()
        if first.answer is not None:
            return dict(first.answer)
        return local_answer(request, "96")

    # -- authorization / financial ------------------------------------------------

    def _next_rrn(self) -> str:
        self._rrn_seq += 1
        return rrn_for(dt.datetime.now(dt.UTC), self._rrn_seq)

    async def _authorize(self, txn: Txn, guard: Guard) -> dict[str, str]:
        spec = guard.spec
        request = txn.request
        pan = request[F_PAN]
        if not txn.rrn:
            txn.rrn = self._next_rrn()
            self.recent.set_rrn(txn.recent_handle, request.get(F_TERMINAL, ""), txn.rrn)
        if not luhn_valid(pan):
            return self._reject(txn, CardError.response_code, "PAN fails Luhn")
        try:
            link_name = self.routes.route(pan)
        except RoutingError as exc:
            return self._reject(txn, exc.response_code, str(exc))
        link = self.links[link_name]
        txn.link = link_name
        if not link.is_up:
            return self._reject(txn, "91", f"issuer link {link_name} is down")
        try:
            issuer_msg = to_issuer(
                request,
                acquirer_spec=spec,
                issuer_spec=link.spec,
                stan=link.allocate_stan(request["t"]),
                rrn=txn.rrn,
                now=dt.datetime.now(dt.UTC),
                institution_id=self.institution_id,
            )
        except CodecError as exc:  # e.g. an F48 TLV that does not parse: 30, never sent
            return self._reject(txn, "30", mask_text(f"format error: {exc}")[:200])
        if F_PIN_BLOCK in request:
            try:  # in memory only: re-encrypted under the issuer link's zone PIN key
                issuer_msg[F_PIN_BLOCK] = translate_pin(
                    request[F_PIN_BLOCK], pan, guard, link.guard
                )
            except SecurityError as exc:
                return self._reject(txn, exc.response_code, str(exc))
        txn.issuer_request = issuer_msg
        txn.pan_enc = self.vault.encrypt_pan(pan)
        # Write-ahead: the issuer-out leg is on disk before the issuer can act on it.
        # Every path from here journals an outcome leg, which writes the row.
        self._stage(txn, "checks")
        try:
            await self.writer.commit(
                self._leg(txn, "acquirer_in", request),
                self._leg(txn, "issuer_out", issuer_msg, pan_enc=txn.pan_enc),
                row_later=True,
            )
        except JournalError as exc:
            log.error("journal failed, declining: %s", exc)
            answer = local_answer(request, "96", rrn=txn.rrn)
            txn.finish(answer, "rejected")
            return answer
        self._stage(txn, "write_ahead")
        return await self._send(txn, link, issuer_msg)

    def _stage(self, txn: Txn, stage: str) -> None:
        now = perf_counter()
        self.stages.add(stage, now - txn.mark)
        txn.mark = now

    async def _send(self, txn: Txn, link: IssuerLink, issuer_msg: dict[str, str]) -> dict[str, str]:
        request = txn.request
        try:
            answer = await link.exchange(issuer_msg, context=txn)
        except (IssuerTimeout, LinkDown) as exc:
            sent = isinstance(exc, IssuerTimeout) or exc.sent
            return self._timed_out(txn, link, str(exc), sent=sent)
        except SecurityError as exc:
            # The issuer's answer failed its MAC: it may have approved, so reverse.
            return self._timed_out(txn, link, str(exc), sent=True, code=exc.response_code)
        except CodecError as exc:
            # The issuer's dialect cannot carry this request: it never left, and the
            # rejected outcome on disk keeps recovery from reversing it.
            reason = mask_text(f"cannot encode for {link.name}: {exc}")[:200]
            return self._never_sent(txn, reason, code="30", counter="rejected_30")
        if not answer.get(F_RESPONSE_CODE):
            # An answer that does not say what the issuer decided proves nothing: it
            # may have approved, so the acquirer hears 91 and the request is reversed.
            reason = f"{link.name}: answer {answer.get('t')} without a response code (F39)"
            return self._timed_out(txn, link, reason, sent=True)
        self._stage(txn, "issuer")
        latency = int((trio.current_time() - txn.started) * 1_000_000)
        out = to_acquirer(answer, request)
        if F_RRN not in request and txn.rrn:
            out[F_RRN] = txn.rrn
        state = "approved" if out.get("39") == APPROVED else "declined"
        self._count(state)
        # The outcome is on disk before the acquirer hears it: after a crash,
        # recovery never reverses a sale the shop was told was approved.
        await self._commit_outcome(
            self._leg(txn, "issuer_in", answer),
            self._leg(txn, "acquirer_out", out, state=state, latency_us=latency),
        )
        self._stage(txn, "outcome")
        txn.finish(out, state)
        return out

    async def _commit_outcome(self, *legs: Leg) -> None:
        try:
            await self.writer.commit(*legs)
        except JournalError as exc:
            log.error("journal failed to record an outcome: %s", exc)

    def _timed_out(
        self, txn: Txn, link: IssuerLink, reason: str, *, sent: bool, code: str = "91"
    ) -> dict[str, str]:
        if not sent:
            return self._never_sent(txn, reason, code=code, counter="link_down")
        answer = local_answer(txn.request, code, rrn=txn.rrn or None)
        latency = int((trio.current_time() - txn.started) * 1_000_000)
        self._count("timed_out")
        log.warning("txn %s: %s; answering %s and reversing through SAF", txn.txn_id, reason, code)
        assert txn.issuer_request is not None
        # The reversal is persisted first: a timed-out leg never exists without one.
        self.queue_reversal(txn.txn_id, link.name, txn.issuer_request, txn.pan_enc)
        self.writer.record(
            self._leg(
                txn, "acquirer_out", answer, state="timed_out", note=reason, latency_us=latency
            ),
        )
        txn.finish(answer, "timed_out")
        return answer

    def _never_sent(self, txn: Txn, reason: str, *, code: str, counter: str) -> dict[str, str]:
        """Past the write-ahead but the request never left: a rejected outcome on disk
        (so recovery does not reverse it) and ``code`` to the acquirer."""
        self._count(counter)
        answer = local_answer(txn.request, code, rrn=txn.rrn or None)
        latency = int((trio.current_time() - txn.started) * 1_000_000)
        self.writer.record(
            self._leg(
                txn, "acquirer_out", answer, state="rejected", note=reason, latency_us=latency
            ),
        )
        txn.finish(answer, "rejected")
        return answer

    def queue_reversal(
        self,
        txn_id: str,
        link_name: str,
        issuer_request: Mapping[str, str],
        pan_enc: bytes | None,
        *,
        replacement_amount: str | None = None,
        reason: str = "auto",
    ) -> int:
        """Persist a reversal of ``issuer_request`` for the SAF forwarder to deliver."""
        entry = reversals.queue_reversal(
            self.saf,
            txn_id=txn_id,
            link=link_name,
            issuer_request=issuer_request,
            pan_enc=pan_enc,
            institution_id=self.institution_id,
            expire_after_s=self.config.saf.expire_after,
            now=dt.datetime.now(dt.UTC),
            reason=reason,
            replacement_amount=replacement_amount,
        )
        self.saf_kick(link_name)
        return entry

    async def on_late(self, context: Any, answer: dict[str, str]) -> None:
        """An issuer answer after its timeout: journal it; the reversal is already queued."""
        settle_late = getattr(context, "settle_late", None)
        if settle_late is not None:  # a SAF reversal answered late: that settles it
            await settle_late(answer)
            return
        if not isinstance(context, Txn):
            return
        self._count("late")
        self.writer.record(
            self._leg(context, "late", answer, note="answer after timeout; reversal queued")
        )

    async def on_unmatched(self, link: str, answer: dict[str, str] | None, reason: str) -> None:
        self._count("unmatched")
        txn = Txn(txn_id=new_txn_id(), listener="", request={}, started=0.0, link=link)
        self.writer.record(
            self._leg(
                txn, "unmatched", answer or {}, note=mask_text(reason)[:200], state="rejected"
            )
        )

    # -- reversals ----------------------------------------------------------------

    def _find_original(self, request: Mapping[str, str]) -> Txn | None:
        terminal = request.get(F_TERMINAL, "")
        f90 = request.get(F_ORIGINAL_DATA)
        if f90:
            _, orig_stan, orig_f7, _ = parse_original_data(f90)
            for found in self.recent.by_stan(terminal, orig_stan):
                candidate = Txn.unpacked(found)
                if not is_reversal(candidate.request.get("t", "04")) and (
                    not orig_f7.strip("0") or candidate.request.get("7", orig_f7) == orig_f7
                ):
                    return candidate
            return None
        rrn = request.get(F_RRN)
        found_rrn = self.recent.by_rrn(terminal, rrn) if rrn else None
        by_rrn = None if found_rrn is None else Txn.unpacked(found_rrn)
        if by_rrn is not None and not is_reversal(by_rrn.request.get("t", "04")):
            return by_rrn
        return None

    async def _original_from_journal(self, request: Mapping[str, str]) -> Txn | None:
        """After a restart the original is only in the journal: rebuild what a reversal needs."""
        if self.find_original_in_journal is None:
            return None
        terminal = request.get(F_TERMINAL, "")
        f90 = request.get(F_ORIGINAL_DATA)
        if f90:
            _, orig_stan, orig_f7, _ = parse_original_data(f90)
            found = await trio.to_thread.run_sync(
                lambda: self.find_original_in_journal(  # type: ignore[misc]
                    terminal=terminal,
                    stan=orig_stan,
                    f7=orig_f7 if orig_f7.strip("0") else None,
                    mti=None,
                )
            )
        else:
            found = await trio.to_thread.run_sync(
                lambda: self.find_original_in_journal(  # type: ignore[misc]
                    terminal=terminal, rrn=request.get(F_RRN)
                )
            )
        if not found or not found.get("issuer_stan") or found.get("mti", "")[:2] == "04":
            return None
        original = Txn(
            txn_id=found["txn_id"],
            listener=found.get("listener") or "",
            started=0.0,
            request={"t": found.get("mti") or "0100", "11": found.get("stan") or ""},
            link=found.get("link"),
            state=found.get("state") or "approved",
        )
        original.issuer_request = {
            "t": found.get("mti") or "0100",
            "11": found["issuer_stan"],
            "7": found.get("issuer_f7") or "",
            "37": found.get("issuer_rrn") or "",
        }
        original.done.set()
        return original

    async def _reversal(self, txn: Txn, spec: specs.Spec, repeat_of: Txn | None) -> dict[str, str]:
        request = txn.request
        original = self._find_original(request)
        if original is None:
            original = await self._original_from_journal(request)
        if original is None or original.link is None:
            self._count("reversal_unknown")
            return self._reject(txn, "25", "original transaction not found")
        # A reversal that overtakes its original waits for it (never lost).
        with trio.move_on_after(self.links[original.link].config.timeout * 2 + 1):
            await original.done.wait()
        txn.link = original.link
        if original.issuer_request is None or original.issuer_request.get("11") is None:
            # The original never reached an issuer (rejected by the switch): nothing to undo.
            answer = local_answer(request, APPROVED, rrn=txn.rrn or None)
            self.writer.record(
                self._leg(txn, "acquirer_in", request, original_txn=original.txn_id),
                self._leg(
                    txn,
                    "acquirer_out",
                    answer,
                    state="approved",
                    note="original never reached an issuer",
                ),
            )
            txn.finish(answer, "approved")
            return answer
        link = self.links[original.link]
        issuer_orig = original.issuer_request
        try:
            issuer_msg = to_issuer(
                request,
                acquirer_spec=spec,
                issuer_spec=link.spec,
                stan=link.allocate_stan(request["t"]),
                rrn=issuer_orig.get("37") or txn.rrn or "",
                now=dt.datetime.now(dt.UTC),
                institution_id=self.institution_id,
                original=(issuer_orig["t"], issuer_orig["11"], issuer_orig.get("7", "")),
            )
        except CodecError as exc:
            return self._reject(txn, "30", mask_text(f"format error: {exc}")[:200])
        issuer_msg["t"] = request["t"]  # 0400/0401/0420/0421 as the acquirer sent it
        partial = bool(request.get(F_REPLACEMENT_AMOUNTS, "").strip("0"))
        spent = request.get(F_REPLACEMENT_AMOUNTS, "")[:12] if partial else None
        # On the write-ahead legs, so crash recovery re-sends it as partial too.
        replacement = int(spent) if spent and spent.isdigit() else None
        reversed_state = "partially_reversed" if partial else "reversed"
        pan = request.get(F_PAN, "")
        txn.pan_enc = self.vault.encrypt_pan(pan) if pan else None
        txn.issuer_request = issuer_msg
        try:
            await self.writer.commit(
                self._leg(
                    txn,
                    "acquirer_in",
                    request,
                    original_txn=original.txn_id,
                    replacement_amount=replacement,
                ),
                self._leg(
                    txn,
                    "issuer_out",
                    issuer_msg,
                    pan_enc=txn.pan_enc,
                    original_txn=original.txn_id,
                    replacement_amount=replacement,
                ),
            )
        except JournalError as exc:
            log.error("journal failed, refusing reversal: %s", exc)
            answer = local_answer(request, "96", rrn=txn.rrn or None)
            txn.finish(answer, "rejected")
            return answer
        try:
            answer = await link.exchange(issuer_msg, context=txn)
        except (IssuerTimeout, LinkDown, SecurityError) as exc:
            # The acquirer's reversal must get through: SAF takes responsibility. An
            # answer whose MAC fails proves nothing either (the SAF retries those too).
            self.queue_reversal(
                original.txn_id,
                link.name,
                issuer_orig,
                txn.pan_enc,
                replacement_amount=spent,
                reason="partial" if partial else "acquirer",
            )
            out = local_answer(request, APPROVED, rrn=txn.rrn or None)
            self.writer.record(
                self._leg(
                    txn,
                    "acquirer_out",
                    out,
                    state="reversal_pending",
                    original_txn=original.txn_id,
                    note=f"queued to SAF: {exc}",
                ),
            )
            txn.finish(out, "reversal_pending")
            return out
        out = to_acquirer(answer, request)
        code = answer.get("39", "96")
        # Any answer of the issuer settles a reversal (25 = it never had the original).
        state = reversed_state if code in (APPROVED, "25") else "declined"
        self._count("reversed" if state != "declined" else "reversal_declined")
        await self._commit_outcome(
            self._leg(txn, "issuer_in", answer, original_txn=original.txn_id),
            self._leg(txn, "acquirer_out", out, state=state, original_txn=original.txn_id),
        )
        txn.finish(out, state)
        return out

    # -- crash recovery -------------------------------------------------------------

    def recover(
        self, in_doubt: list[dict[str, Any]], lookup: Callable[[str], dict[str, Any] | None]
    ) -> int:
        """Queue reversals for requests that reached an issuer with no recorded outcome.

        ``lookup(txn_id)`` returns a journal transaction row: an interrupted
        reversal is re-sent against its original's issuer-side data.
        """
        queued = 0
        for row in in_doubt:
            mti, link = row.get("mti") or "", row.get("link")
            if not link or link not in self.links:
                continue
            target, issuer_request = row["txn_id"], reversals.issuer_request_of(row)
            # An acquirer's reversal cut off by the crash is still the acquirer's: its
            # original ends "reversed", as when the issuer does not answer it in time,
            # and a partial one stays partial (its legs keep the amount spent, F95).
            reason, state = "auto", "timed_out"
            spent = row.get("replacement_amount")
            if is_reversal(mti):
                reason, state = ("acquirer" if spent is None else "partial"), "reversal_pending"
                original = lookup(row.get("original_txn") or "")
                if not original or not original.get("issuer_stan"):
                    continue
                target = original["txn_id"]
                issuer_request.update(
                    t=original.get("mti") or "0100",
                    **{"11": original["issuer_stan"], "7": original.get("issuer_f7") or ""},
                )
            self.queue_reversal(
                target,
                link,
                issuer_request,
                row.get("pan_enc"),
                replacement_amount=None if spent is None else str(spent),
                reason=reason,
            )
            self.writer.record(
                Leg(
                    txn_id=row["txn_id"],
                    leg="recovered",
                    time_us=now_us(),
                    link=link,
                    mti=mti,
                    stan=row.get("stan"),
                    state=state,
                    note="no outcome recorded before restart; reversal queued",
                )
            )
            queued += 1
        return queued

    def status(self) -> dict[str, Any]:
        now = trio.current_time()
        while self.completed and self.completed[0] <= now - 60:
            self.completed.popleft()
        buckets = self.stages.snapshot()
        return {
            "in_flight": self.in_flight,
            "tps_1m": round(len(self.completed) / 60.0, 2),
            "counters": dict(self.counters),
            "stages_ms": percentiles(buckets),
            "stage_buckets": buckets,
        }
