"""What an issuer answers: the decision rules, pure (no trio, no sqlite, no clock).

The shell (:mod:`simulators.issuer`) reads the card's state from the ledger,
calls :func:`decide` (or :func:`decide_reversal`) and writes the ledger row and
the balance change in one SQL transaction, so every rule lives here.

Authorizations and financial requests (0100/0101/0200/0201), in this order --
the first rule that fails gives the response code (field 39):

    1. format error                        30  (F2, F4, F11 missing or not digits)
    2. card not in the book                14
    3. card lost / stolen / blocked        41 / 43 / 62
    4. card expired (the book's expiry,
       whatever F14 says)                  54
    5. PIN wrong (hook ``checks.pin_ok``)  55
    6. CVV2 present and not the book's     N7 on Visa, 05 on other networks
    7. 3-D Secure CAVV wrong (hook
       ``checks.cavv_ok``)                 05
    8. e-commerce on a card with online
       payments banned                     57
    9. amount over the per-transaction
       limit                               61
   10. amount over what is left of the
       daily limit                         61
   11. amount over the balance             51
   12. approved                            00, F38 = 6-character auth code

A refund (processing code 20xxxx) credits the card: rules 1-5 apply, the
funds and limit rules do not (money flows to the cardholder).

Reversals (0400/0401/0420/0421), :func:`decide_reversal`:
- the original is unknown                  25 on every network. Visa, MasterCard
  and BELKART all define 25 "unable to locate original transaction"; we do not
  answer 00 to an unknown original because the acquirer must learn that
  nothing was released (a reconciliation break, not a silent success);
- the original was declined                00, nothing to release;
- the original is already reversed         00, nothing released again (repeats
  0401/0421 and duplicate 0400s are idempotent);
- F95 (replacement amounts; first 12 digits = the amount actually spent)
  makes a partial reversal: release original - replacement; a replacement
  above the original amount is 13 (invalid amount);
- otherwise                                00, release the original amount (a
  reversed refund takes the credit back).

Network management (0800/0801): F70 001 sign-on, 002 sign-off, 301 echo
→ 0810 with 00; another F70 → 12.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from simulators.cardbook import STATUSES, Card
from switch.cards import expired
from switch.messages import (
    APPROVED,
    F_ACQUIRER_ID,
    F_AMOUNT,
    F_AUTH_CODE,
    F_CURRENCY,
    F_MERCHANT,
    F_NETWORK_MGMT,
    F_PAN,
    F_PROCESSING_CODE,
    F_REPLACEMENT_AMOUNTS,
    F_RESPONSE_CODE,
    F_RRN,
    F_STAN,
    F_TERMINAL,
    F_TRANSMISSION_TIME,
    is_ecommerce,
    is_refund,
    response_mti,
)

__all__ = [
    "ANSWER_FIELDS",
    "NETWORK_MGMT_CODES",
    "CardState",
    "Checks",
    "Decision",
    "Original",
    "answer_for",
    "decide",
    "decide_network_management",
    "decide_reversal",
    "format_error",
]

# Echoed from the request into every answer (never F2: the answer needs no PAN).
ANSWER_FIELDS = (
    F_PROCESSING_CODE,
    F_AMOUNT,
    F_TRANSMISSION_TIME,
    F_STAN,
    F_ACQUIRER_ID,
    F_RRN,
    F_TERMINAL,
    F_MERCHANT,
    F_CURRENCY,
)
NETWORK_MGMT_CODES = {"001": "sign-on", "002": "sign-off", "301": "echo"}
_AUTH_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


@dataclass(frozen=True, slots=True, kw_only=True)
class CardState:
    """What the ledger knows of a card when a request arrives (minor units)."""

    balance: int
    spent_today: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Original:
    """The ledger's record of the transaction a reversal reverses."""

    row_id: int
    response_code: str
    amount: int
    balance_change: int
    reversed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    response_code: str
    reason: str
    auth_code: str | None = None
    balance_change: int = 0  # + credit, - debit, minor units

    @property
    def approved(self) -> bool:
        return self.response_code == APPROVED


PinCheck = Callable[[Mapping[str, str], Card], bool]
CavvCheck = Callable[[Mapping[str, str], Card, Mapping[str, str]], bool]


@dataclass(frozen=True, slots=True, kw_only=True)
class Checks:
    """Verification hooks (simulators.security): None = not checked.

    ``pin_ok(request, card)`` is asked only when the request carries F52;
    ``cavv_ok(request, card, ecommerce)`` only for e-commerce on an enrolled card.
    """

    pin_ok: PinCheck | None = None
    cavv_ok: CavvCheck | None = None


def format_error(reason: str) -> Decision:
    return Decision(response_code="30", reason=reason)


def _digits(value: str | None, length: int | None = None) -> bool:
    if not value or not value.isascii() or not value.isdigit():
        return False
    return length is None or len(value) == length


def decide(
    request: Mapping[str, str],
    card: Card | None,
    state: CardState,
    *,
    now: dt.datetime,
    network: str,
    ecommerce: Mapping[str, str] | None = None,
    checks: Checks | None = None,
) -> Decision:
    """The answer to an authorization or financial request (order in the module doc)."""
    eco = ecommerce or {}
    checks = checks or Checks()
    for key, length in ((F_PAN, None), (F_AMOUNT, 12), (F_STAN, 6)):
        if not _digits(request.get(key), length):
            return format_error(f"field {key} missing or malformed")
    if F_PROCESSING_CODE in request and not _digits(request[F_PROCESSING_CODE], 6):
        return format_error("field 3 malformed")
    if card is None:
        return Decision(response_code="14", reason="card not in the card book")
    status_code = STATUSES.get(card.status)
    if status_code:
        return Decision(response_code=status_code, reason=f"card {card.status}")
    if expired(card.expiry, now.date()):
        return Decision(response_code="54", reason="card expired")
    if checks.pin_ok is not None and request.get("52") and not checks.pin_ok(request, card):
        return Decision(response_code="55", reason="PIN wrong")
    amount = int(request[F_AMOUNT])
    if is_refund(request):
        return _approve(request, now, amount, "refund credited")
    if eco.get("cvv2") and card.cvv2 and eco["cvv2"] != card.cvv2:
        code = "N7" if network == "visa" else "05"
        return Decision(response_code=code, reason="CVV2 mismatch")
    online = is_ecommerce(request)
    if (
        online
        and card.three_ds_enrolled
        and checks.cavv_ok is not None
        and not checks.cavv_ok(request, card, eco)
    ):
        return Decision(response_code="05", reason="3-D Secure CAVV failed")
    if online and card.online_banned:
        return Decision(response_code="57", reason="online payments banned on this card")
    if card.per_transaction_limit and amount > card.per_transaction_limit:
        return Decision(response_code="61", reason="over the per-transaction limit")
    if card.daily_limit and state.spent_today + amount > card.daily_limit:
        return Decision(response_code="61", reason="over the daily limit")
    if amount > state.balance:
        return Decision(response_code="51", reason="insufficient funds")
    return _approve(request, now, -amount, "approved")


def _approve(request: Mapping[str, str], now: dt.datetime, change: int, reason: str) -> Decision:
    return Decision(
        response_code=APPROVED,
        reason=reason,
        auth_code=_auth_code(request, now),
        balance_change=change,
    )


def _auth_code(request: Mapping[str, str], now: dt.datetime) -> str:
    """Six characters, derived from the request and time (no randomness in the core)."""
    seed = "|".join((request.get(F_STAN, ""), request.get(F_RRN, ""), request.get(F_TERMINAL, "")))
    digest = hashlib.sha256(f"{seed}|{now.isoformat()}".encode()).digest()
    return "".join(_AUTH_ALPHABET[b % len(_AUTH_ALPHABET)] for b in digest[:6])


def decide_reversal(request: Mapping[str, str], original: Original | None) -> Decision:
    """The answer to a reversal (rules in the module doc); + balance_change releases."""
    if original is None:
        return Decision(response_code="25", reason="original not found")
    if original.response_code != APPROVED or not original.balance_change:
        return Decision(response_code=APPROVED, reason="original not approved: nothing to release")
    if original.reversed:
        return Decision(response_code=APPROVED, reason="already reversed: nothing released again")
    replacement = request.get(F_REPLACEMENT_AMOUNTS, "")[:12]
    spent = int(replacement) if _digits(replacement, 12) and int(replacement) else 0
    if spent > original.amount:
        return Decision(response_code="13", reason="replacement amount above the original")
    # A debit (balance_change < 0) is released by a credit and a refund by a debit.
    sign = 1 if original.balance_change < 0 else -1
    release = sign * (original.amount - spent)
    reason = "partial reversal" if spent else "reversed"
    return Decision(response_code=APPROVED, reason=reason, balance_change=release)


def decide_network_management(request: Mapping[str, str]) -> Decision:
    code = request.get(F_NETWORK_MGMT, "")
    if code in NETWORK_MGMT_CODES:
        return Decision(response_code=APPROVED, reason=NETWORK_MGMT_CODES[code])
    return Decision(response_code="12", reason=f"network management code {code!r} unknown")


def answer_for(request: Mapping[str, str], decision: Decision) -> dict[str, str]:
    """The answer message: response MTI, the echoed fields, F38 when approved, F39."""
    out = {"t": response_mti(request["t"])}
    echo = (
        (F_TRANSMISSION_TIME, F_STAN, F_NETWORK_MGMT) if request["t"][:2] == "08" else ANSWER_FIELDS
    )
    for key in echo:
        if request.get(key):
            out[key] = request[key]
    if decision.approved and decision.auth_code:
        out[F_AUTH_CODE] = decision.auth_code
    out[F_RESPONSE_CODE] = decision.response_code
    return out
