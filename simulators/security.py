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
from collections.abc import Callable, Mapping

from simulators.cardbook import Card
from simulators.decisions import Checks, Decision
from switch.config import SecurityConfig, SimulatorConfig
from switch.errors import SecurityError
from switch.keys import Keys, KeyStore, open_store, tdes_encrypt
from switch.messages import F_KEY_BLOCK
from switch.pin import decode_pin

__all__ = [
    "CAVV_LENGTH",
    "SIMULATOR_ACS_KEY",
    "SIMULATOR_PVK",
    "accept_key",
    "cavv_for",
    "checks",
    "open_keys",
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
    zpk: Keys,
    card: Card,
    *,
    pvk: bytes = SIMULATOR_PVK,
    pvki: str = SIMULATOR_PVKI,
) -> bool:
    """True when F52 (under ``zpk``, or one of several keys) holds the card's PIN, by Visa PVV.

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
    zpks: Callable[[], Keys] | None,
    *,
    pvk: bytes = SIMULATOR_PVK,
    acs_key: bytes = SIMULATOR_ACS_KEY,
) -> Checks:
    """The hooks :func:`simulators.decisions.decide` asks: PIN (if ``zpks`` is given) and CAVV.

    ``zpks`` gives the zone PIN key(s) at the time of each check, so that a key
    received over key exchange (0800/161) is used at once and the previous one
    is still accepted during its grace time.
    """

    def pin_ok(request: Mapping[str, str], card: Card) -> bool:
        assert zpks is not None
        return verify_pin(request.get("52", ""), request.get("2", ""), zpks(), card, pvk=pvk)

    def cavv_ok(request: Mapping[str, str], card: Card, ecommerce: Mapping[str, str]) -> bool:
        cavv = ecommerce.get("cavv")
        return bool(cavv) and verify_cavv(cavv or "", card.pan, request.get("4", ""), acs_key)

    return Checks(pin_ok=pin_ok if zpks is not None else None, cavv_ok=cavv_ok)


def open_keys(config: SimulatorConfig, security: SecurityConfig) -> KeyStore | None:
    """The simulator's own key store, when it names a PIN, MAC or KEK key.

    The issuer's keys are its own (``[simulators.NAME] keystore``), not the
    switch's: the two sides share a key's *value* because it was exchanged,
    never a file. The master key is found as the switch's is.
    """
    named = (config.pin_key, config.mac_key, config.kek_key)
    init = f"switch keys --simulator {config.name} init"
    return open_store(config.keystore, security, named, init=init)


def accept_key(
    request: Mapping[str, str], keys: KeyStore | None, config: SimulatorConfig
) -> tuple[Decision, dict[str, str]]:
    """Key exchange (0800, F70 = 161): take the new zone PIN key from F120's TR-31 block.

    The block is opened under the simulator's KEK and becomes the current
    version of its ``pin_key`` (the previous one stays valid for the grace
    time, for PIN blocks already on the way). Answered 00 with the new key's
    check value in F120, which the switch compares with its own before it
    uses the key; 63 when the block does not open; 12 when this simulator has
    no KEK or PIN key to exchange.
    """
    if keys is None or config.pin_key is None or config.kek_key is None:
        return Decision(response_code="12", reason="key exchange not configured here"), {}
    try:
        entry = keys.import_tr31(config.pin_key, request.get(F_KEY_BLOCK, ""), config.kek_key)
    except SecurityError as exc:
        return Decision(response_code="63", reason=f"key exchange refused: {exc}"), {}
    return Decision(response_code="00", reason="new zone PIN key"), {F_KEY_BLOCK: entry.kcv}
