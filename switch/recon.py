"""Reconciliation core: one business day of the journal against a network's settlement file.

Pure: records in, findings out -- no trio, no sqlite, no clock. The shell
(``switch.recon_io``) reads the journal, the SAF and the settlement CSV into
the two record types below and acts on what :func:`reconcile` returns.

What is compared. The switch side is one :class:`SwitchRecord` per journal
transaction that reached the issuer link (an ``issuer_out`` leg, so
``issuer_stan`` is set), originals only: a reversal's effect is already on its
original (state, ``reversal_code``). The issuer side is one
:class:`IssuerRecord` per settlement row that is an authorization or
financial request (MTI class 01/02); the issuer's reversal rows, if the file
carries any, are redundant with the ``reversed`` flag of their original.

Matching is by the issuer-side key (RRN, STAN): the switch sends its own RRN
(F37) and its own STAN to the issuer, so both sides hold the same pair.

Every transaction gets exactly one :data:`KINDS` class; the classes other than
``matched`` and ``no_money`` are breaks, each with both sides' outcomes and the
action that fixes it. ``fix == "reverse"`` marks the breaks ``recon --fix``
may settle by queueing a reversal into the SAF; the others need a person.

Invariant: the result depends only on the inputs (sorted output, no clock),
so re-running recon on the same day gives the same report.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from switch.errors import SwitchError

__all__ = [
    "BREAK_KINDS",
    "KINDS",
    "SETTLEMENT_COLUMNS",
    "Break",
    "IssuerRecord",
    "ReconError",
    "ReconResult",
    "SwitchRecord",
    "parse_settlement",
    "reconcile",
]

SETTLEMENT_COLUMNS = (
    "rrn",
    "stan",
    "auth_code",
    "pan_masked",
    "pan_token",
    "amount",
    "currency",
    "processing_code",
    "mti",
    "response_code",
    "request_time",
    "answer_time",
    "reversed",
    "reversed_amount",
    "terminal",
    "merchant",
)

APPROVED = "00"
# Journal states in which the switch has undone (or is undoing) the issuer's approval.
_SWITCH_REVERSED = frozenset({"reversed", "timed_out_reversed", "partially_reversed"})
# Journal states in which the acquirer never heard an approval.
_NOT_APPROVED_TO_ACQUIRER = frozenset({"declined", "rejected", "timed_out", "in_flight"})

KINDS = (
    "matched",  # same key, amount, currency and outcome
    "no_money",  # neither side holds money and the issuer has no record (request lost)
    "approved_not_delivered",
    "reversed_only_at_switch",
    "reversed_only_at_issuer",
    "outcome_mismatch",
    "amount_mismatch",
    "currency_mismatch",
    "missing_in_journal",
    "missing_at_issuer",
    "duplicate_at_issuer",
    "duplicate_in_journal",
)
BREAK_KINDS = KINDS[2:]
_ORDER = {kind: i for i, kind in enumerate(KINDS)}


class ReconError(SwitchError):
    """A settlement file or journal that cannot be reconciled (exit code 2)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Record:
    """What both sides know of one request to the issuer; (rrn, stan) is the match key."""

    rrn: str
    stan: str
    amount: int
    currency: str
    processing_code: str
    mti: str
    response_code: str = ""
    terminal: str = ""
    pan_masked: str = ""
    pan_token: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.rrn, self.stan)


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuerRecord(_Record):
    """One settlement row: what the issuer did with one request."""

    reversed: bool = False
    reversed_amount: int = 0
    auth_code: str = ""
    request_time: str = ""
    answer_time: str = ""
    merchant: str = ""
    line: int = 0

    @property
    def approved(self) -> bool:
        return self.response_code == APPROVED

    @property
    def held(self) -> int:
        """Minor units the issuer still holds from the cardholder."""
        if not self.approved:
            return 0
        return max(0, self.amount - self.reversed_amount) if self.reversed else self.amount

    def outcome(self) -> str:
        if not self.approved:
            return f"declined {self.response_code}"
        if not self.reversed:
            return "approved 00"
        if self.reversed_amount < self.amount:
            return f"approved 00, partially reversed ({self.reversed_amount})"
        return "approved 00, reversed"


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchRecord(_Record):
    """One journal transaction that reached an issuer.

    ``response_code`` is what the acquirer heard; ``issuer_code`` the issuer's
    own answer (in time or late); ``reversal_code`` the issuer's answer to the
    switch's reversal of it (SAF or the acquirer's), when one was answered;
    ``reversal_pending`` that a reversal of it waits in the SAF (entry id).
    """

    txn_id: str
    link: str
    state: str
    issuer_code: str = ""
    reversal_code: str = ""
    reversal_pending: int | None = None
    acquirer_rrn: str = ""
    created_us: int = 0

    @property
    def approved_to_acquirer(self) -> bool:
        return self.response_code == APPROVED and self.state == "approved"

    @property
    def issuer_approved(self) -> bool:
        """What the switch knows of the issuer's decision (an 00 to the reversal counts)."""
        if self.issuer_code:
            return self.issuer_code == APPROVED
        return self.reversal_code == APPROVED

    def outcome(self) -> str:
        text = f"{self.state} ({self.response_code or 'no answer'})"
        if self.reversal_pending is not None:
            text += f", reversal pending in SAF #{self.reversal_pending}"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class Break:
    kind: str
    network: str
    rrn: str
    stan: str
    pan_masked: str
    currency: str
    switch_amount: int | None
    issuer_amount: int | None
    switch_outcome: str
    issuer_outcome: str
    action: str
    txn_id: str = ""
    fix: str | None = None  # "reverse": recon --fix may queue the reversal

    def sort_key(self) -> tuple[str, int, str, str, str]:
        return (self.network, _ORDER[self.kind], self.rrn, self.stan, self.txn_id)

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class ReconResult:
    network: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    breaks: list[Break] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.breaks


# -- the settlement file --------------------------------------------------------------


def _int(value: str, column: str, line: int) -> int:
    try:
        return int(value or "0")
    except ValueError:
        raise ReconError(f"line {line}: {column}: expected digits, got {value!r}") from None


def parse_settlement(lines: Iterable[str]) -> list[IssuerRecord]:
    """Settlement CSV (header first, columns as :data:`SETTLEMENT_COLUMNS`) → records.

    Rows other than authorizations and financial requests (reversal and network
    management rows) are skipped: their effect is on the original's ``reversed``.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise ReconError("empty (no header line)")
    header = [h.strip().lower() for h in header]
    missing = [c for c in SETTLEMENT_COLUMNS if c not in header]
    if missing:
        raise ReconError(f"lacks column(s) {', '.join(missing)}")
    index = {name: header.index(name) for name in SETTLEMENT_COLUMNS}
    out = []
    for line, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < len(header):
            raise ReconError(f"line {line}: {len(row)} columns, expected {len(header)}")
        values = {name: row[i].strip() for name, i in index.items()}
        if values["mti"][:2] not in ("01", "02"):
            continue
        out.append(
            IssuerRecord(
                rrn=values["rrn"],
                stan=values["stan"],
                amount=_int(values["amount"], "amount", line),
                currency=values["currency"],
                processing_code=values["processing_code"],
                mti=values["mti"],
                response_code=values["response_code"],
                reversed=values["reversed"] in ("1", "true", "True"),
                reversed_amount=_int(values["reversed_amount"], "reversed_amount", line),
                auth_code=values["auth_code"],
                pan_masked=values["pan_masked"],
                pan_token=values["pan_token"],
                request_time=values["request_time"],
                answer_time=values["answer_time"],
                terminal=values["terminal"],
                merchant=values["merchant"],
                line=line,
            )
        )
    return out


# -- classification -------------------------------------------------------------------


def _break(
    kind: str,
    network: str,
    action: str,
    switch: SwitchRecord | None,
    issuer: IssuerRecord | None,
    fix: str | None = None,
) -> Break:
    either = switch or issuer
    assert either is not None
    return Break(
        kind=kind,
        network=network,
        rrn=either.rrn,
        stan=either.stan,
        pan_masked=(switch.pan_masked if switch else "") or (issuer.pan_masked if issuer else ""),
        currency=either.currency,
        switch_amount=switch.amount if switch else None,
        issuer_amount=issuer.amount if issuer else None,
        switch_outcome=switch.outcome() if switch else "missing",
        issuer_outcome=issuer.outcome() if issuer else "missing",
        action=action,
        txn_id=switch.txn_id if switch else "",
        fix=fix,
    )


def _reverse_action(switch: SwitchRecord) -> tuple[str, str | None]:
    if switch.reversal_pending is not None:
        return (
            f"reversal already queued (SAF #{switch.reversal_pending}): "
            "let it deliver or `switch saf retry`",
            None,
        )
    return "send reversal", "reverse"


def _classify_pair(network: str, s: SwitchRecord, i: IssuerRecord) -> tuple[str, Break | None]:
    def br(kind: str, action: str, fix: str | None = None) -> tuple[str, Break]:
        return kind, _break(kind, network, action, s, i, fix)

    if s.currency != i.currency:
        return br("currency_mismatch", "investigate: currencies differ; correct with the issuer")
    if s.amount != i.amount:
        return br("amount_mismatch", "investigate: amounts differ; adjust with the issuer")
    switch_undone = s.state in _SWITCH_REVERSED or s.reversal_pending is not None
    if i.held == i.amount and i.approved:  # the issuer holds the full amount
        if s.approved_to_acquirer and s.reversal_pending is None:
            return "matched", None
        if s.state in _NOT_APPROVED_TO_ACQUIRER:
            action, fix = _reverse_action(s)
            return br("approved_not_delivered", action, fix)
        if switch_undone:
            action, fix = _reverse_action(s)
            return br("reversed_only_at_switch", action, fix)
        return br("outcome_mismatch", "investigate")
    if i.held:  # partially reversed at the issuer
        if s.state == "partially_reversed":
            return "matched", None
        if s.approved_to_acquirer:
            return br(
                "reversed_only_at_issuer",
                "investigate: the issuer reversed part; tell the acquirer",
            )
        return br("outcome_mismatch", "investigate: partial reversal at the issuer only")
    # The issuer holds nothing: declined, or approved and reversed.
    if s.approved_to_acquirer and s.reversal_pending is None:
        if i.approved:
            return br(
                "reversed_only_at_issuer",
                "investigate: the issuer reversed a sale the acquirer holds as approved",
            )
        return br(
            "outcome_mismatch",
            "investigate: the acquirer was told approved but the issuer declined; "
            "stop delivery and tell the acquirer",
        )
    if s.state == "partially_reversed":
        return br("outcome_mismatch", "investigate: partial at the switch, full at the issuer")
    return "matched", None


def _journal_duplicates(network: str, records: Sequence[SwitchRecord]) -> dict[str, Break]:
    """Approved sales the acquirer sent twice: same terminal, RRN, card, amount, currency."""
    groups: dict[tuple[str, ...], list[SwitchRecord]] = defaultdict(list)
    for s in records:
        if s.approved_to_acquirer and s.acquirer_rrn and s.reversal_pending is None:
            groups[
                (
                    s.terminal,
                    s.acquirer_rrn,
                    s.pan_token,
                    str(s.amount),
                    s.currency,
                    s.processing_code,
                )
            ].append(s)
    found: dict[str, Break] = {}
    for group in groups.values():
        group.sort(key=lambda r: (r.created_us, r.txn_id))
        for later in group[1:]:
            found[later.txn_id] = _break(
                "duplicate_in_journal",
                network,
                "confirm with the acquirer; reverse if unintended "
                f"(duplicate of {group[0].txn_id})",
                later,
                None,
                fix="reverse",
            )
    return found


def reconcile(
    network: str,
    switch_records: Iterable[SwitchRecord],
    issuer_records: Iterable[IssuerRecord],
    *,
    window: tuple[int, int] | None = None,
) -> ReconResult:
    """Classify every transaction of one network's business day.

    ``window`` is the day as [start, end) in µs: switch records outside it
    (read with a margin, since the two sides' clocks stamp a request near
    midnight a little apart) count only when the settlement file has them.
    """
    result = ReconResult(network)
    by_key: dict[tuple[str, str], list[SwitchRecord]] = defaultdict(list)
    for s in switch_records:
        by_key[s.key].append(s)
    issuer_by_key: dict[tuple[str, str], list[IssuerRecord]] = defaultdict(list)
    for i in issuer_records:
        issuer_by_key[i.key].append(i)

    def count(kind: str, found: Break | None = None) -> None:
        result.counts[kind] += 1
        if found is not None:
            result.breaks.append(found)

    firsts: list[SwitchRecord] = []
    for key in sorted(by_key):
        first, *extra = sorted(by_key[key], key=lambda r: (r.created_us, r.txn_id))
        firsts.append(first)
        for s in extra:
            count(
                "duplicate_in_journal",
                _break(
                    "duplicate_in_journal", network, "investigate: one issuer key twice", s, None
                ),
            )
    sent_twice = _journal_duplicates(network, firsts)
    for s in firsts:
        candidates = issuer_by_key.pop(s.key, [])
        if not candidates and window and not window[0] <= s.created_us < window[1]:
            continue  # the neighbouring day's
        candidates.sort(key=lambda r: (r.request_time, r.line))
        if candidates:
            kind, found = _classify_pair(network, s, candidates[0])
            if kind == "matched" and s.txn_id in sent_twice:
                kind, found = "duplicate_in_journal", sent_twice[s.txn_id]
            count(kind, found)
            for dup in candidates[1:]:
                action = (
                    "ask the issuer to reverse the duplicate charge"
                    if dup.held
                    else "no money held; check the link for retransmissions"
                )
                count("duplicate_at_issuer", _break("duplicate_at_issuer", network, action, s, dup))
        elif s.approved_to_acquirer or s.state == "partially_reversed":
            count(
                "missing_at_issuer",
                _break(
                    "missing_at_issuer",
                    network,
                    "investigate: the acquirer was told approved but the issuer has no record",
                    s,
                    None,
                ),
            )
        else:
            count("no_money")
    for key in sorted(issuer_by_key):
        rows = sorted(issuer_by_key[key], key=lambda r: (r.request_time, r.line))
        for n, i in enumerate(rows):
            kind = "missing_in_journal" if n == 0 else "duplicate_at_issuer"
            action = (
                "investigate: no journal record; ask the issuer to reverse"
                if i.held
                else "investigate the journal gap (no money held)"
            )
            count(kind, _break(kind, network, action, None, i))
    result.breaks.sort(key=Break.sort_key)
    return result


def summarize(results: Mapping[str, ReconResult]) -> dict[str, int]:
    """Counts per kind over all networks (for the summary line)."""
    total = dict.fromkeys(KINDS, 0)
    for result in results.values():
        for kind, n in result.counts.items():
            total[kind] += n
    return total
