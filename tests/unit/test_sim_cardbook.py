"""The shipped card book: the cards and behaviours operators, docs and tests rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators import cardbook
from switch.cards import luhn_valid
from switch.errors import ConfigError

BOOK = cardbook.load()


@pytest.mark.parametrize(
    ("pan", "network"),
    [
        ("4111111111111111", "visa"),
        ("4000000000000002", "visa"),
        ("4000000000000069", "visa"),
        ("4000000000000127", "visa"),
        ("4000000000000101", "visa"),
        ("4000000000000119", "visa"),
        ("4000000000000036", "visa"),
        ("4000000000000259", "visa"),
        ("4000000000000994", "visa"),
        ("4000000000000200", "visa"),
        ("5555555555554444", "mastercard"),
        ("5105105105105100", "mastercard"),
        ("6759649826438453", "mastercard"),
        ("5200000000000007", "mastercard"),
        ("9112000000000006", "belkart"),
        ("9112000000000014", "belkart"),
        ("9112000000000022", "belkart"),
    ],
)
def test_every_issue_card_is_in_the_book_on_its_network(pan: str, network: str) -> None:
    card = BOOK.get(pan)
    assert card is not None and card.network == network
    assert luhn_valid(pan)
    assert card.currency == "933"


def test_the_behaviour_attributes_of_the_special_cards() -> None:
    def card(pan: str) -> cardbook.Card:
        found = BOOK.get(pan)
        assert found is not None
        return found

    assert card("4111111111111111").balance == 100_000_000  # 1,000,000.00
    assert card("4000000000000002").balance == 0
    assert card("4000000000000069").expiry < "2500"
    assert card("4000000000000127").cvv2 == "123"
    assert card("4000000000000101").online_banned
    assert card("4000000000000119").daily_limit == 10_000  # 100.00
    assert card("4000000000000036").status == "lost"
    assert card("4000000000000259").answer_delay == 12.0
    assert card("4000000000000994").never_answers
    assert card("5105105105105100").balance == 0
    assert card("9112000000000014").balance == 0
    for pan in ("4111111111111111", "5555555555554444", "9112000000000006"):
        assert card(pan).pin == "1234"
    enrolled = {c.network for c in BOOK if c.three_ds_enrolled}
    assert enrolled == {"visa", "mastercard", "belkart"}


def test_a_card_repr_shows_only_the_masked_pan() -> None:
    card = BOOK.get("4111111111111111")
    assert card is not None
    text = repr(card)
    assert "411111******1111" in text
    assert "4111111111111111" not in text and "1234" not in text


def test_network_view_holds_only_that_networks_cards() -> None:
    visa = BOOK.network("visa")
    assert len(visa) == 10
    assert all(c.network == "visa" for c in visa)
    assert visa.get("5555555555554444") is None


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('pan = "4111111111111112"\nnetwork = "visa"', "Luhn"),
        ('pan = "4111111111111111"\nnetwork = "amex"', "network"),
        ('pan = "4111111111111111"\nnetwork = "visa"\nstatus = "gone"', "status"),
        ('pan = "4111111111111111"\nnetwork = "visa"\nexpiry = "3013"', "expiry"),
        ('pan = "4111111111111111"\nnetwork = "visa"\nbalanse = 1', "unknown key"),
        ('pan = "4111111111111111"\nnetwork = "visa"\nbalance = "1"', "wrong type"),
    ],
)
def test_a_bad_card_book_names_the_card_and_key(tmp_path: Path, entry: str, problem: str) -> None:
    path = tmp_path / "book.toml"
    path.write_text(f'[defaults]\nexpiry = "3012"\n\n[[cards]]\n{entry}\n')
    with pytest.raises(ConfigError, match=problem) as info:
        cardbook.load(path)
    assert "cards[0]" in str(info.value)
    assert "4111111111111112" not in str(info.value)


def test_a_card_may_appear_only_once(tmp_path: Path) -> None:
    path = tmp_path / "book.toml"
    card = '[[cards]]\npan = "4111111111111111"\nnetwork = "visa"\nexpiry = "3012"\n'
    path.write_text(card + card)
    with pytest.raises(ConfigError, match=r"411111\*+1111 appears twice"):
        cardbook.load(path)
