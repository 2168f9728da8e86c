"""E-commerce data (CVV2, ECI, CAVV) as tag-length-value inside one field.

Each dialect says where it carries these (``specs.Ecommerce``): the acquirer
puts them in F48 as ``C2``/``EC``/``AV`` with 3-digit lengths, Visa in F126
with 2-digit tags and lengths, MasterCard in DE 48 subelements 92/42/43.
These pure functions read and write them by *role* so translation between
dialects is ``write(issuer_spec, read(acquirer_spec, msg))``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from specs import Ecommerce, Spec
from switch.errors import CodecError

__all__ = ["ROLES", "build_tlv", "mask_secrets", "parse_tlv", "read", "strip", "write"]

ROLES = ("cvv2", "eci", "cavv")
_SECRET_ROLES = ("cvv2", "cavv")  # never shown: they prove the cardholder


def parse_tlv(data: str, tag_length: int, length_digits: int) -> list[tuple[str, str]]:
    """Split ``data`` into (tag, value) pairs; CodecError on a truncated element."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(data):
        tag = data[pos : pos + tag_length]
        raw_len = data[pos + tag_length : pos + tag_length + length_digits]
        if len(tag) < tag_length or len(raw_len) < length_digits or not _digits(raw_len):
            raise CodecError(f"TLV element at offset {pos} has no valid tag/length")
        start = pos + tag_length + length_digits
        end = start + int(raw_len)
        if end > len(data):
            # No tag in the text: after a miscounted length the "tag" is the
            # previous value's tail (a CVV2's digits), and this text is logged.
            raise CodecError(f"TLV element at offset {pos} runs past the field's end")
        out.append((tag, data[start:end]))
        pos = end
    return out


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def build_tlv(items: list[tuple[str, str]], length_digits: int) -> str:
    """Join (tag, value) pairs; CodecError when a value's length needs more digits."""
    for tag, value in items:
        if len(value) >= 10**length_digits:
            raise CodecError(
                f"TLV element {tag!r}: {len(value)} characters do not fit "
                f"a {length_digits}-digit length"
            )
    return "".join(f"{tag}{len(value):0{length_digits}d}{value}" for tag, value in items)


def _items(eco: Ecommerce, message: Mapping[str, str]) -> list[tuple[str, str]]:
    """The TLV elements of the dialect's e-commerce field; errors name the field."""
    data = message.get(eco.field)
    if not data:
        return []
    try:
        return parse_tlv(data, eco.tag_length, eco.length_digits)
    except CodecError as exc:
        raise CodecError(f"field {eco.field}: {exc}", field=eco.field) from None


def read(spec: Spec, message: Mapping[str, str]) -> dict[str, str]:
    """The e-commerce values (by role) the message carries in ``spec``'s field."""
    eco = spec.ecommerce
    if eco is None:
        return {}
    by_tag = {tag: role for role, tag in eco.tags.items()}
    return {by_tag[tag]: value for tag, value in _items(eco, message) if tag in by_tag}


def _others(eco: Ecommerce, message: Mapping[str, str]) -> list[tuple[str, str]]:
    ours = set(eco.tags.values())
    return [(t, v) for t, v in _items(eco, message) if t not in ours]


def write(spec: Spec, message: dict[str, str], values: Mapping[str, str]) -> None:
    """Put ``values`` (by role) into ``message`` in ``spec``'s place, keeping other tags."""
    eco = spec.ecommerce
    if eco is None or not values:
        return
    items = _others(eco, message)
    items += [(eco.tags[role], values[role]) for role in ROLES if values.get(role)]
    if items:
        message[eco.field] = build_tlv(items, eco.length_digits)


def strip(spec: Spec, message: dict[str, str]) -> None:
    """Remove the e-commerce tags (after reading them) and drop the field if empty."""
    eco = spec.ecommerce
    if eco is None or not message.get(eco.field):
        return
    items = _others(eco, message)
    if items:
        message[eco.field] = build_tlv(items, eco.length_digits)
    else:
        del message[eco.field]


def mask_secrets(spec: Spec, data: str, others: Callable[[str], str] = str) -> str:
    """``data`` (the dialect's e-commerce field) with the CVV2 and CAVV values as ``*``.

    Both prove the cardholder and are never shown (PCI DSS 3.3.1; the CAVV
    is 3-D Secure authentication data); ``others`` is applied to every other
    value (a log's digit-run mask). A field that does not parse as TLV is
    masked whole: we cannot tell where they are.
    """
    eco = spec.ecommerce
    if eco is None:
        return data
    try:
        items = parse_tlv(data, eco.tag_length, eco.length_digits)
    except CodecError:
        return "*" * len(data)
    secret = {eco.tags[role] for role in _SECRET_ROLES if role in eco.tags}
    return build_tlv(
        [(t, "*" * len(v) if t in secret else others(v)) for t, v in items], eco.length_digits
    )
