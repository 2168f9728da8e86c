"""Reconciliation shell: read the journal, the SAF and settlement files; queue fixes; cutover.

The rules live in :mod:`switch.recon` and :mod:`switch.cutover`; this module
only gets data in and out:

- :func:`switch_records` reads one business day of the journal (two queries,
  whatever its size: the day's transactions, then the issuer answers and
  reversal answers of their legs) into :class:`~switch.recon.SwitchRecord`;
- :func:`read_settlement` reads a settlement CSV;
- :func:`queue_fixes` puts the reversals that breaks call for into the SAF,
  built from each transaction's ``issuer_out`` leg with
  :func:`switch.reversals.queue_reversal` (the PAN stays encrypted);
- :func:`exchange_totals` sends 0500s to one issuer host and reads the 0510s;
  :func:`cutover` does that for every network of a report.

:func:`gather` is the whole read side: journal + SAF + settlement records →
:class:`~switch.recon_report.Report`.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

import specs
from switch import codec, recon_report, reversals
from switch.admin import AdminError, call
from switch.config import Config, SimulatorConfig
from switch.cutover import (
    IN_BALANCE,
    Totals,
    differences,
    from_fields,
    reconciliation_request,
)
from switch.errors import ProtocolError
from switch.framing import FrameDecoder, Framing, encode_frame
from switch.journal import Journal
from switch.recon import Break, IssuerRecord, ReconError, SwitchRecord, parse_settlement
from switch.recon_report import CutoverOutcome, Report
from switch.saf import SafStore

__all__ = [
    "MARGIN_US",
    "Fixed",
    "cutover",
    "day_window",
    "exchange_totals",
    "gather",
    "kick_daemon",
    "queue_fixes",
    "read_settlement",
    "saf_entries",
    "switch_records",
]

# Requests this close to midnight are read from the journal too: the issuer may
# have stamped them on the other side of it.
MARGIN_US = 10 * 60 * 1_000_000


def day_window(day: dt.date) -> tuple[int, int]:
    """The business day (UTC) as [start, end) in µs since the epoch."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    start_us = int(start.timestamp()) * 1_000_000
    return start_us, start_us + 86_400 * 1_000_000


def read_settlement(path: Path) -> list[IssuerRecord]:
    """The records of a settlement CSV; ReconError naming the file and what is wrong."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return parse_settlement(fh)
    except OSError as exc:
        raise ReconError(f"cannot read settlement file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ReconError(f"settlement file {path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise ReconError(f"settlement file {path}: not CSV: {exc}") from None
    except ReconError as exc:
        raise ReconError(f"settlement file {path}: {exc}") from None


def saf_entries(saf: SafStore) -> dict[str, list[tuple[int, str, str]]]:
    """txn_id → [(entry id, reason, status)] for every SAF entry."""
    out: dict[str, list[tuple[int, str, str]]] = {}
    for entry in sorted(saf.list(limit=1 << 62), key=lambda e: e.id):
        out.setdefault(entry.txn_id, []).append((entry.id, entry.reason, entry.status))
    return out


_TXNS = """
select txn_id, created_us, link, mti, rrn, terminal, pan_masked, pan_token, amount, currency,
       processing_code, response_code, state, issuer_stan, issuer_rrn
from transactions
where created_us >= ? and created_us < ? and link is not null and issuer_stan is not null
  and substr(mti, 1, 2) in ('01', '02')
"""
# Issuer answers (in time or late) and answers to reversals, whenever they came.
_ANSWERS = """
select txn_id, leg, response_code, original_txn from legs
where time_us >= ? and leg in ('issuer_in', 'late', 'saf_in') and response_code is not null
order by time_us, id
"""


def switch_records(
    journal: Journal,
    day: dt.date,
    *,
    links: Sequence[str] | None = None,
    saf: Mapping[str, list[tuple[int, str, str]]] | None = None,
) -> dict[str, list[SwitchRecord]]:
    """The journal's side of one business day (with :data:`MARGIN_US`), per link."""
    start, end = day_window(day)
    conn = journal.db.conn
    issuer_code: dict[str, str] = {}
    reversal_code: dict[str, str] = {}
    for txn_id, leg, code, original in conn.execute(_ANSWERS, (start - MARGIN_US,)):
        if leg == "saf_in":
            target = original or txn_id
        elif original:  # the issuer's answer to an acquirer reversal of ``original``
            target = original
        else:
            issuer_code.setdefault(txn_id, code)
            continue
        if reversal_code.get(target) != "00":
            reversal_code[target] = code
    pending = {
        txn_id: ident
        for txn_id, entries in (saf or {}).items()
        for ident, _, status in entries
        if status == "pending"
    }
    out: dict[str, list[SwitchRecord]] = {name: [] for name in links or ()}
    cur = conn.execute(_TXNS, (start - MARGIN_US, end + MARGIN_US))
    for row in cur:
        (txn_id, created, link, mti, rrn, terminal, masked, token, amount, currency) = row[:10]
        (processing_code, response_code, state, issuer_stan, issuer_rrn) = row[10:]
        if links is not None and link not in out:
            continue
        out.setdefault(link, []).append(
            SwitchRecord(
                txn_id=txn_id,
                link=link,
                rrn=issuer_rrn or rrn or "",
                stan=issuer_stan,
                amount=amount or 0,
                currency=currency or "",
                processing_code=processing_code or "000000",
                mti=mti,
                state=state or "in_flight",
                response_code=response_code or "",
                issuer_code=issuer_code.get(txn_id, ""),
                reversal_code=reversal_code.get(txn_id, ""),
                reversal_pending=pending.get(txn_id),
                acquirer_rrn=rrn or "",
                terminal=terminal or "",
                pan_masked=masked or "",
                pan_token=token or "",
                created_us=created,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Fixed:
    found: Break
    entry: int | None  # SAF entry id; None when it could not be queued
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.found.kind,
            "network": self.found.network,
            "rrn": self.found.rrn,
            "stan": self.found.stan,
            "txn_id": self.found.txn_id,
            "saf_entry": self.entry,
            "note": self.note,
        }


def kick_daemon(config: Config) -> bool:
    """Ask a running daemon to deliver pending SAF entries now (False: none running)."""
    try:
        call(config.switch.admin_socket, {"cmd": "saf_retry"}, timeout=2.0)
    except AdminError:
        return False  # its forwarders find the entries within saf.retry_max anyway
    return True


def queue_fixes(
    journal: Journal,
    saf: SafStore,
    breaks: Iterable[Break],
    config: Config,
    now: dt.datetime,
) -> list[Fixed]:
    """Queue the reversals the breaks call for (``fix == "reverse"``) into the SAF.

    The first reversal of a transaction uses the SAF reason ``auto`` -- the
    one crash recovery and timeouts use -- so the daemon can never queue a
    second; a transaction whose earlier reversal is done or expired gets a
    fresh ``recon-N`` entry.
    """
    entries = saf_entries(saf)
    done: list[Fixed] = []
    for found in breaks:
        if found.fix != "reverse" or not found.txn_id:
            continue
        legs = [leg for leg in journal.legs_of(found.txn_id) if leg["leg"] == "issuer_out"]
        if not legs:
            done.append(Fixed(found, None, "no issuer_out leg in the journal"))
            continue
        leg: dict[str, Any] = legs[0]
        previous = [e for e in entries.get(found.txn_id, []) if e[1] != "partial"]
        if any(status == "pending" for _, _, status in previous):
            done.append(Fixed(found, None, "a reversal is already pending"))
            continue
        reason = f"recon-{len(previous)}" if previous else "auto"
        entry = reversals.queue_reversal(
            saf,
            txn_id=found.txn_id,
            link=leg["link"] or found.network,
            issuer_request=reversals.issuer_request_of(leg),
            pan_enc=leg["pan_enc"],
            institution_id=config.switch.institution_id,
            expire_after_s=config.saf.expire_after,
            now=now,
            reason=reason,
        )
        entries.setdefault(found.txn_id, []).append((entry, reason, "pending"))
        done.append(Fixed(found, entry, f"queued as SAF #{entry}"))
    return done


async def exchange_totals(
    sim: SimulatorConfig,
    requests: Sequence[dict[str, str]],
    *,
    spec_dirs: Sequence[Path] = (),
    timeout: float = 10.0,
) -> list[dict[str, str]]:
    """Send each 0500 to the issuer host ``sim`` and return its 0510s, in order.

    Raises ReconError when the host cannot be reached or does not answer in time.
    """
    spec = specs.load(sim.spec, tuple(spec_dirs))
    framing = Framing(kind=sim.framing, header=sim.header)
    decoder = FrameDecoder(framing)
    answers: list[dict[str, str]] = []
    where = f"{sim.name} at {sim.host}:{sim.port}"
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(sim.host, sim.port)
            async with stream:
                for request in requests:
                    await stream.send_all(encode_frame(codec.encode(request, spec), framing))
                    answer = await _answer_to(stream, decoder, spec, request["11"])
                    if answer is None:
                        raise ReconError(f"{where} closed the connection before answering 0500")
                    answers.append(answer)
    except trio.TooSlowError:
        raise ReconError(f"{where} did not answer the 0500 within {timeout:g} s") from None
    except (OSError, trio.BrokenResourceError) as exc:
        raise ReconError(f"cannot reach {where}: {exc}") from None
    except ProtocolError as exc:
        raise ReconError(f"{where} answered something unreadable: {exc}") from None
    return answers


async def _answer_to(
    stream: trio.abc.Stream, decoder: FrameDecoder, spec: specs.Spec, stan: str
) -> dict[str, str] | None:
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return None
        for frame in decoder.feed(bytes(data)):
            answer = codec.decode(frame, spec)
            if answer.get("t") == "0510" and answer.get("11") == stan:
                return answer


def gather(
    journal: Journal,
    saf: SafStore,
    day: dt.date,
    settlements: Mapping[str, list[IssuerRecord]],
) -> Report:
    """Reconcile ``day`` for each network of ``settlements`` (network → settlement records)."""
    records = switch_records(journal, day, links=sorted(settlements), saf=saf_entries(saf))
    sides = {name: (records[name], rows) for name, rows in settlements.items()}
    return recon_report.build(day, sides, window=day_window(day))


async def cutover(report: Report, config: Config, *, now: dt.datetime) -> None:
    """Exchange each network's totals with its issuer host; fill ``report``'s cutover outcomes."""
    for name, net in sorted(report.networks.items()):
        currencies = net.currencies
        sim = config.simulators.get(name)
        if sim is None:
            for c in currencies:
                net.cutover[c] = CutoverOutcome(
                    currency=c, in_balance=False, error=f"no [simulators.{name}] in the config"
                )
            continue
        requests = [
            reconciliation_request(
                totals=net.switch_totals.get(c, Totals()),
                currency=c,
                business_day=report.day,
                stan=f"{n:06d}",
                now=now,
                institution_id=config.switch.institution_id,
            )
            for n, c in enumerate(currencies, start=1)
        ]
        try:
            answers = await exchange_totals(sim, requests, spec_dirs=config.switch.spec_dirs)
        except ReconError as exc:
            for c in currencies:
                net.cutover[c] = CutoverOutcome(currency=c, in_balance=False, error=str(exc))
            continue
        for c, answer in zip(currencies, answers, strict=True):
            net.cutover[c] = _outcome(c, net.switch_totals.get(c, Totals()), answer)


def _outcome(currency: str, ours: Totals, answer: Mapping[str, str]) -> CutoverOutcome:
    if answer.get("39") != "00":
        return CutoverOutcome(
            currency=currency, in_balance=False, error=f"0510 answered {answer.get('39')}"
        )
    try:
        theirs = from_fields(answer)
    except ReconError as exc:
        return CutoverOutcome(currency=currency, in_balance=False, error=str(exc))
    diffs = tuple(differences(ours, theirs))
    return CutoverOutcome(
        currency=currency,
        in_balance=answer.get("66") == IN_BALANCE and not diffs,
        differences=diffs,
        issuer=theirs,
    )
