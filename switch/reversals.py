"""Queueing a reversal of a request the switch sent to an issuer: one way, for every caller.

Three places decide that an issuer-side request must be undone: a timeout or
a late answer (processor), crash recovery (processor.recover) and
reconciliation (``switch recon --fix``). All of them build the reversal from
the *issuer-side* original (the switch's STAN, F7 and RRN, which is what the
issuer knows) and hand it to the SAF, which owns delivery and retries.

- :func:`issuer_request_of` rebuilds that original from an ``issuer_out``
  journal leg (its columns are the issuer-side values);
- :func:`queue_reversal` turns it into a 0400 without F2 (the SAF holds the
  PAN only AES-GCM encrypted, ``pan_enc``) and adds it to the SAF. Adding is
  idempotent per (txn_id, link, reason).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from switch.messages import F_PAN, original_mti
from switch.saf import SafStore
from switch.translate import reversal_for_issuer

__all__ = ["issuer_request_of", "queue_reversal"]


def issuer_request_of(leg: Mapping[str, Any]) -> dict[str, str]:
    """The issuer-side request recorded by an ``issuer_out`` leg (no PAN: it is encrypted)."""
    request = {
        "t": original_mti(leg.get("mti") or "0100"),
        "3": leg.get("processing_code") or "000000",
        "4": f"{leg.get('amount') or 0:012d}",
        "7": leg.get("f7") or "",
        "11": leg.get("stan") or "000000",
        "37": leg.get("rrn") or "",
        "41": leg.get("terminal") or "",
        "49": leg.get("currency") or "",
    }
    if leg.get("merchant"):
        request["42"] = leg["merchant"]
    return request


def queue_reversal(
    saf: SafStore,
    *,
    txn_id: str,
    link: str,
    issuer_request: Mapping[str, str],
    pan_enc: bytes | None,
    institution_id: str,
    expire_after_s: float,
    now: dt.datetime,
    reason: str = "auto",
    replacement_amount: str | None = None,
) -> int:
    """Persist a reversal of ``issuer_request`` for the SAF forwarder; returns the entry id."""
    reversal = reversal_for_issuer(
        issuer_request,
        stan="000000",
        now=now,
        institution_id=institution_id,
        replacement_amount=replacement_amount,
    )
    reversal.pop(F_PAN, None)  # the SAF holds the PAN only encrypted
    return saf.add(
        txn_id=txn_id,
        link=link,
        message=reversal,
        pan_enc=pan_enc,
        now_us=int(now.timestamp() * 1_000_000),
        expire_after_s=expire_after_s,
        original_txn=txn_id,
        reason=reason,
    )
