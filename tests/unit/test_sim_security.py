"""Issuer simulator checks: PIN by Visa PVV under the issuer ZPK, CAVV shared with the ACS."""

from __future__ import annotations

import warnings
from pathlib import Path

import psec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.cardbook import Card
from simulators.decisions import Checks
from simulators.security import (
    CAVV_LENGTH,
    accept_key,
    cavv_for,
    checks,
    open_keys,
    verify_cavv,
    verify_pin,
    visa_pvv,
)
from switch.config import SecurityConfig, SimulatorConfig
from switch.errors import SecurityError
from switch.keys import KeyStore
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
    hooks = checks(lambda: ZPK, acs_key=KEY)
    assert isinstance(hooks, Checks)
    assert hooks.pin_ok is not None and hooks.cavv_ok is not None
    request = {"2": PAN, "4": "000000001000", "52": encode_pin_block("1234", PAN, ZPK)}
    assert hooks.pin_ok(request, CARD)
    assert not hooks.pin_ok({**request, "52": encode_pin_block("9999", PAN, ZPK)}, CARD)
    assert hooks.cavv_ok(request, CARD, {"cavv": cavv_for(PAN, 1000, KEY)})
    assert not hooks.cavv_ok(request, CARD, {"eci": "05"})
    assert checks(None).pin_ok is None


def test_checks_take_the_pin_keys_at_the_time_of_the_check() -> None:
    current: list[bytes] = [ZPK]
    hooks = checks(lambda: current)
    assert hooks.pin_ok is not None
    request = {"2": PAN, "52": encode_pin_block("1234", PAN, ZPK)}
    assert hooks.pin_ok(request, CARD)
    current[:] = [bytes(16)]  # the key changed (key exchange): the old block no longer opens
    assert not hooks.pin_ok(request, CARD)
    current[:] = [bytes(16), ZPK]  # ...unless the old key is still in its grace time
    assert hooks.pin_ok(request, CARD)
    assert not checks(lambda: []).pin_ok(request, CARD)  # type: ignore[misc]


@pytest.fixture
def stores(tmp_path: Path) -> tuple[KeyStore, KeyStore, bytes]:
    master = bytes(range(32))
    switch_side = KeyStore.create(tmp_path / "keys.json", master)
    issuer_side = KeyStore.create(tmp_path / "sim-keys.json", master)
    kek = switch_side.generate("kek", "KEK")
    issuer_side.import_key("kek", "KEK", switch_side.get("kek").hex(), kek.kcv)
    switch_side.generate("zpk", "ZPK")
    issuer_side.import_key("zpk", "ZPK", switch_side.get("zpk").hex())
    return switch_side, issuer_side, master


def _sim(tmp_path: Path, **keys: str) -> SimulatorConfig:
    return SimulatorConfig(name="visa", spec="visa", keystore=tmp_path / "sim-keys.json", **keys)


def test_accept_key_takes_the_new_zpk_and_answers_its_kcv(
    tmp_path: Path, stores: tuple[KeyStore, KeyStore, bytes]
) -> None:
    switch_side, issuer_side, _ = stores
    new = switch_side.rotate("zpk")
    request = {"t": "0800", "70": "161", "120": switch_side.export_tr31("zpk", "kek")}
    decision, extra = accept_key(request, issuer_side, _sim(tmp_path, pin_key="zpk", kek_key="kek"))
    assert decision.response_code == "00"
    assert extra == {"120": new.kcv}
    assert issuer_side.get("zpk") == switch_side.get("zpk")
    assert len(issuer_side.candidates("zpk")) == 2  # the old one in its grace time


def test_accept_key_refuses_a_block_that_does_not_open_and_keeps_the_key(
    tmp_path: Path, stores: tuple[KeyStore, KeyStore, bytes]
) -> None:
    _, issuer_side, _ = stores
    before = issuer_side.entry("zpk")
    other = KeyStore.create(tmp_path / "other.json", bytes(range(32)))
    other.generate("kek", "KEK")
    other.generate("zpk", "ZPK")
    request = {"t": "0800", "70": "161", "120": other.export_tr31("zpk", "kek")}
    decision, extra = accept_key(request, issuer_side, _sim(tmp_path, pin_key="zpk", kek_key="kek"))
    assert (decision.response_code, extra) == ("63", {})
    assert issuer_side.entry("zpk") == before
    garbage = accept_key(
        {**request, "120": "B0096"}, issuer_side, _sim(tmp_path, pin_key="zpk", kek_key="kek")
    )
    assert garbage[0].response_code == "63"


def test_accept_key_without_keys_configured_is_12(tmp_path: Path) -> None:
    decision, extra = accept_key({"t": "0800", "70": "161", "120": "x"}, None, _sim(tmp_path))
    assert (decision.response_code, extra) == ("12", {})


def test_open_keys_only_when_named_and_names_missing_keys(
    tmp_path: Path, stores: tuple[KeyStore, KeyStore, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, master = stores
    monkeypatch.setenv("SWITCH_MASTER_KEY", master.hex())
    security = SecurityConfig()
    assert open_keys(_sim(tmp_path), security) is None
    store = open_keys(_sim(tmp_path, pin_key="zpk", kek_key="kek"), security)
    assert store is not None and "zpk" in store
    with pytest.raises(SecurityError, match="no key named nope"):
        open_keys(_sim(tmp_path, mac_key="nope"), security)


def test_a_missing_simulator_store_names_the_command_that_creates_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCH_MASTER_KEY", "ab" * 32)
    with pytest.raises(SecurityError, match="create one with `switch keys --simulator visa init`"):
        open_keys(_sim(tmp_path, pin_key="zpk"), SecurityConfig())


def test_the_demos_cavv_is_the_one_the_simulators_acs_issues() -> None:
    from switch.demo import SAMPLE, THREE_DS_CARD, THREE_DS_CAVV

    assert cavv_for(THREE_DS_CARD, 2500) == THREE_DS_CAVV
    assert any(c.cavv == THREE_DS_CAVV and c.amount == 2500 for c in SAMPLE)
