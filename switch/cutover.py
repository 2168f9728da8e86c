"""Cutover totals: the quantities of ISO 8583:1987 fields 74-89 and 97, and the 0500/0510.

Pure: records in, totals and messages out; ``now`` is an argument.

Each side computes :class:`Totals` per currency from what it knows:
- the switch from the journal (:func:`switch_totals`): a transaction counts as
  approved at the issuer when the issuer answered 00 (in time or late), or,
  with no answer, when the issuer answered 00 to its reversal; it counts as
  reversed when the journal state says the switch reversed it;
- the issuer from its ledger (:func:`issuer_totals`, on settlement rows).

Classes by processing code (F3 positions 1-2): ``20`` credit (refund),
``30``/``31`` inquiry, ``40`` transfer, anything else a debit. Authorizations
(F81) are the approved 01xx requests. Fee fields 82-85 are zero: the switch
charges no fees. F97, net settlement, is ``(debits - debit reversals) -
(credits - credit reversals)``, signed ``C`` when the acquirer is owed money,
``D`` when it owes, then 16 digits.

The 0500 (acquirer reconciliation request) carries F7, F11, F15 (settlement
date MMDD), F32 (our institution), F50 (currency), F73 (the business day,
YYMMDD, so the year is not guessed) and the totals; the 0510 echoes them with
F39 ``00`` and F66 settlement code ``1`` (in balance) or ``2`` (out of
balance), and carries the answering side's own totals in 74-89 and 97.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from switch.recon import IssuerRecord, ReconError, SwitchRecord

__all__ = [
    "IN_BALANCE",
    "OUT_OF_BALANCE",
    "TOTALS_FIELDS",
    "Totals",
    "answer_reconciliation",
    "business_day_of",
    "differences",
    "from_fields",
    "issuer_totals",
    "reconciliation_request",
    "switch_totals",
    "to_fields",
]

F_SETTLEMENT_DATE = "15"
F_SETTLEMENT_CODE = "66"
F_SETTLEMENT_CURRENCY = "50"
F_ACTION_DATE = "73"
F_NET = "97"
IN_BALANCE = "1"
OUT_OF_BALANCE = "2"

_SWITCH_REVERSED = frozenset({"reversed", "timed_out_reversed", "partially_reversed"})


@dataclass(slots=True, kw_only=True)
class Totals:
    """One side's totals for one network and currency (field number in each comment)."""

    credits: int = 0  # 74
    credit_reversals: int = 0  # 75
    debits: int = 0  # 76
    debit_reversals: int = 0  # 77
    transfers: int = 0  # 78
    transfer_reversals: int = 0  # 79
    inquiries: int = 0  # 80
    authorizations: int = 0  # 81
    credits_amount: int = 0  # 86
    credit_reversals_amount: int = 0  # 87
    debits_amount: int = 0  # 88
    debit_reversals_amount: int = 0  # 89

    @property
    def net(self) -> int:
        """Minor units the acquirer is owed (negative: it owes)."""
        return (self.debits_amount - self.debit_reversals_amount) - (
            self.credits_amount - self.credit_reversals_amount
        )

    def add(self, *, processing_code: str, mti: str, amount: int, reversed_amount: int) -> None:
        kind = processing_code[:2]
        if mti[:2] == "01":
            self.authorizations += 1
        if kind in ("30", "31"):
            self.inquiries += 1
            return
        if kind == "40":
            self.transfers += 1
            self.transfer_reversals += reversed_amount > 0
            return
        side = "credit" if kind == "20" else "debit"
        setattr(self, f"{side}s", getattr(self, f"{side}s") + 1)
        setattr(self, f"{side}s_amount", getattr(self, f"{side}s_amount") + amount)
        if reversed_amount:
            name = f"{side}_reversals"
            setattr(self, name, getattr(self, name) + 1)
            setattr(self, f"{name}_amount", getattr(self, f"{name}_amount") + reversed_amount)

    def as_dict(self) -> dict[str, int]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["net"] = self.net
        return out


# field number -> (Totals attribute, digits)
TOTALS_FIELDS: Mapping[str, tuple[str, int]] = {
    "74": ("credits", 10),
    "75": ("credit_reversals", 10),
    "76": ("debits", 10),
    "77": ("debit_reversals", 10),
    "78": ("transfers", 10),
    "79": ("transfer_reversals", 10),
    "80": ("inquiries", 10),
    "81": ("authorizations", 10),
    "86": ("credits_amount", 16),
    "87": ("credit_reversals_amount", 16),
    "88": ("debits_amount", 16),
    "89": ("debit_reversals_amount", 16),
}
_FEE_FIELDS = ("82", "83", "84", "85")


def switch_totals(records: Iterable[SwitchRecord]) -> dict[str, Totals]:
    """The switch's totals per currency, from the journal's view of the issuer."""
    out: dict[str, Totals] = {}
    for s in records:
        if not s.issuer_approved:
            continue
        reversed_amount = 0
        if s.state in _SWITCH_REVERSED:
            # The journal does not keep a partial reversal's F95; it counts whole.
            reversed_amount = s.amount
        out.setdefault(s.currency, Totals()).add(
            processing_code=s.processing_code,
            mti=s.mti,
            amount=s.amount,
            reversed_amount=reversed_amount,
        )
    return out


def issuer_totals(records: Iterable[IssuerRecord]) -> dict[str, Totals]:
    """The issuer's totals per currency, from its settlement rows."""
    out: dict[str, Totals] = {}
    for i in records:
        if not i.approved:
            continue
        out.setdefault(i.currency, Totals()).add(
            processing_code=i.processing_code,
            mti=i.mti,
            amount=i.amount,
            reversed_amount=min(i.amount, i.reversed_amount) if i.reversed else 0,
        )
    return out


def to_fields(totals: Totals) -> dict[str, str]:
    out = {
        number: f"{getattr(totals, name):0{digits}d}"
        for number, (name, digits) in TOTALS_FIELDS.items()
    }
    out.update(dict.fromkeys(_FEE_FIELDS, "0" * 12))
    net = totals.net
    out[F_NET] = ("C" if net >= 0 else "D") + f"{abs(net):016d}"
    return out


def from_fields(message: Mapping[str, str]) -> Totals:
    """Totals from a 0500/0510; a missing or malformed field is a ReconError."""
    values: dict[str, int] = {}
    for number, (name, _) in TOTALS_FIELDS.items():
        raw = message.get(number, "")
        if not raw.isdigit():
            raise ReconError(f"field {number} ({name}): expected digits, got {raw!r}")
        values[name] = int(raw)
    totals = Totals(**values)
    net = message.get(F_NET, "")
    if len(net) != 17 or net[0] not in "CD" or not net[1:].isdigit():
        raise ReconError(f"field 97 (net settlement): expected C/D and 16 digits, got {net!r}")
    signed = int(net[1:]) * (1 if net[0] == "C" else -1)
    if signed != totals.net:
        raise ReconError(f"field 97 says {signed} but fields 86-89 net to {totals.net}")
    return totals


def differences(ours: Totals, theirs: Totals) -> list[str]:
    """Fields that disagree, as ``"76 debits: 3 != 4"`` (empty when in balance)."""
    out = [
        f"{number} {name}: {getattr(ours, name)} != {getattr(theirs, name)}"
        for number, (name, _) in TOTALS_FIELDS.items()
        if getattr(ours, name) != getattr(theirs, name)
    ]
    if ours.net != theirs.net:
        out.append(f"97 net: {ours.net} != {theirs.net}")
    return out


def reconciliation_request(
    *,
    totals: Totals,
    currency: str,
    business_day: dt.date,
    stan: str,
    now: dt.datetime,
    institution_id: str,
) -> dict[str, str]:
    """The 0500 carrying the switch's totals for one currency of one business day."""
    return {
        "t": "0500",
        "7": now.astimezone(dt.UTC).strftime("%m%d%H%M%S"),
        "11": stan,
        F_SETTLEMENT_DATE: business_day.strftime("%m%d"),
        "32": institution_id,
        F_SETTLEMENT_CURRENCY: currency,
        F_ACTION_DATE: business_day.strftime("%y%m%d"),
        **to_fields(totals),
    }


def business_day_of(request: Mapping[str, str]) -> dt.date:
    """The business day a 0500 speaks of (F73 YYMMDD)."""
    raw = request.get(F_ACTION_DATE, "")
    try:
        return dt.datetime.strptime(raw, "%y%m%d").date()
    except ValueError:
        raise ReconError(f"field 73 (business day): expected YYMMDD, got {raw!r}") from None


def answer_reconciliation(request: Mapping[str, str], ours: Totals) -> dict[str, str]:
    """The 0510 to a 0500: our totals, and whether they agree with the sender's.

    A 0500 whose totals cannot be read is answered 30 (format error).
    """
    answer = {
        "t": "0510",
        **{
            k: request[k]
            for k in ("7", "11", F_SETTLEMENT_DATE, "32", F_SETTLEMENT_CURRENCY, F_ACTION_DATE)
            if k in request
        },
    }
    try:
        theirs = from_fields(request)
    except ReconError:
        answer["39"] = "30"
        return answer
    answer["39"] = "00"
    answer[F_SETTLEMENT_CODE] = IN_BALANCE if not differences(theirs, ours) else OUT_OF_BALANCE
    answer.update(to_fields(ours))
    return answer
