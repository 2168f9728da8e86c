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

Speed: every message of the hot path goes through here four times, so each
spec gets a compiled :class:`_Plan` (field layouts as tuples) and a fast
decode/encode that handles the well-formed case in one tight loop. On
anything unusual (a bad length, a byte that does not decode, a tertiary
bitmap, a field the spec lacks) the fast path gives up and pyiso8583 does the
work, so errors and their partial results are pyiso8583's own. The fast path
is proved against pyiso8583 in tests/unit/test_codec.py (same dict, same bytes).
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


_Layout = tuple[str, int, str, int, bool, str, str, bytes | None, bytes | None]


def _latin1_tables(encoding: str) -> tuple[bytes | None, bytes | None]:
    """(to Latin-1, from Latin-1) byte tables when ``encoding`` is a byte-for-byte
    permutation of Latin-1; (None, None) otherwise (ASCII, Latin-1, binary...)."""
    if encoding in ("b", "ascii", "latin-1", "latin_1"):
        return None, None
    try:
        chars = bytes(range(256)).decode(encoding)
    except (LookupError, ValueError):
        return None, None
    if len(chars) != 256 or sorted(map(ord, chars)) != list(range(256)):
        return None, None
    latin1 = chars.encode("latin-1")
    return bytes.maketrans(bytes(range(256)), latin1), bytes.maketrans(latin1, bytes(range(256)))


class _Plan:
    """One spec's layouts, compiled for the fast path.

    A field layout is ``(key, len_type, len_enc, max_len, nibbles, data_enc,
    pad, to_latin1, from_latin1)`` where ``pad`` is ``"L"`` + char for a left
    pad, ``"R"`` + char for a right pad, or "" (pyiso8583's ``left_pad``/
    ``right_pad``, left first), and the two tables are set for a single-byte
    text encoding that maps its 256 bytes one to one onto Latin-1 (EBCDIC
    cp500): ``bytes.translate`` then does in C what the charmap codec does
    through a Python call per field, with the same result and the same
    refusals (a character beyond U+00FF fails the Latin-1 step as it fails
    the charmap).
    """

    __slots__ = (
        "bcd_mti",
        "bitmap_enc",
        "carried",
        "fields",
        "header",
        "hex_bitmap",
        "mti_enc",
        "numbers",
        "numeric",
        "spec",
    )

    def __init__(self, spec: Spec) -> None:
        pyiso = spec.pyiso
        self.spec = spec  # keeps the id() this plan is cached under alive
        self.header = int(pyiso["h"]["max_len"])
        self.bcd_mti = pyiso["t"]["data_enc"] == "b"
        self.mti_enc = str(pyiso["t"]["data_enc"])
        # The secondary bitmap must share the primary's encoding for the fast path.
        p_enc, s_enc = pyiso["p"]["data_enc"], pyiso.get("1", pyiso["p"])["data_enc"]
        self.hex_bitmap: bool | None = None if p_enc != s_enc else p_enc != "b"
        self.bitmap_enc = str(p_enc)
        # Keys encode() carries (see _cannot_carry) and the numeric ones among them.
        self.carried = frozenset(_NON_FIELDS | (set(spec.fields) - {"65"}))
        self.numeric = frozenset(k for k, fd in spec.fields.items() if fd.numeric)
        self.fields: dict[int, _Layout] = {}
        # Field key -> number for every key with a layout (encode's bitmap).
        self.numbers: dict[str, int] = {}
        for key, fs in pyiso.items():
            if not key.isdigit() or key in ("1", "65"):
                continue
            left, right = fs.get("left_pad", "")[:1], fs.get("right_pad", "")[:1]
            pad = "L" + left if left else ("R" + right if right else "")
            self.fields[int(key)] = (
                key,
                int(fs["len_type"]),
                str(fs["len_enc"]),
                int(fs["max_len"]),
                fs.get("len_count", "bytes") == "nibbles",
                str(fs["data_enc"]),
                pad,
                *_latin1_tables(str(fs["data_enc"])),
            )
            self.numbers[key] = int(key)


_PLANS: dict[int, _Plan] = {}


def _plan(spec: Spec) -> _Plan:
    plan = _PLANS.get(id(spec))
    if plan is None or plan.spec is not spec:
        plan = _PLANS[id(spec)] = _Plan(spec)
    return plan


def _bits(frame: bytes, idx: int, plan: _Plan, offset: int) -> list[int] | None:
    """The field numbers of the bitmap at ``idx`` in ascending order; None: not readable."""
    if plan.hex_bitmap is None:
        return None
    width = 16 if plan.hex_bitmap else 8
    bitmap = frame[idx : idx + width]
    if len(bitmap) != width:
        return None
    if plan.hex_bitmap:
        bitmap = bytes.fromhex(bitmap.decode(plan.bitmap_enc))
    value = int.from_bytes(bitmap, "big")
    top = offset + len(bitmap) * 8 + 1
    numbers = []
    while value:  # one turn per field present, not per bit
        low = value & -value
        numbers.append(top - low.bit_length())
        value ^= low
    numbers.reverse()
    return numbers


def _fast_decode(frame: bytes, plan: _Plan) -> dict[str, str] | None:
    """pyiso8583's decode of a well-formed frame, bitmaps dropped; None: ask pyiso8583."""
    doc: dict[str, str] = {}
    idx = plan.header
    try:
        if idx:
            if len(frame) < idx:
                return None
            doc["h"] = frame[:idx].hex().upper()
        if plan.bcd_mti:
            mti = frame[idx : idx + 2]
            if len(mti) != 2:
                return None
            doc["t"] = mti.hex().upper()
            idx += 2
        else:
            raw = frame[idx : idx + 4]
            if len(raw) != 4:
                return None
            doc["t"] = raw.decode(plan.mti_enc)
            idx += 4
        present = _bits(frame, idx, plan, 0)
        if present is None:
            return None
        idx += 16 if plan.hex_bitmap else 8
        if present and present[0] == 1:
            secondary = _bits(frame, idx, plan, 64)
            if secondary is None or 65 in secondary:
                return None  # a tertiary bitmap (F65 set) is pyiso8583's business
            present = present[1:] + secondary
            idx += 16 if plan.hex_bitmap else 8
        fields = plan.fields
        for number in present:
            layout = fields.get(number)
            if layout is None:
                return None
            key, len_type, len_enc, max_len, nibbles, data_enc, pad, to_latin1, _ = layout
            if len_type == 0:
                size = max_len
            else:
                prefix = frame[idx : idx + len_type]
                if len(prefix) != len_type:
                    return None
                if len_enc == "b":
                    size = int.from_bytes(prefix, "big")
                elif len_enc == "bcd":
                    size = int(prefix.hex(), 10)
                else:
                    size = int(prefix.decode(len_enc))
                if size > max_len:
                    return None
                idx += len_type
            if size == 0:
                doc[key] = ""
                continue
            width = (size + 1) // 2 if nibbles else size
            data = frame[idx : idx + width]
            if len(data) != width:
                return None
            idx += width
            if data_enc == "b":
                value = data.hex().upper()
                if nibbles and size & 1:
                    if pad[:1] == "L" and value[:1] == pad[1:]:
                        value = value[1:]
                    elif pad[:1] == "R" and value[-1:] == pad[1:]:
                        value = value[:-1]
                    else:
                        return None
            else:
                value = (
                    data.translate(to_latin1).decode("latin-1")
                    if to_latin1 is not None
                    else data.decode(data_enc)
                )
            doc[key] = value
    except (ValueError, LookupError):
        return None
    return doc if idx == len(frame) else None


def decode(frame: bytes, spec: Spec) -> dict[str, str]:
    """Decode one frame; raise CodecError with what was readable on failure."""
    if type(frame) is bytes:
        doc = _fast_decode(frame, _plan(spec))
        if doc is not None:
            return doc
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


def _fast_encode(message: Mapping[str, str], plan: _Plan) -> bytes | None:
    """pyiso8583's encoding of a message encode() accepts; None: ask pyiso8583."""
    parts: list[bytes] = []
    try:
        if plan.header:
            header = bytes.fromhex(message["h"]) if "h" in message else bytes(plan.header)
            if len(header) != plan.header or len(message.get("h", "")) not in (0, 2 * plan.header):
                return None
            parts.append(header)
        mti = message["t"]
        raw = bytes.fromhex(mti) if plan.bcd_mti else mti.encode(plan.mti_enc)
        if len(raw) != (2 if plan.bcd_mti else 4) or plan.hex_bitmap is None:
            return None
        if plan.bcd_mti and len(mti) != 4:  # fromhex skips spaces, a2b_hex does not
            return None
        parts.append(raw)
        known = plan.numbers
        numbers = [known[k] for k in message if k in known]
        if len(numbers) + ("h" in message) + ("t" in message) != len(message):
            return None  # a key without a layout (or a bitmap key): pyiso8583 decides
        numbers.sort()
        bitmap = 0
        for number in numbers:
            bitmap |= 1 << (128 - number)
        if numbers and numbers[-1] > 64:
            bitmap |= 1 << 127
            raw = bitmap.to_bytes(16, "big")
        else:
            raw = (bitmap >> 64).to_bytes(8, "big")
        parts.append(raw.hex().upper().encode(plan.bitmap_enc) if plan.hex_bitmap else raw)
        fields = plan.fields
        for number in numbers:
            layout = fields.get(number)
            if layout is None:
                return None
            key, len_type, len_enc, max_len, nibbles, data_enc, pad, _, from_latin1 = layout
            value = message[key]
            if data_enc == "b":
                if nibbles and len(value) & 1:
                    if pad[:1] == "L":
                        data = bytes.fromhex(pad[1:] + value)
                    elif pad[:1] == "R":
                        data = bytes.fromhex(value + pad[1:])
                    else:
                        return None
                else:
                    data = bytes.fromhex(value)
                if len(data) * 2 != len(value) + (len(value) & 1 if nibbles else 0):
                    return None  # fromhex skips spaces, pyiso8583's a2b_hex does not
                size = len(value) if nibbles else len(data)
            else:
                data = (
                    value.encode("latin-1").translate(from_latin1)
                    if from_latin1 is not None
                    else value.encode(data_enc)
                )
                size = len(data) * 2 if nibbles else len(data)
            if len_type == 0:
                if size != max_len:
                    return None
            else:
                if size > max_len:
                    return None
                if len_enc == "b":
                    parts.append(size.to_bytes(len_type, "big"))
                elif len_enc == "bcd":
                    digits = f"{size:0{len_type * 2}d}"
                    if len(digits) > len_type * 2:
                        return None
                    parts.append(bytes.fromhex(digits))
                else:
                    prefix = f"{size:0{len_type}d}".encode(len_enc)
                    if len(prefix) > len_type:
                        return None
                    parts.append(prefix)
            parts.append(data)
    except (ValueError, LookupError, OverflowError):
        return None
    return b"".join(parts)


def _carried(message: Mapping[str, str], plan: _Plan, strict: bool) -> bool:
    """True when _cannot_carry finds nothing in ``message`` (the common case, fast)."""
    carried, numeric = plan.carried, plan.numeric
    for key, value in message.items():
        if type(value) is not str or key not in carried:
            return False
        if strict and key in numeric and not _digits(value):
            return False
    return True


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
    plan = _plan(spec)
    if _carried(message, plan, strict):
        fast = _fast_encode(message, plan)
        if fast is not None:
            return fast
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


def _partial(message: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in message.items() if k in _READABLE}


def validate(message: Mapping[str, str], spec: Spec) -> None:
    """Apply the switch's own format rules; raise CodecError naming the field."""
    mti = message.get("t", "")
    if mti not in HANDLED_MTIS:
        raise CodecError(
            f"MTI {mti!r} is not handled by the switch", field="t", partial=_partial(message)
        )
    missing = [f for f in MANDATORY_FIELDS.get(mti, ()) if not message.get(f)]
    if missing:
        raise CodecError(
            f"{mti} is missing mandatory field(s) {', '.join(missing)}",
            field=missing[0],
            partial=_partial(message),
        )
    if is_reversal(mti) and mti[2] in "02" and not (message.get("90") or message.get("37")):
        raise CodecError(
            f"{mti} needs field 90 or field 37 to find its original",
            field="90",
            partial=_partial(message),
        )
    numeric = _plan(spec).numeric
    for key, value in message.items():
        if key in numeric and not _digits(value):
            fd = spec.fields[key]
            raise CodecError(
                f"field {key} ({fd.name}) must be numeric", field=key, partial=_partial(message)
            )
    amount = message.get("4")
    if amount is not None and len(amount) != 12:
        raise CodecError("field 4 (amount) must be 12 digits", field="4", partial=_partial(message))
    # F95 (an 42) opens with the amount actually spent (n 12): a partial reversal's
    # amount, which the issuer is sent and crash recovery rebuilds from the journal.
    replacement = message.get("95")
    if replacement is not None and not (len(replacement) >= 12 and _digits(replacement[:12])):
        raise CodecError(
            "field 95 (replacement amounts) must open with the 12-digit amount spent",
            field="95",
            partial=_partial(message),
        )


def masked(message: Mapping[str, str], spec: Spec) -> dict[str, str]:
    """A copy of ``message`` safe to show: PANs, track data, PIN, ICC, CVV2 and CAVV hidden."""
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
        return ecommerce.mask_secrets(spec, value)
    return value
