"""Acquirer dialect ⇄ issuer dialect, and the answers the switch builds itself.

All pure: a message in, a new message out; time comes in as a ``datetime``.

Issuer side of a request (``to_issuer``):
- data elements are copied field by field (every dialect shares the ISO
  8583:1987 catalog, so values are already in the common decoded form);
- the switch's own STAN replaces F11, F7 is the switch's transmission time,
  F32 our acquiring institution id, F37 the acquirer's RRN or one we assign;
- e-commerce data (CVV2, ECI, CAVV) moves from the acquirer's F48 TLV to
  where the issuer's spec carries it;
- track 2 (F35) gets the separator the issuer's encoding can carry (``=``
  in text, ``D`` in packed BCD);
- F52 (PIN block) and F64/F128 (MAC) are never copied: PIN translation and
  MAC generation are separate steps under the link's keys;
- a reversal's F90 is rewritten to the *issuer-side* original (MTI, switch
  STAN, switch F7), since that is what the issuer knows.

An issuer's own 0800 (``network_answer``): 0810 with 00 for a sign-on or an
echo, 12 for any other code, F70 echoed.

Acquirer side of an answer (``to_acquirer``/``local_answer``): the response
MTI and F3, F4, F7, F11, F37, F38 (approved only), F39, F41, F42, F49, with the
acquirer's own F11, F41 and F37 restored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from specs import Spec
from switch import ecommerce
from switch.messages import (
    APPROVED,
    F_ACQUIRER_ID,
    F_AMOUNT,
    F_AUTH_CODE,
    F_NETWORK_MGMT,
    F_ORIGINAL_DATA,
    F_REPLACEMENT_AMOUNTS,
    F_RESPONSE_CODE,
    F_RRN,
    F_STAN,
    F_TRACK2,
    F_TRANSMISSION_TIME,
    original_mti,
    response_mti,
)

__all__ = [
    "ANSWER_FIELDS",
    "format_original_data",
    "local_answer",
    "network_answer",
    "parse_original_data",
    "reversal_for_issuer",
    "rrn_for",
    "to_acquirer",
    "to_issuer",
    "track2_for",
    "transmission_time",
]

# Never copied between legs: PIN block and MACs are re-made under link keys.
_NOT_COPIED = frozenset({"h", "p", "1", "52", "64", "128"})
# Never carried by a reversal: card-present secrets and e-commerce auth data.
_NOT_IN_REVERSAL = frozenset({"14", "35", "45", "48", "52", "55", "64", "126", "128"})
ANSWER_FIELDS = ("3", "4", "7", "11", "37", "38", "39", "41", "42", "49")
# What the switch acknowledges when an issuer asks it (F70): sign-on and echo. A
# sign-off, or a key the switch did not ask for, is refused: 00 would claim it acted.
_ACKNOWLEDGED = frozenset({"001", "301"})


# (second since the epoch, F7 text) and (hour since the epoch, RRN prefix) last
# formatted: every request of a second shares them, and strftime costs ~10x
# the lookup (one tuple, swapped whole, so a reader never sees half of one).
_f7_cache: tuple[int, str] = (-1, "")
_rrn_cache: tuple[int, str] = (-1, "")


def transmission_time(now: dt.datetime) -> str:
    """F7, MMDDhhmmss in UTC."""
    global _f7_cache
    second = int(now.timestamp())
    cached = _f7_cache
    if cached[0] != second:
        cached = _f7_cache = (second, now.astimezone(dt.UTC).strftime("%m%d%H%M%S"))
    return cached[1]


def rrn_for(now: dt.datetime, sequence: int) -> str:
    """A 12-digit RRN: last digit of the year, Julian day, hour, 6-digit sequence."""
    global _rrn_cache
    hour = int(now.timestamp()) // 3600
    cached = _rrn_cache
    if cached[0] != hour:
        utc = now.astimezone(dt.UTC)
        cached = _rrn_cache = (hour, f"{utc.year % 10}{utc.timetuple().tm_yday:03d}{utc.hour:02d}")
    return f"{cached[1]}{sequence % 1_000_000:06d}"


def format_original_data(mti: str, stan: str, f7: str, acquirer_id: str = "") -> str:
    """F90: original MTI 4 + STAN 6 + F7 10 + acquirer id 11 + forwarder id 11 (ISO 8583:1987)."""
    return f"{mti:0>4}{stan:0>6}{f7:0>10}{acquirer_id:0>11}{'':0>11}"


def parse_original_data(f90: str) -> tuple[str, str, str, str]:
    """(original MTI, STAN, F7, acquirer id) from F90."""
    return f90[0:4], f90[4:10], f90[10:20], f90[20:31].lstrip("0")


def to_issuer(
    request: Mapping[str, str],
    *,
    acquirer_spec: Spec,
    issuer_spec: Spec,
    stan: str,
    rrn: str,
    now: dt.datetime,
    institution_id: str,
    original: tuple[str, str, str] | None = None,
) -> dict[str, str]:
    """The request as the issuer network should see it.

    ``original`` is the issuer-side (MTI, STAN, F7) of the transaction a
    reversal reverses; it becomes F90.
    """
    out = {
        k: v
        for k, v in request.items()
        if k not in _NOT_COPIED and (k == "t" or k in issuer_spec.fields)
    }
    eco = ecommerce.read(acquirer_spec, out)
    ecommerce.strip(acquirer_spec, out)
    ecommerce.write(issuer_spec, out, eco)
    if F_TRACK2 in out:
        out[F_TRACK2] = track2_for(issuer_spec, out[F_TRACK2])
    out["t"] = original_mti(request["t"]) if original is not None else request["t"]
    out[F_STAN] = stan
    out[F_TRANSMISSION_TIME] = transmission_time(now)
    out[F_ACQUIRER_ID] = institution_id
    out[F_RRN] = rrn
    if original is not None:
        out[F_ORIGINAL_DATA] = format_original_data(*original, institution_id)
        for key in _NOT_IN_REVERSAL & set(out):
            del out[key]
    return out


def track2_for(spec: Spec, track2: str) -> str:
    """Track 2 with the field separator ``spec`` carries: ``D`` when F35 is packed
    (BCD nibbles, e.g. Visa), ``=`` when it is text (ISO/IEC 7813 writes ``=`` on the
    stripe; packed formats cannot hold it and use the hex digit D instead)."""
    if spec.pyiso.get(F_TRACK2, {}).get("data_enc") == "b":
        return track2.replace("=", "D")
    return track2.replace("D", "=").replace("d", "=")


def to_acquirer(answer: Mapping[str, str], request: Mapping[str, str]) -> dict[str, str]:
    """The issuer's answer in the acquirer's terms, F11/F41/F37 restored."""
    code = answer.get(F_RESPONSE_CODE, "96")
    out = local_answer(request, code, rrn=answer.get(F_RRN))
    if code == APPROVED and answer.get(F_AUTH_CODE):
        out[F_AUTH_CODE] = answer[F_AUTH_CODE]
    # Partial approval: the issuer may answer a smaller amount.
    if answer.get(F_AMOUNT) and code == APPROVED:
        out[F_AMOUNT] = answer[F_AMOUNT]
    return out


def local_answer(
    request: Mapping[str, str], response_code: str, *, rrn: str | None = None
) -> dict[str, str]:
    """An answer the switch gives without (or instead of) the issuer's."""
    out = {"t": response_mti(request["t"])}
    for key in ANSWER_FIELDS:
        if key in request and key not in ("38", "39"):
            out[key] = request[key]
    if F_RRN not in out and rrn:
        out[F_RRN] = rrn
    out[F_RESPONSE_CODE] = response_code
    return out


def network_answer(request: Mapping[str, str]) -> dict[str, str]:
    """The switch's 0810 to an issuer's own 0800, with its F70 (network management code)."""
    code = APPROVED if request.get(F_NETWORK_MGMT) in _ACKNOWLEDGED else "12"
    out = local_answer(request, code)
    if F_NETWORK_MGMT in request:
        out[F_NETWORK_MGMT] = request[F_NETWORK_MGMT]
    return out


def reversal_for_issuer(
    issuer_request: Mapping[str, str],
    *,
    stan: str,
    now: dt.datetime,
    institution_id: str,
    mti: str = "0400",
    replacement_amount: str | None = None,
) -> dict[str, str]:
    """An automatic reversal of ``issuer_request`` (as sent to the issuer).

    F2 is left out when the original had none (the SAF stores the PAN
    encrypted and fills it in at send time).
    """
    out = {k: v for k, v in issuer_request.items() if k not in _NOT_IN_REVERSAL and k != "t"}
    out["t"] = mti
    out[F_STAN] = stan
    out[F_TRANSMISSION_TIME] = transmission_time(now)
    out[F_ACQUIRER_ID] = institution_id
    out[F_ORIGINAL_DATA] = format_original_data(
        issuer_request["t"],
        issuer_request[F_STAN],
        issuer_request.get(F_TRANSMISSION_TIME, ""),
        institution_id,
    )
    if replacement_amount is not None:
        out[F_REPLACEMENT_AMOUNTS] = f"{replacement_amount:0>12}" + "0" * 30
    out.pop(F_RESPONSE_CODE, None)
    out.pop(F_AUTH_CODE, None)
    return out
