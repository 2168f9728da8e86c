"""Bytes ⇄ message over pyiso8583, plus the validation pyiso8583 leaves to us.

``decode(frame, spec)`` returns a fresh ``dict[str, str]`` without bitmap or
empty header keys; ``encode(message, spec)`` never mutates the caller's dict.
pyiso8583's ``DecodeError``/``EncodeError`` become :class:`CodecError` here, at
the boundary, carrying whatever was readable (MTI, F11, F41) so that the
switch can still answer a format error the sender can match (response 30).

``validate(message, spec)`` applies the switch's own rules, all in the table
below so there is one place to read them:
- the MTI is one the switch handles;
- the mandatory fields for that MTI are present (messages.MANDATORY_FIELDS);
- reversals carry F90 or F37 to find their original;
- numeric (format ``n``) elements are digits only, F4 exactly 12 digits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import iso8583

from specs import Spec
from switch.errors import CodecError
from switch.messages import HANDLED_MTIS, MANDATORY_FIELDS, is_reversal

__all__ = ["decode", "encode", "salvage", "validate"]

_BITMAP_KEYS = ("p", "1")
_READABLE = ("t", "11", "37", "41", "7", "42")


def decode(frame: bytes, spec: Spec) -> dict[str, str]:
    """Decode one frame; raise CodecError with what was readable on failure."""
    try:
        doc, _ = iso8583.decode(frame, spec.pyiso)
    except iso8583.DecodeError as exc:
        partial = {k: v for k, v in exc.doc_dec.items() if isinstance(v, str)}
        raise CodecError(
            f"{exc.msg}: field {exc.field} at byte {exc.pos}",
            field=exc.field,
            position=exc.pos,
            partial=partial,
        ) from None
    except (ValueError, LookupError) as exc:  # bad encodings inside pyiso8583
        raise CodecError(f"undecodable frame: {exc}") from None
    for key in _BITMAP_KEYS:
        doc.pop(key, None)
    if not doc.get("h"):
        doc.pop("h", None)
    return doc


def salvage(error: CodecError) -> dict[str, str]:
    """The fields of a failed decode that let us answer it (MTI, F11, F41, F37, F7)."""
    return {k: v for k, v in error.partial.items() if k in _READABLE}


def encode(message: Mapping[str, str], spec: Spec) -> bytes:
    doc: dict[str, Any] = {k: v for k, v in message.items() if k not in _BITMAP_KEYS}
    if spec.header_length and "h" not in doc:
        doc["h"] = "00" * spec.header_length
    try:
        raw, _ = iso8583.encode(doc, spec.pyiso)
    except iso8583.EncodeError as exc:
        raise CodecError(
            f"cannot encode for {spec.name}: {exc.msg}: field {exc.field}",
            field=exc.field,
            partial={k: v for k, v in message.items() if k in _READABLE},
        ) from None
    except (ValueError, LookupError, TypeError) as exc:
        raise CodecError(f"cannot encode for {spec.name}: {exc}") from None
    return bytes(raw)


def validate(message: Mapping[str, str], spec: Spec) -> None:
    """Apply the switch's own format rules; raise CodecError naming the field."""
    mti = message.get("t", "")
    partial = {k: v for k, v in message.items() if k in _READABLE}
    if mti not in HANDLED_MTIS:
        raise CodecError(f"MTI {mti!r} is not handled by the switch", field="t", partial=partial)
    missing = [f for f in MANDATORY_FIELDS.get(mti, ()) if not message.get(f)]
    if missing:
        raise CodecError(
            f"{mti} is missing mandatory field(s) {', '.join(missing)}",
            field=missing[0],
            partial=partial,
        )
    if is_reversal(mti) and mti[2] in "02" and not (message.get("90") or message.get("37")):
        raise CodecError(
            f"{mti} needs field 90 or field 37 to find its original", field="90", partial=partial
        )
    for key, value in message.items():
        fd = spec.fields.get(key)
        if fd is not None and fd.numeric and not value.isdigit():
            raise CodecError(f"field {key} ({fd.name}) must be numeric", field=key, partial=partial)
    amount = message.get("4")
    if amount is not None and len(amount) != 12:
        raise CodecError("field 4 (amount) must be 12 digits", field="4", partial=partial)
