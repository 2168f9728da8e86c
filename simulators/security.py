"""Issuer-side security checks for the simulators: PIN (Visa PVV) and 3-D Secure CAVV.

**PIN.** The simulator decrypts F52 under its zone PIN key (ISO 9564 format
0, :func:`switch.pin.decode_pin`) and verifies the PIN the way a Visa issuer
does: it computes the Visa PIN Verification Value (PVV) of the entered PIN
and compares it with the PVV of the card's PIN, under a PIN verification key
(PVK) and key index (PVKI). The shipped card book carries the PIN in clear (it
is a test-card book), so the "stored" PVV is computed from it on the fly. A
PIN block that does not open as format 0 under the ZPK is a wrong PIN too
(55): the issuer cannot tell a garbled block from a wrong PIN either.

Visa PVV (Visa PIN verification, "PVV method"): the transformed security
parameter TSP = 11 rightmost PAN digits without the check digit + PVKI + the
4 leftmost PIN digits, TDES-encrypted under the PVK; the PVV is the first four
decimal digits of the result's hex, then (if fewer) its letters a-f as 0-5.
Checked against psec's published example (tests/unit/test_sim_security.py).

**CAVV.** Not the schemes' algorithm (theirs is keyed with the issuer's
CVK and not public in full): a deterministic keyed stand-in shared with the
ACS helper (``switch sim cavv``):

    cavv = base64(HMAC-SHA256(key, "<PAN>|<amount as 12 digits>")[:20])

20 bytes, like a real CAVV, so 28 base64 characters.

The default keys are fixed, public *test* values for the simulated networks;
a simulator given keys (from the key store) uses those.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from simulators.cardbook import Card
from simulators.decisions import Checks
from switch.errors import SecurityError
from switch.keys import tdes_encrypt
from switch.pin import decode_pin

__all__ = [
    "CAVV_LENGTH",
    "SIMULATOR_ACS_KEY",
    "SIMULATOR_PVK",
    "cavv_for",
    "checks",
    "verify_cavv",
    "verify_pin",
    "visa_pvv",
]

# Public test keys of the simulated networks: never use them for real cards.
SIMULATOR_PVK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
SIMULATOR_ACS_KEY = hashlib.sha256(b"switch simulator ACS key").digest()
SIMULATOR_PVKI = "1"
CAVV_LENGTH = 28
_DECIMALIZE = str.maketrans("abcdef", "012345")


def visa_pvv(pin: str, pan: str, pvk: bytes, pvki: str = SIMULATOR_PVKI) -> str:
    """The 4-digit Visa PVV of ``pin`` (its 4 leftmost digits) for ``pan``."""
    if len(pin) < 4 or not pin.isdigit() or len(pan) < 13 or not pan.isdigit():
        raise SecurityError("PVV: needs a PIN of 4+ digits and a PAN of 13+ digits")
    if len(pvki) != 1 or not pvki.isdigit():
        raise SecurityError("PVV: the key index is one digit")
    tsp = tdes_encrypt(pvk, bytes.fromhex(pan[-12:-1] + pvki + pin[:4])).hex()
    digits = [c for c in tsp if c.isdigit()]
    letters = [c.translate(_DECIMALIZE) for c in tsp if not c.isdigit()]
    return "".join((digits + letters)[:4])


def verify_pin(
    block_hex: str,
    pan: str,
    zpk: bytes,
    card: Card,
    *,
    pvk: bytes = SIMULATOR_PVK,
    pvki: str = SIMULATOR_PVKI,
) -> bool:
    """True when F52 (under ``zpk``) holds the card's PIN, by Visa PVV.

    False for a card without a PIN, a block that does not open, or a wrong PIN.
    """
    if not card.pin:
        return False
    try:
        entered = decode_pin(block_hex, pan, zpk)
    except SecurityError:
        return False
    if len(entered) != len(card.pin):
        return False
    expected = visa_pvv(card.pin, pan, pvk, pvki)
    return hmac.compare_digest(visa_pvv(entered, pan, pvk, pvki), expected)


def _amount(amount: int | str) -> str:
    text = str(amount)
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise ValueError("amount: expected up to 12 digits in minor units")
    return text.zfill(12)


def cavv_for(pan: str, amount: int | str, key: bytes = SIMULATOR_ACS_KEY) -> str:
    """The CAVV the ACS helper issues for ``pan`` and ``amount`` (minor units, or F4)."""
    digest = hmac.new(key, f"{pan}|{_amount(amount)}".encode("ascii"), hashlib.sha256).digest()
    return base64.b64encode(digest[:20]).decode("ascii")


def verify_cavv(cavv: str, pan: str, amount: int | str, key: bytes = SIMULATOR_ACS_KEY) -> bool:
    """True when ``cavv`` is the one :func:`cavv_for` gives (constant-time)."""
    try:
        expected = cavv_for(pan, amount, key)
    except ValueError:
        return False
    return hmac.compare_digest(cavv.encode("ascii", "replace"), expected.encode("ascii"))


def checks(
    zpk: bytes | None,
    *,
    pvk: bytes = SIMULATOR_PVK,
    acs_key: bytes = SIMULATOR_ACS_KEY,
) -> Checks:
    """The hooks :func:`simulators.decisions.decide` asks: PIN (if a ZPK is given) and CAVV."""

    def pin_ok(request: Mapping[str, str], card: Card) -> bool:
        assert zpk is not None
        return verify_pin(request.get("52", ""), request.get("2", ""), zpk, card, pvk=pvk)

    def cavv_ok(request: Mapping[str, str], card: Card, ecommerce: Mapping[str, str]) -> bool:
        cavv = ecommerce.get("cavv")
        return bool(cavv) and verify_cavv(cavv or "", card.pan, request.get("4", ""), acs_key)

    return Checks(pin_ok=pin_ok if zpk is not None else None, cavv_ok=cavv_ok)
