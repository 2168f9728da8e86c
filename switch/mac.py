"""Message authentication: ISO 9797-1 MAC algorithm 3 (the retail MAC, ANSI X9.19).

The MAC key is a double-length TDES key K = K1 || K2 (a ZAK). The data are
padded with ISO 9797-1 **padding method 1** (zero bytes up to a multiple of
8, none when already a multiple), DES-CBC encrypted under K1 from a zero IV,
and the last block goes through the output transformation
``E_K1(D_K2(H))``. Method 1 is what X9.19 and the card networks' ISO 8583
MACs use; its known weakness (data ending in zero bytes MACs like data
without them) does not apply here, because an ISO 8583 message is
self-delimiting: appending zero bytes changes how it decodes. Checked against
ISO 9797-1:2011 Annex B.4 (tests/unit/test_mac.py).

The MAC'd data (the *message-level* helpers :func:`sign` and :func:`check`)
are the encoded message from its first byte (the MTI, or the header when the
dialect has one) up to but excluding the MAC field's own bytes: the bitmap
thus says the MAC field is present. The MAC field is F64, or F128 when the
message has a secondary bitmap (any field 65-128); by ISO 8583 it is the last
field, so its bytes are the last bytes of the encoded message and the MAC'd
data is ``encoded[:-width]``. The framing's length prefix is not MAC'd.

Keys may be a sequence where a MAC is *received* (:func:`verify_mac`,
:func:`check`): the current key, then the previous one of a rotation in its
grace time. A comparison is always constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

import psec

from specs import Spec
from switch import codec
from switch.errors import SecurityError
from switch.keys import Keys, key_list, tdes_decrypt, tdes_encrypt

__all__ = [
    "MAC_LENGTH",
    "PADDING_METHOD",
    "check",
    "generate_mac",
    "mac_field",
    "sign",
    "verify_mac",
]

MAC_LENGTH = 8
PADDING_METHOD = 1
F_MAC = "64"
F_MAC_SECONDARY = "128"

_KEY_LENGTHS = (16,)  # K1 || K2: the retail MAC is double-length TDES only


def _keys(keys: Keys) -> list[bytes]:
    return key_list(keys, _KEY_LENGTHS, "MAC key")


def generate_mac(data: bytes, key: bytes) -> bytes:
    """The 8-byte retail MAC of ``data`` under the double-length key ``key``."""
    k1, k2 = _keys(key)[0][:8], key[8:]
    # psec's ISO 9797-1 padding; the ciphers are ours (switch.keys: no deprecated TDES path).
    padded = psec.mac.pad_iso_1(data, 8)
    chained = tdes_encrypt(k1, padded, iv=bytes(8))[-8:]
    return tdes_encrypt(k1, tdes_decrypt(k2, chained))


def verify_mac(data: bytes, mac: bytes, key: Keys) -> bool:
    """True when ``mac`` is the MAC of ``data`` under ``key`` (or any of several)."""
    ok = False
    for candidate in _keys(key):
        # Every candidate is tried, so the time does not say which one matched.
        ok |= hmac.compare_digest(generate_mac(data, candidate), mac)
    return ok


def mac_field(message: Mapping[str, str]) -> str:
    """Where the MAC goes: F128 when the message has a secondary bitmap, else F64."""
    secondary = any(
        key.isdigit() and 64 < int(key) <= 128 and key != F_MAC_SECONDARY for key in message
    )
    return F_MAC_SECONDARY if secondary else F_MAC


def _encoding(spec: Spec, field: str) -> str:
    """How the MAC field is on the wire: "b" (8 bytes) or a text encoding of 16 hex digits."""
    layout = spec.pyiso.get(field)
    encoding = str(layout["data_enc"]) if layout is not None else ""
    expected = MAC_LENGTH if encoding == "b" else 2 * MAC_LENGTH
    if layout is None or layout["len_type"] != 0 or layout["max_len"] != expected:
        raise SecurityError(f"{spec.name}: field {field} cannot carry an 8-byte MAC")
    return encoding


def _wire(mac: bytes, encoding: str) -> bytes:
    return mac if encoding == "b" else mac.hex().upper().encode(encoding)


def sign(message: Mapping[str, str], spec: Spec, key: bytes) -> bytes:
    """Encode ``message`` with its MAC in F64/F128; the caller's dict is not changed.

    A MAC field the message already has is replaced. CodecError as from
    :func:`switch.codec.encode` when the message does not encode.
    """
    field = mac_field(message)
    draft = {k: v for k, v in message.items() if k not in (F_MAC, F_MAC_SECONDARY)}
    draft[field] = "0" * 2 * MAC_LENGTH  # a placeholder: its bytes are not MAC'd
    encoding = _encoding(spec, field)
    width = len(_wire(bytes(MAC_LENGTH), encoding))
    data = codec.encode(draft, spec)[:-width]
    return data + _wire(generate_mac(data, key), encoding)


def check(frame: bytes, message: Mapping[str, str], spec: Spec, key: Keys) -> None:
    """Raise SecurityError unless ``frame`` (decoded as ``message``) carries a good MAC."""
    fields = [int(k) for k in message if k.isdigit()]
    # F128 present means a secondary bitmap, whatever else the message holds.
    field = F_MAC_SECONDARY if F_MAC_SECONDARY in message else mac_field(message)
    if field not in message:
        raise SecurityError(f"message has no MAC (field {field})")
    if max(fields) != int(field):
        raise SecurityError(f"the MAC (field {field}) is not the last field")
    encoding = _encoding(spec, field)
    try:
        mac = bytes.fromhex(message[field])
    except ValueError:
        raise SecurityError(f"field {field}: the MAC is not hex") from None
    width = len(_wire(bytes(MAC_LENGTH), encoding))
    # The codec decoded the field from the frame: its bytes come back exactly.
    as_sent = mac if encoding == "b" else message[field].encode(encoding)
    if len(mac) != MAC_LENGTH or frame[-width:] != as_sent:
        raise SecurityError(f"field {field}: the MAC is not the last {width} bytes of the frame")
    if not verify_mac(frame[:-width], mac, key):
        raise SecurityError(f"field {field}: bad MAC")
