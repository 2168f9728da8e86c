"""Issuer simulator checks: PIN by Visa PVV under the issuer ZPK, CAVV shared with the ACS."""

from __future__ import annotations

import warnings

import psec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.cardbook import Card
from simulators.decisions import Checks
from simulators.security import (
    CAVV_LENGTH,
    cavv_for,
    checks,
    verify_cavv,
    verify_pin,
    visa_pvv,
)
from switch.errors import SecurityError
from switch.pin import encode_pin_block

ZPK = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
PAN = "4111111111111111"
CARD = Card(pan=PAN, network="visa", expiry="3012", pin="1234")
KEY = b"k" * 32


def test_pvv_matches_psecs_published_example() -> None:
    pvk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    assert visa_pvv("4524", "1122334455667788", pvk, "3") == "4021"


@given(st.text("0123456789", min_size=4, max_size=4), st.binary(min_size=16, max_size=16))
def test_pvv_is_psecs_for_any_pin_and_key(pin: str, pvk: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # psec's TDES path is deprecated in cryptography
        expected = psec.pin.generate_visa_pvv(pvk, "1", pin, PAN)
    assert visa_pvv(pin, PAN, pvk, "1") == expected


def test_the_right_pin_verifies() -> None:
    assert verify_pin(encode_pin_block("1234", PAN, ZPK), PAN, ZPK, CARD)


@pytest.mark.parametrize("pin", ["1235", "12345", "4321"])
def test_a_wrong_pin_does_not(pin: str) -> None:
    assert not verify_pin(encode_pin_block(pin, PAN, ZPK), PAN, ZPK, CARD)


def test_a_block_under_another_key_or_garbage_is_a_wrong_pin() -> None:
    other = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    assert not verify_pin(encode_pin_block("1234", PAN, other), PAN, ZPK, CARD)
    assert not verify_pin("not hex", PAN, ZPK, CARD)


def test_a_card_without_a_pin_never_verifies() -> None:
    card = Card(pan=PAN, network="visa", expiry="3012")
    assert not verify_pin(encode_pin_block("1234", PAN, ZPK), PAN, ZPK, card)


def test_pvv_refuses_bad_input_without_values() -> None:
    with pytest.raises(SecurityError) as caught:
        visa_pvv("12", PAN, ZPK)
    assert PAN not in str(caught.value)


def test_cavv_is_deterministic_28_characters_and_keyed() -> None:
    cavv = cavv_for(PAN, 1000, KEY)
    assert len(cavv) == CAVV_LENGTH
    assert cavv == cavv_for(PAN, "000000001000", KEY)
    assert cavv != cavv_for(PAN, 1001, KEY)
    assert cavv != cavv_for("4000000000000200", 1000, KEY)
    assert cavv != cavv_for(PAN, 1000, b"x" * 32)
    assert cavv_for(PAN, 1000) == cavv_for(PAN, 1000)  # the simulators' shared test key


def test_verify_cavv() -> None:
    cavv = cavv_for(PAN, 1000, KEY)
    assert verify_cavv(cavv, PAN, "000000001000", KEY)
    assert not verify_cavv(cavv, PAN, "000000002000", KEY)
    assert not verify_cavv(cavv[:-2] + "AA", PAN, 1000, KEY)
    assert not verify_cavv(cavv, PAN, "12x", KEY)
    assert not verify_cavv("é" * 28, PAN, 1000, KEY)


def test_checks_plug_into_the_decision_hooks() -> None:
    hooks = checks(ZPK, acs_key=KEY)
    assert isinstance(hooks, Checks)
    assert hooks.pin_ok is not None and hooks.cavv_ok is not None
    request = {"2": PAN, "4": "000000001000", "52": encode_pin_block("1234", PAN, ZPK)}
    assert hooks.pin_ok(request, CARD)
    assert not hooks.pin_ok({**request, "52": encode_pin_block("9999", PAN, ZPK)}, CARD)
    assert hooks.cavv_ok(request, CARD, {"cavv": cavv_for(PAN, 1000, KEY)})
    assert not hooks.cavv_ok(request, CARD, {"eci": "05"})
    assert checks(None).pin_ok is None
