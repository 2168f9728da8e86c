"""PIN translation: ISO 9564 format 0 under one ZPK in, the same block under another out."""

from __future__ import annotations

import warnings

import psec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.cards import luhn_check_digit
from switch.errors import SecurityError
from switch.pin import decode_pin, encode_pin_block, translate_pin_block

ACQ = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
ISS = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
PAN = "4111111111111111"


def _tdes_keys() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=16, max_size=16).filter(lambda k: k[:8] != k[8:])


def _pans() -> st.SearchStrategy[str]:
    body = st.text("0123456789", min_size=12, max_size=18)
    return body.map(lambda b: b + luhn_check_digit(b))


def test_clear_block_is_psecs_format_0() -> None:
    # psec's published example: PIN 1234, PAN 5544332211009966 -> 041277CDDEEFF669.
    block = encode_pin_block("1234", "5544332211009966", ACQ)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # psec's TDES path is deprecated in cryptography
        clear = psec.des.decrypt_tdes_ecb(ACQ, bytes.fromhex(block))
    assert clear.hex().upper() == "041277CDDEEFF669"


def test_translation_reencrypts_under_the_issuer_key() -> None:
    block = encode_pin_block("1234", PAN, ACQ)
    out = translate_pin_block(block, PAN, ACQ, ISS)
    assert out != block
    assert len(out) == 16 and out == out.upper()
    assert decode_pin(out, PAN, ISS) == "1234"


@given(
    pin=st.text("0123456789", min_size=4, max_size=12),
    pan=_pans(),
    acquirer=_tdes_keys(),
    issuer=_tdes_keys(),
)
def test_translate_round_trips_any_pin_pan_and_keys(
    pin: str, pan: str, acquirer: bytes, issuer: bytes
) -> None:
    block = encode_pin_block(pin, pan, acquirer)
    assert decode_pin(translate_pin_block(block, pan, acquirer, issuer), pan, issuer) == pin


def test_a_block_under_another_key_is_refused_without_values() -> None:
    block = encode_pin_block("1234", PAN, ISS)
    with pytest.raises(SecurityError) as caught:
        translate_pin_block(block, PAN, ACQ, ISS)
    text = str(caught.value)
    assert caught.value.response_code == "63"
    for secret in (block, "1234", PAN, ACQ.hex(), ISS.hex()):
        assert secret.lower() not in text.lower()


def test_a_block_for_another_pan_is_refused() -> None:
    block = encode_pin_block("1234", PAN, ACQ)
    with pytest.raises(SecurityError, match="not ISO 9564 format 0"):
        translate_pin_block(block, "5500000000000004", ACQ, ISS)


def test_the_previous_key_of_a_rotation_still_opens_the_block() -> None:
    block = encode_pin_block("987654", PAN, ACQ)
    out = translate_pin_block(block, PAN, [ISS, ACQ], ISS)
    assert decode_pin(out, PAN, ISS) == "987654"


@pytest.mark.parametrize(
    ("block", "pan", "key", "problem"),
    [
        ("ABC", PAN, ACQ, "16 hex digits"),
        ("zz" * 8, PAN, ACQ, "16 hex digits"),
        ("00" * 8, "411111", ACQ, "needs the PAN"),
        ("00" * 8, PAN, ACQ[:8], "of 16 or 24 bytes"),
    ],
)
def test_malformed_input_is_a_security_error(
    block: str, pan: str, key: bytes, problem: str
) -> None:
    with pytest.raises(SecurityError, match=problem):
        translate_pin_block(block, pan, key, ISS)


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a4"])
def test_encode_refuses_a_pin_format_0_cannot_carry(pin: str) -> None:
    with pytest.raises(SecurityError) as caught:
        encode_pin_block(pin, PAN, ACQ)
    assert pin not in str(caught.value)
