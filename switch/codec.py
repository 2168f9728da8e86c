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

import re
from collections.abc import Mapping
from typing import Any

import iso8583

from specs import Spec
from switch import ecommerce
from switch.cards import mask_pan
from switch.errors import CodecError
from switch.messages import HANDLED_MTIS, MANDATORY_FIELDS, is_reversal

__all__ = ["decode", "encode", "masked", "salvage", "validate"]

_BITMAP_KEYS = ("p", "1")
_READABLE = ("t", "11", "37", "41", "7", "42")
# Shown masked (PCI DSS 3.3, 3.4): PANs as first 6 + last 4; track data as its
# masked PAN and nothing else; PIN block and ICC data not at all.
_PAN_FIELDS = frozenset({"2", "34"})
_TRACK_FIELDS = frozenset({"35", "36", "45"})
_SECRET_FIELDS = frozenset({"52", "55"})
_TRACK_PAN = re.compile(r"^([A-Z]?)([0-9]{12,19})(.*)$", re.DOTALL)
# Bad fields a salvage reads past before giving up (each costs one decode).
_MAX_RELAXED = 4
# Keys of a message that are not data elements of the spec.
_NON_FIELDS = frozenset({"t", "h", *_BITMAP_KEYS})


def decode(frame: bytes, spec: Spec) -> dict[str, str]:
    """Decode one frame; raise CodecError with what was readable on failure."""
    try:
        doc, _ = iso8583.decode(frame, spec.pyiso)
    except iso8583.DecodeError as exc:
        raise CodecError(
            f"{spec.name}: field {_describe(spec, exc.field)} at byte {exc.pos}: {exc.msg}",
            field=exc.field,
            position=exc.pos,
            partial=_readable(frame, spec, exc),
        ) from None
    except (ValueError, LookupError) as exc:  # bad encodings inside pyiso8583
        raise CodecError(f"{spec.name}: undecodable frame: {exc}") from None
    for key in _BITMAP_KEYS:
        doc.pop(key, None)
    if not doc.get("h"):
        doc.pop("h", None)
    return doc


def _describe(spec: Spec, key: str) -> str:
    return f"{key} ({spec.field_name(key)})"


def _readable(frame: bytes, spec: Spec, first: iso8583.DecodeError) -> dict[str, str]:
    """The fields that decoded cleanly, reading on past a bad data element if we can.

    A data element whose *length* is known but whose content is bad (bytes
    that are not ASCII, a length over its maximum, a wrong BCD pad) need not
    hide the fields after it: we decode again with that element relaxed to raw
    bytes, so a bad F4 still leaves F11 and F41 to answer the format error
    with. That reading on is trusted only when the rest of the frame then
    decodes to its last byte; otherwise (a truncated frame, an unreadable
    length prefix, misaligned garbage) we keep what came before the first
    error. Relaxed elements are never reported.
    """
    relaxed: dict[str, dict[str, Any]] = {}
    exc = first
    while _relaxable(exc.field, spec) and exc.field not in relaxed:
        if len(relaxed) == _MAX_RELAXED:
            break
        relaxed[exc.field] = _relax(spec.pyiso[exc.field])
        try:
            doc, _ = iso8583.decode(frame, {**spec.pyiso, **relaxed})
        except iso8583.DecodeError as again:
            exc = again
            continue
        except (ValueError, LookupError):
            break
        return _clean(doc, skip=relaxed)
    return _clean(first.doc_dec, skip={first.field: {}})


def _relaxable(key: str, spec: Spec) -> bool:
    return key.isdigit() and key != "1" and key in spec.pyiso


def _clean(doc: Mapping[str, Any], skip: Mapping[str, Any]) -> dict[str, str]:
    return {
        k: v
        for k, v in doc.items()
        if isinstance(v, str) and k not in skip and k not in _BITMAP_KEYS
    }


def _relax(field_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The same field layout read as raw bytes up to whatever its prefix can say."""
    relaxed = dict(field_spec, data_enc="b")
    if field_spec["len_type"]:
        relaxed["max_len"] = 10 ** (2 * field_spec["len_type"]) * 16
    elif field_spec.get("len_count") == "nibbles":
        # A fixed BCD field is whole bytes on the wire, pad nibble included.
        relaxed.update(len_count="bytes", max_len=(field_spec["max_len"] + 1) // 2)
        relaxed.pop("left_pad", None)
        relaxed.pop("right_pad", None)
    return relaxed


def salvage(error: CodecError) -> dict[str, str]:
    """The fields of a failed decode that let us answer it (MTI, F11, F41, F37, F7)."""
    return {k: v for k, v in error.partial.items() if k in _READABLE}


def encode(message: Mapping[str, str], spec: Spec, *, strict: bool = False) -> bytes:
    """Encode ``message`` for ``spec``; CodecError naming the field it cannot carry.

    Beyond pyiso8583 we refuse what it would silently drop: keys that are not
    fields of the spec (``"x"``, ``"129"``; ``"65"``, which pyiso8583 4.x
    treats as the tertiary bitmap) and values that are not strings.

    Content the wire can carry is carried, even when :func:`validate` would
    refuse it at the other end (letters in a numeric field: a test tool must
    be able to send a format error). ``strict=True`` refuses numeric elements
    that are not digits too, which packed BCD would otherwise take as hex
    nibbles; ``switch encode`` uses it.
    """
    partial = {k: v for k, v in message.items() if k in _READABLE}
    for key, value in message.items():
        problem = _cannot_carry(spec, key, value, strict)
        if problem:
            raise CodecError(
                f"cannot encode for {spec.name}: {problem}", field=key, partial=partial
            )
    doc: dict[str, Any] = {k: v for k, v in message.items() if k not in _BITMAP_KEYS}
    if spec.header_length and "h" not in doc:
        doc["h"] = "00" * spec.header_length
    try:
        raw, _ = iso8583.encode(doc, spec.pyiso)
    except iso8583.EncodeError as exc:
        raise CodecError(
            f"cannot encode for {spec.name}: field {_describe(spec, exc.field)}: {exc.msg}",
            field=exc.field,
            partial=partial,
        ) from None
    except (ValueError, LookupError, TypeError) as exc:
        raise CodecError(f"cannot encode for {spec.name}: {exc}", partial=partial) from None
    return bytes(raw)


def _cannot_carry(spec: Spec, key: str, value: object, strict: bool) -> str | None:
    if not isinstance(value, str):
        return f"field {key}: expected a string, got {type(value).__name__}"
    if key in _NON_FIELDS:
        return None
    fd = spec.fields.get(key)
    if fd is None or key == "65":
        return f"field {key!r} is not a data element of this spec"
    if strict and fd.numeric and not _digits(value):
        return f"field {_describe(spec, key)} must be digits"
    return None


def _digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


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
        if fd is not None and fd.numeric and not _digits(value):
            raise CodecError(f"field {key} ({fd.name}) must be numeric", field=key, partial=partial)
    amount = message.get("4")
    if amount is not None and len(amount) != 12:
        raise CodecError("field 4 (amount) must be 12 digits", field="4", partial=partial)


def masked(message: Mapping[str, str], spec: Spec) -> dict[str, str]:
    """A copy of ``message`` safe to show: PANs, track data, PIN, ICC and CVV2 hidden."""
    eco_field = spec.ecommerce.field if spec.ecommerce else None
    return {key: _mask_field(key, value, spec, eco_field) for key, value in message.items()}


def _mask_field(key: str, value: str, spec: Spec, eco_field: str | None) -> str:
    if key in _PAN_FIELDS:
        return mask_pan(value)
    if key in _TRACK_FIELDS:
        found = _TRACK_PAN.match(value)
        if found is None:
            return "*" * len(value)
        code, pan, rest = found.groups()
        return code + mask_pan(pan) + "*" * len(rest)
    if key in _SECRET_FIELDS:
        return "*" * len(value)
    if key == eco_field:
        return ecommerce.mask_cvv2(spec, value)
    return value
