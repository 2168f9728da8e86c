"""The issuer's side of cutover: answer an acquirer's 0500 with the ledger's totals (0510).

Pure: the 0500 and the business day's ledger rows (``Ledger.settlement_rows``)
in, the 0510 out. The simulator's host finds the day in the 0500
(:func:`business_day`), reads those rows and calls :func:`answer`.

Totals are computed exactly as reconciliation computes an issuer's totals from
a settlement file (``switch.cutover.issuer_totals``) -- the settlement file is
these same rows -- so a clean day is in balance by construction, and any
difference means the two sides' records really differ. The 0510 carries F39
``00`` with F66 ``1`` (in balance) or ``2`` (out of balance) and the ledger's
totals in fields 74-89 and 97; an unreadable 0500 is answered 30.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from switch.cutover import (
    Totals,
    answer_reconciliation,
    business_day_of,
    issuer_totals,
)
from switch.errors import SwitchError
from switch.messages import response_mti
from switch.recon import IssuerRecord

__all__ = ["answer", "business_day", "records_of"]


def business_day(request: Mapping[str, str]) -> str | None:
    """The ISO date (``YYYY-MM-DD``) a 0500 reconciles, or None when F73 is unreadable."""
    try:
        return business_day_of(request).isoformat()
    except SwitchError:
        return None


def records_of(rows: Iterable[Mapping[str, Any]]) -> list[IssuerRecord]:
    """Ledger rows → the records a settlement file would carry (authorizations and financials)."""
    return [
        IssuerRecord(
            rrn=row.get("rrn") or "",
            stan=row.get("stan") or "",
            amount=int(row.get("amount") or 0),
            currency=row.get("currency") or "",
            processing_code=row.get("processing_code") or "",
            mti=row.get("mti") or "",
            response_code=row.get("response_code") or "",
            reversed=bool(row.get("reversed")),
            reversed_amount=int(row.get("reversed_amount") or 0),
        )
        for row in rows
        if (row.get("mti") or "")[:2] in ("01", "02")
    ]


def answer(request: Mapping[str, str], rows: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    """The 0510 to ``request``; ``rows`` are the ledger rows of its business day.

    ``rows`` None means the day could not be read from the 0500: answered 30.
    """
    if rows is None:
        return {
            "t": response_mti(request.get("t", "0500")),
            **{k: request[k] for k in ("7", "11") if k in request},
            "39": "30",
        }
    currency = request.get("50", "")
    totals = issuer_totals(r for r in records_of(rows) if r.currency == currency)
    return answer_reconciliation(request, totals.get(currency, Totals()))
