"""PIN blocks: ISO 9564-1 format 0 under TDES zone PIN keys, translated in memory only.

An acquirer sends F52 as an ISO format 0 PIN block encrypted under its zone
PIN key (ZPK); the issuer link expects it under the issuer's ZPK.
:func:`translate_pin_block` decrypts, checks that the clear block *is* format
0 for this PAN (control nibble 0, PIN length 4-12, digits, ``F`` filler) and
encrypts the same clear block under the other key. Nothing is written
anywhere, and no error names a key, a PIN or a PIN block: a SecurityError
(response code 63) says only which check failed.

psec does the format 0 encoding and decoding (the PIN field XOR the PAN
field of the 12 rightmost PAN digits without the check digit); the TDES
itself is :func:`switch.keys.tdes_encrypt`/``tdes_decrypt``.

A sequence of keys may be given where the block is *received* (``from_zpk``,
``decode_pin``): the current key first, then the previous one of a rotation
in its grace time (:meth:`switch.keys.KeyStore.candidates`). A wrong key
almost never decrypts to a valid format 0 block for the PAN (the control,
length and 8-14 filler nibbles must all come out right), so the first key
that yields one is the sender's.
"""

from __future__ import annotations

import psec

from switch.errors import SecurityError
from switch.keys import Keys, key_list, tdes_decrypt, tdes_encrypt

__all__ = ["decode_pin", "encode_pin_block", "translate_pin_block"]


def _block(block_hex: str) -> bytes:
    try:
        block = bytes.fromhex(block_hex)
    except ValueError:
        raise SecurityError("PIN block: expected 16 hex digits") from None
    if len(block) != 8:
        raise SecurityError("PIN block: expected 16 hex digits")
    return block


def _pan(pan: str) -> str:
    if len(pan) < 13 or not (pan.isascii() and pan.isdigit()):
        raise SecurityError("PIN block: format 0 needs the PAN (13-19 digits)")
    return pan


def _keys(keys: Keys) -> list[bytes]:
    return key_list(keys, (16, 24), "PIN key")


def _open(block_hex: str, pan: str, zpks: Keys) -> tuple[bytes, str]:
    """The clear format 0 block and its PIN under the first key that yields one."""
    block, pan = _block(block_hex), _pan(pan)
    for key in _keys(zpks):
        clear = tdes_decrypt(key, block)
        try:
            return clear, psec.pinblock.decode_pinblock_iso_0(clear, pan)
        except ValueError:
            continue  # psec's message quotes the PIN digits: never pass it on
    raise SecurityError("PIN block is not ISO 9564 format 0 for this card under the PIN key")


def translate_pin_block(block_hex: str, pan: str, from_zpk: Keys, to_zpk: bytes) -> str:
    """F52 under ``from_zpk`` (or the first of several that opens it) → F52 under ``to_zpk``."""
    clear, _ = _open(block_hex, pan, from_zpk)
    return tdes_encrypt(_keys(to_zpk)[0], clear).hex().upper()


def encode_pin_block(pin: str, pan: str, zpk: bytes) -> str:
    """A format 0 PIN block for ``pin`` and ``pan`` encrypted under ``zpk``, hex (F52)."""
    try:
        clear = psec.pinblock.encode_pinblock_iso_0(pin, _pan(pan))
    except ValueError:
        raise SecurityError("PIN: expected 4-12 digits") from None
    return tdes_encrypt(_keys(zpk)[0], clear).hex().upper()


def decode_pin(block_hex: str, pan: str, zpk: Keys) -> str:
    """The PIN in a format 0 block under ``zpk`` (issuer simulators and tests only)."""
    return _open(block_hex, pan, zpk)[1]
