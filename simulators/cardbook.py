"""The issuer simulators' card book: the test cards and what each one does.

``cardbook.toml`` beside this module is the shipped book; a simulator's
``cardbook`` config key names another. The file is the one place a clear PAN
sits on disk: the ledger and settlement files hold only the PAN token and the
masked PAN. A :class:`Card`'s ``repr`` shows the masked PAN only, never the
PAN, CVV2 or PIN, so a card can be logged safely.

Amounts are integers in minor units; a limit of 0 means "no limit".
Invariants checked on load (errors name the file, the card and the key):
every PAN passes Luhn and appears once; expiry is YYMM; status is one of
:data:`STATUSES`; the network is one of :data:`NETWORKS`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from switch.cards import luhn_valid, mask_pan
from switch.errors import ConfigError

__all__ = ["DEFAULT_CARDBOOK", "NETWORKS", "STATUSES", "Card", "CardBook", "load"]

DEFAULT_CARDBOOK = Path(__file__).resolve().parent / "cardbook.toml"
NETWORKS = ("visa", "mastercard", "belkart")
# Card status -> the response code it is declined with (ISO 8583:1987 field 39).
STATUSES: Mapping[str, str | None] = {
    "active": None,
    "lost": "41",
    "stolen": "43",
    "blocked": "62",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Card:
    pan: str = field(repr=False)
    network: str
    expiry: str
    cvv2: str | None = field(default=None, repr=False)
    status: str = "active"
    balance: int = 0
    currency: str = "933"
    per_transaction_limit: int = 0
    daily_limit: int = 0
    online_banned: bool = False
    three_ds_enrolled: bool = False
    pin: str | None = field(default=None, repr=False)
    answer_delay: float = 0.0
    never_answers: bool = False
    note: str = ""

    @property
    def masked(self) -> str:
        return mask_pan(self.pan)

    def __repr__(self) -> str:
        return f"Card({self.masked}, {self.network}, {self.status})"


@dataclass(frozen=True, slots=True)
class CardBook:
    """The cards, by PAN. ``network(name)`` is the part one simulator holds."""

    cards: Mapping[str, Card]
    source: Path | None = None

    def get(self, pan: str) -> Card | None:
        return self.cards.get(pan)

    def __iter__(self) -> Iterator[Card]:
        return iter(self.cards.values())

    def __len__(self) -> int:
        return len(self.cards)

    def network(self, name: str) -> CardBook:
        return CardBook({p: c for p, c in self.cards.items() if c.network == name}, self.source)


_TYPES: Mapping[str, type | tuple[type, ...]] = {
    "pan": str,
    "network": str,
    "expiry": str,
    "cvv2": str,
    "status": str,
    "balance": int,
    "currency": str,
    "per_transaction_limit": int,
    "daily_limit": int,
    "online_banned": bool,
    "three_ds_enrolled": bool,
    "pin": str,
    "answer_delay": (int, float),
    "never_answers": bool,
    "note": str,
}


def load(path: Path | None = None) -> CardBook:
    """Read a card book (the shipped one by default); ConfigError naming the problem."""
    path = path or DEFAULT_CARDBOOK
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"card book {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"card book {path}: not valid TOML: {exc}") from None
    defaults = raw.get("defaults", {})
    cards: dict[str, Card] = {}
    for i, entry in enumerate(raw.get("cards", [])):
        card = _card({**defaults, **entry}, f"{path.name}: cards[{i}]")
        if card.pan in cards:
            raise ConfigError(f"{path.name}: cards[{i}]: {card.masked} appears twice")
        cards[card.pan] = card
    unknown = sorted(set(raw) - {"defaults", "cards"})
    if unknown:
        raise ConfigError(f"{path.name}: {unknown[0]}: unknown key")
    return CardBook(cards, path)


def _card(values: Mapping[str, Any], where: str) -> Card:
    for key, value in values.items():
        expected = _TYPES.get(key)
        if expected is None:
            raise ConfigError(f"{where}.{key}: unknown key")
        if isinstance(value, bool) is not (expected is bool) or not isinstance(value, expected):
            raise ConfigError(f"{where}.{key}: wrong type {type(value).__name__}")
    pan = values.get("pan", "")
    if not luhn_valid(pan):
        raise ConfigError(f"{where}.pan: not a Luhn-valid card number")
    expiry = values.get("expiry", "")
    if len(expiry) != 4 or not expiry.isdigit() or not 1 <= int(expiry[2:]) <= 12:
        raise ConfigError(f"{where}.expiry: expected YYMM, got {expiry!r}")
    if values.get("status", "active") not in STATUSES:
        raise ConfigError(f"{where}.status: expected one of {', '.join(STATUSES)}")
    if values.get("network") not in NETWORKS:
        raise ConfigError(f"{where}.network: expected one of {', '.join(NETWORKS)}")
    return Card(**{**values, "answer_delay": float(values.get("answer_delay", 0.0))})
