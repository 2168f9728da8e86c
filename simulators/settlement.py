"""A simulator's settlement file: one business day of its ledger as CSV.

Reconciliation (switch.recon) reads this file; the columns and their order
are fixed:

    rrn              F37 as received
    stan             F11 as received (the switch's STAN on the issuer side)
    auth_code        F38 given (approved only), else empty
    pan_masked       first 6 and last 4 digits
    pan_token        HMAC token of the PAN (switch.vault; the switch's tokens agree)
    amount           F4: minor units, 12 digits as on the wire, no decimal point
    currency         F49 (ISO 4217 numeric)
    processing_code  F3
    mti              the request's MTI (0100, 0200, 0400, 0401...)
    response_code    F39 answered
    request_time     ISO 8601 UTC, when the request arrived
    answer_time      ISO 8601 UTC, when the answer went out; empty if it never did
    reversed         1 when a reversal released this row's funds, else 0
    reversed_amount  minor units released (original minus any F95 replacement)
    terminal         F41
    merchant         F42

Rows: every authorization, financial request and reversal of the business
day (the UTC date of the request), in arrival order, header first.
Network management is not settled.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from simulators.ledger import Ledger
from switch.recon import SETTLEMENT_COLUMNS

__all__ = ["COLUMNS", "settlement_rows", "write_settlement"]

# One definition of the columns, shared with the reader (switch.recon).
COLUMNS = SETTLEMENT_COLUMNS


def _line(row: Mapping[str, Any]) -> list[str]:
    values = dict(row)
    values["amount"] = f"{row['amount'] or 0:012d}"
    values["reversed"] = "1" if row["reversed"] else "0"
    values["reversed_amount"] = str(row["reversed_amount"] or 0)
    return ["" if values[c] is None else str(values[c]) for c in COLUMNS]


def settlement_rows(ledger: Ledger, day: str) -> list[list[str]]:
    """The CSV lines (without header) of business day ``day`` (YYYY-MM-DD)."""
    return [_line(row) for row in ledger.settlement_rows(day)]


def write_settlement(ledger: Ledger, day: str, out: TextIO) -> int:
    """Write the day's settlement CSV to ``out``; returns the number of rows."""
    rows: Sequence[list[str]] = settlement_rows(ledger, day)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return len(rows)
