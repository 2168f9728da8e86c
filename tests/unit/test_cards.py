"""Card utilities: Luhn, scheme by BIN, masking, keyed tokens, expiry."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.cards import (
    SCHEMES,
    expired,
    luhn_check_digit,
    luhn_valid,
    mask_pan,
    mask_text,
    pan_token,
    scheme,
)

_digits = st.text(st.sampled_from("0123456789"), min_size=11, max_size=18)


# -- Luhn ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pan", ["4111111111111111", "5555555555554444", "9112000000000014", "4012888888881881"]
)
def test_known_test_cards_pass_luhn(pan: str) -> None:
    assert luhn_valid(pan)


@pytest.mark.parametrize(
    "pan",
    [
        "4111111111111112",
        "",
        "41111",
        "41111111111111111111",
        "411111111111111x",
        "41111111111111²",
    ],
)
def test_wrong_check_digit_length_or_characters_fail_luhn(pan: str) -> None:
    assert not luhn_valid(pan)


def test_check_digit_of_the_textbook_example() -> None:
    assert luhn_check_digit("7992739871") == "3"


@given(_digits)
def test_appending_the_check_digit_always_passes_luhn(body: str) -> None:
    assert luhn_valid(body + luhn_check_digit(body))


@given(_digits, st.integers(min_value=0, max_value=18), st.integers(min_value=1, max_value=9))
def test_changing_any_one_digit_breaks_luhn(body: str, where: int, delta: int) -> None:
    pan = body + luhn_check_digit(body)
    i = where % len(pan)
    changed = pan[:i] + str((int(pan[i]) + delta) % 10) + pan[i + 1 :]
    assert not luhn_valid(changed)


def test_check_digit_refuses_non_digits() -> None:
    with pytest.raises(ValueError):
        luhn_check_digit("4111²")


# -- scheme ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pan", "expected"),
    [
        ("4111111111111111", "visa"),
        ("5105105105105100", "mastercard"),
        ("5555555555554444", "mastercard"),
        ("2221000000000009", "mastercard"),
        ("2720999999999996", "mastercard"),
        ("2220999999999999", "unknown"),
        ("2721000000000000", "unknown"),
        ("5018000000000009", "maestro"),
        ("5600000000000000", "maestro"),
        ("6999999999999999", "maestro"),
        ("9112000000000014", "belkart"),
        ("9111000000000000", "unknown"),
        ("3400000000000009", "unknown"),
        ("", "unknown"),
        ("²²22", "unknown"),
    ],
)
def test_scheme_from_bin(pan: str, expected: str) -> None:
    assert scheme(pan) == expected


@given(st.text(max_size=25))
def test_scheme_detection_is_total(pan: str) -> None:
    assert scheme(pan) in SCHEMES


@given(_digits)
def test_every_pan_starting_with_4_is_visa(rest: str) -> None:
    assert scheme("4" + rest) == "visa"


# -- masking ---------------------------------------------------------------------


def test_mask_shows_first_six_and_last_four() -> None:
    assert mask_pan("4111111111111111") == "411111******1111"


def test_short_values_are_masked_whole() -> None:
    assert mask_pan("411111111111") == "************"


@given(st.text(max_size=40))
def test_masking_never_shows_more_than_six_plus_four(pan: str) -> None:
    masked = mask_pan(pan)
    assert len(masked) == len(pan)
    shown = [i for i, ch in enumerate(masked) if ch != "*"]
    assert len(shown) <= 10
    assert all(masked[i] == pan[i] for i in shown)
    assert all(i < 6 or i >= len(pan) - 4 for i in shown)


@given(st.lists(st.one_of(_digits.map(lambda d: d + "12"), st.text(max_size=8)), max_size=6))
def test_masked_text_never_shows_more_than_six_plus_four_of_a_digit_run(parts: list[str]) -> None:
    masked = mask_text(" ".join(parts))
    for run in re.findall(r"[0-9*]{13,}", masked):
        assert len(run.strip("*").replace("*", "")) <= 10


def test_mask_text_masks_every_pan_in_a_log_line() -> None:
    line = "auth 4111111111111111 and 5555555555554444/00 stan 000123"
    assert mask_text(line) == "auth 411111******1111 and 555555******4444/00 stan 000123"


def test_mask_text_masks_a_pan_glued_to_other_digits() -> None:
    assert mask_text("x41111111111111112812x") == "x411111**********2812x"


# -- token and expiry ------------------------------------------------------------


def test_pan_token_is_keyed_and_stable() -> None:
    first = pan_token("4111111111111111", b"k" * 32)
    assert first == pan_token("4111111111111111", b"k" * 32)
    assert first != pan_token("4111111111111111", b"j" * 32)
    assert first != pan_token("4111111111111112", b"k" * 32)
    assert re.fullmatch(r"[0-9a-f]{32}", first)


@pytest.mark.parametrize(
    ("yymm", "is_expired"),
    [("2611", False), ("2610", True), ("2612", False), ("2701", False), ("2512", True)],
)
def test_expiry_is_checked_against_the_given_date(yymm: str, is_expired: bool) -> None:
    assert expired(yymm, dt.date(2026, 11, 23)) is is_expired


@pytest.mark.parametrize("yymm", ["", "261", "2613", "2600", "26AB", "26²1"])
def test_unreadable_expiry_counts_as_expired(yymm: str) -> None:
    assert expired(yymm, dt.date(2026, 11, 23))
