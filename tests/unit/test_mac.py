"""Retail MAC (ISO 9797-1 algorithm 3, padding 1) and the F64/F128 message helpers."""

from __future__ import annotations

import warnings

import psec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import specs
from switch import codec
from switch.errors import SecurityError
from switch.mac import check, generate_mac, mac_field, sign, verify_mac

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
OTHER = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
REQUEST = {
    "t": "0200",
    "2": "4111111111111111",
    "3": "000000",
    "4": "000000001000",
    "7": "0301120000",
    "11": "000123",
    "41": "TERM0001",
    "49": "933",
}


@pytest.mark.parametrize(
    ("data", "mac"),
    [
        # ISO/IEC 9797-1:2011 Annex B.4, MAC algorithm 3, padding method 1 (first 4 bytes).
        (b"Now is the time for all ", "A1C72E74"),
        (b"Now is the time for it", "2E2B1428"),
    ],
)
def test_iso_9797_1_annex_b_examples(data: bytes, mac: str) -> None:
    assert generate_mac(data, KEY).hex().upper().startswith(mac)


def test_bouncy_castle_iso9797alg3_example() -> None:
    key = bytes.fromhex("7CA110454A1A6E570131D9619DC1376E")
    assert generate_mac(b"Hello World !!!!", key).hex().upper() == "F09B856213BAB83B"


@given(st.binary(max_size=200))
def test_same_as_psecs_retail_mac(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # psec's TDES path is deprecated in cryptography
        expected = psec.mac.generate_retail_mac(KEY[:8], KEY[8:], data, padding=1)
    assert generate_mac(data, KEY) == expected


@given(st.binary(min_size=1, max_size=100), st.data())
def test_changing_any_byte_changes_the_mac(data: bytes, draw: st.DataObject) -> None:
    index = draw.draw(st.integers(0, len(data) - 1))
    flip = draw.draw(st.integers(1, 255))
    changed = data[:index] + bytes([data[index] ^ flip]) + data[index + 1 :]
    mac = generate_mac(data, KEY)
    assert verify_mac(data, mac, KEY)
    assert not verify_mac(changed, mac, KEY)


def test_verify_accepts_any_of_several_keys_and_refuses_other_keys() -> None:
    mac = generate_mac(b"data", OTHER)
    assert verify_mac(b"data", mac, [KEY, OTHER])
    assert not verify_mac(b"data", mac, KEY)
    with pytest.raises(SecurityError, match="of 16 bytes"):
        generate_mac(b"data", KEY + KEY[:8])


def test_mac_field_is_128_with_a_secondary_bitmap() -> None:
    assert mac_field(REQUEST) == "64"
    assert mac_field({**REQUEST, "90": "0" * 42}) == "128"
    assert mac_field({**REQUEST, "64": "0" * 16}) == "64"


@pytest.mark.parametrize("spec_name", ["iso87ascii", "visa", "mastercard", "belkart"])
@pytest.mark.parametrize("extra", [{}, {"102": "12345"}])
def test_sign_then_check_over_the_codec(spec_name: str, extra: dict[str, str]) -> None:
    spec = specs.load(spec_name)
    message = {**REQUEST, **extra}
    frame = sign(message, spec, KEY)
    decoded = codec.decode(frame, spec)
    field = "128" if extra else "64"
    assert field in decoded and "64" not in message
    # The MAC covers the encoded message minus the MAC field's own bytes.
    width = 8 if spec.pyiso[field]["data_enc"] == "b" else 16
    assert generate_mac(frame[:-width], KEY).hex().upper() == decoded[field].upper()
    check(frame, decoded, spec, KEY)
    check(frame, decoded, spec, [OTHER, KEY])


def test_a_changed_field_fails_the_check() -> None:
    spec = specs.load("iso87ascii")
    frame = sign(REQUEST, spec, KEY)
    forged = frame.replace(b"000000001000", b"000000009000")
    with pytest.raises(SecurityError, match="bad MAC") as caught:
        check(forged, codec.decode(forged, spec), spec, KEY)
    assert caught.value.response_code == "63"


def test_a_mac_under_another_key_fails_the_check() -> None:
    spec = specs.load("visa")
    frame = sign(REQUEST, spec, OTHER)
    with pytest.raises(SecurityError, match="bad MAC"):
        check(frame, codec.decode(frame, spec), spec, KEY)


def test_a_missing_mac_fails_the_check() -> None:
    spec = specs.load("iso87ascii")
    frame = codec.encode(REQUEST, spec)
    with pytest.raises(SecurityError, match="no MAC"):
        check(frame, codec.decode(frame, spec), spec, KEY)


def test_trailing_bytes_after_the_mac_fail_the_check() -> None:
    spec = specs.load("visa")
    frame = sign(REQUEST, spec, KEY)
    decoded = codec.decode(frame, spec)
    with pytest.raises(SecurityError, match="last 8 bytes"):
        check(frame + b"\x00", decoded, spec, KEY)


def test_a_mac_that_is_not_hex_fails_the_check() -> None:
    spec = specs.load("iso87ascii")
    frame = codec.encode({**REQUEST, "64": "NOTHEX0123456789"}, spec)
    with pytest.raises(SecurityError, match="not hex"):
        check(frame, codec.decode(frame, spec), spec, KEY)


def test_sign_replaces_an_old_mac_and_leaves_the_message_alone() -> None:
    spec = specs.load("iso87ascii")
    message = {**REQUEST, "64": "F" * 16}
    frame = sign(message, spec, KEY)
    assert message["64"] == "F" * 16
    assert frame == sign(REQUEST, spec, KEY)
