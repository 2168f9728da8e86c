"""The issuer's decision rules, pure: one test per rule, in the documented order."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

import pytest

from simulators import acquirer, cardbook
from simulators.decisions import (
    CardState,
    Checks,
    Original,
    answer_for,
    decide,
    decide_network_management,
    decide_reversal,
)

NOW = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)
BOOK = cardbook.load()
RICH = CardState(balance=100_000_000)


def card(pan: str) -> cardbook.Card:
    found = BOOK.get(pan)
    assert found is not None
    return found


def request(pan: str = "4111111111111111", amount: int = 1000, **extra: str) -> dict[str, str]:
    msg = {
        "t": "0100",
        "2": pan,
        "3": "000000",
        "4": f"{amount:012d}",
        "7": "0301100000",
        "11": "000123",
        "37": "506010000001",
        "41": "TERM0001",
        "42": "SHOP00000000001",
        "49": "933",
    }
    msg.update(extra)
    return msg


def code(
    req: Mapping[str, str],
    pan: str | None = None,
    state: CardState = RICH,
    network: str = "visa",
    **kw: object,
) -> str:
    the_card = BOOK.get(pan if pan is not None else req["2"])
    return decide(req, the_card, state, now=NOW, network=network, **kw).response_code  # type: ignore[arg-type]


def test_approval_debits_the_amount_with_a_six_character_auth_code() -> None:
    d = decide(request(), card("4111111111111111"), RICH, now=NOW, network="visa")
    assert d.response_code == "00" and d.balance_change == -1000
    assert d.auth_code is not None and len(d.auth_code) == 6 and d.auth_code.isalnum()


@pytest.mark.parametrize("broken", [{"4": "00000000ABCD"}, {"4": "1000"}, {"11": ""}, {"2": ""}])
def test_format_error_is_30_before_anything_else(broken: dict[str, str]) -> None:
    assert code(request(**broken), pan="4111111111111111") == "30"


def test_unknown_card_is_14() -> None:
    assert code(request("4000000000000010")) == "14"


@pytest.mark.parametrize(
    ("status", "expected"), [("lost", "41"), ("stolen", "43"), ("blocked", "62")]
)
def test_lost_stolen_blocked(status: str, expected: str) -> None:
    c = dataclasses.replace(card("4111111111111111"), status=status, expiry="2001")
    assert decide(request(), c, RICH, now=NOW, network="visa").response_code == expected


def test_expired_card_is_54_whatever_f14_says() -> None:
    assert code(request("4000000000000069", **{"14": "3012"})) == "54"


def test_cvv2_mismatch_is_n7_on_visa_and_05_elsewhere() -> None:
    req = request("4000000000000127")
    assert code(req, ecommerce={"cvv2": "999"}) == "N7"
    assert code(req, ecommerce={"cvv2": "123"}) == "00"
    assert code(req) == "00"  # checked only when present
    mc = request("5555555555554444")
    assert code(mc, network="mastercard", ecommerce={"cvv2": "999"}) == "05"


def test_online_banned_card_declines_ecommerce_with_57_only() -> None:
    assert code(request("4000000000000101", **{"22": "812"})) == "57"
    assert code(request("4000000000000101", **{"22": "051", "25": "59"})) == "57"
    assert code(request("4000000000000101", **{"22": "051"})) == "00"


def test_cvv2_rule_comes_before_online_ban() -> None:
    c = dataclasses.replace(card("4000000000000101"), cvv2="123")
    req = request("4000000000000101", **{"22": "812"})
    d = decide(req, c, RICH, now=NOW, network="visa", ecommerce={"cvv2": "999"})
    assert d.response_code == "N7"


def test_daily_limit_61_once_exceeded() -> None:
    pan = "4000000000000119"
    assert code(request(pan, 6000)) == "00"
    assert code(request(pan, 6000), state=CardState(balance=RICH.balance, spent_today=6000)) == "61"
    assert code(request(pan, 15000)) == "61"


def test_per_transaction_limit_61() -> None:
    c = dataclasses.replace(card("4111111111111111"), per_transaction_limit=500)
    assert decide(request(amount=501), c, RICH, now=NOW, network="visa").response_code == "61"
    assert decide(request(amount=500), c, RICH, now=NOW, network="visa").response_code == "00"


def test_insufficient_funds_51() -> None:
    assert code(request("4000000000000002"), state=CardState(balance=0)) == "51"
    assert code(request(amount=1001), state=CardState(balance=1000)) == "51"
    assert code(request(amount=1000), state=CardState(balance=1000)) == "00"


def test_refund_credits_even_a_card_without_funds() -> None:
    d = decide(
        request("4000000000000002", 700, **{"3": "200000", "t": "0200"}),
        card("4000000000000002"),
        CardState(balance=0),
        now=NOW,
        network="visa",
    )
    assert (d.response_code, d.balance_change) == ("00", 700)


def test_refund_to_a_lost_card_is_still_41() -> None:
    assert code(request("4000000000000036", **{"3": "200000"})) == "41"


def test_pin_and_cavv_hooks_decline_when_they_say_no() -> None:
    no = Checks(pin_ok=lambda req, c: False, cavv_ok=lambda req, c, eco: False)
    assert code(request(**{"52": "00" * 8}), checks=no) == "55"
    assert code(request(), checks=no) == "00"  # no PIN block: not asked
    enrolled = request("4000000000000200", **{"22": "812"})
    assert code(enrolled, checks=no) == "05"
    assert code(enrolled) == "00"  # no hook: not checked


def orig(**kw: object) -> Original:
    values: dict[str, object] = {
        "row_id": 1,
        "response_code": "00",
        "amount": 5000,
        "balance_change": -5000,
    }
    values.update(kw)
    return Original(**values)  # type: ignore[arg-type]


def test_reversal_releases_the_original_amount() -> None:
    d = decide_reversal(request(amount=5000, t="0400"), orig())
    assert (d.response_code, d.balance_change) == ("00", 5000)


def test_reversal_uses_the_stored_amount_not_f4() -> None:
    d = decide_reversal(request(amount=1, t="0400"), orig())
    assert d.balance_change == 5000


def test_reversal_of_unknown_original_is_25() -> None:
    assert decide_reversal(request(t="0400"), None).response_code == "25"


def test_reversal_of_a_declined_or_reversed_original_releases_nothing() -> None:
    for original in (orig(response_code="51", balance_change=0), orig(reversed=True)):
        d = decide_reversal(request(t="0401"), original)
        assert (d.response_code, d.balance_change) == ("00", 0)


def test_partial_reversal_releases_original_minus_replacement() -> None:
    f95 = "000000003000" + "0" * 30
    d = decide_reversal(request(t="0400", **{"95": f95}), orig())
    assert (d.response_code, d.balance_change) == ("00", 2000)
    over = "000000009000" + "0" * 30
    assert decide_reversal(request(t="0400", **{"95": over}), orig()).response_code == "13"


def test_reversal_of_a_refund_takes_the_credit_back() -> None:
    d = decide_reversal(request(t="0400"), orig(balance_change=5000))
    assert d.balance_change == -5000


@pytest.mark.parametrize(
    ("f70", "expected"), [("001", "00"), ("002", "00"), ("301", "00"), ("999", "12")]
)
def test_network_management(f70: str, expected: str) -> None:
    msg = {"t": "0800", "7": "0301100000", "11": "000001", "70": f70}
    d = decide_network_management(msg)
    assert d.response_code == expected
    assert answer_for(msg, d) == {
        "t": "0810",
        "7": "0301100000",
        "11": "000001",
        "70": f70,
        "39": expected,
    }


def test_answer_echoes_the_matching_fields_but_never_the_pan() -> None:
    req = request(**{"32": "400001", "14": "3012", "48": "C2003123"})
    d = decide(req, card("4111111111111111"), RICH, now=NOW, network="visa")
    answer = answer_for(req, d)
    assert answer["t"] == "0110" and answer["39"] == "00" and answer["38"] == d.auth_code
    assert set(answer) == {"t", "3", "4", "7", "11", "32", "37", "38", "39", "41", "42", "49"}
    declined = answer_for(req, dataclasses.replace(d, response_code="51"))
    assert "38" not in declined and "2" not in declined


@pytest.mark.parametrize(
    "scenario",
    [s for s in acquirer.SCENARIOS if s.kind in ("approve", "decline", "refund")],
    ids=lambda s: s.name,
)
def test_the_generators_predictions_agree_with_the_rules(scenario: acquirer.Scenario) -> None:
    """What the acquirer generator expects of each test card is what the issuer decides."""
    opts = dict(scenario.options)
    req = request(scenario.pan, scenario.amount, **{"3": opts.pop("processing_code", "000000")})
    if opts.pop("ecommerce", False):
        req["22"] = "812"
    eco = {"cvv2": opts.pop("cvv2")} if "cvv2" in opts else {}
    the_card = BOOK.get(scenario.pan)
    network = the_card.network if the_card else "visa"
    state = CardState(balance=the_card.balance if the_card else 0)
    d = decide(req, the_card, state, now=NOW, network=network, ecommerce=eco)
    assert d.response_code in scenario.expect
