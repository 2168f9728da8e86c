"""Fault injection, pure: which configured faults hit a request and what they do.

A :class:`~switch.config.FaultRule` fires when all of its triggers match (a
rule with no trigger hits every request):
- ``pan``: F2 equals it;
- ``amount``: F4 equals it as a number (``"1000"`` matches ``"000000001000"``);
- ``fraction``: a draw from the caller's ``random()`` is below it.

What the rules that fire add up to, a :class:`FaultPlan`:

    latency    the answer waits ``seconds`` plus a uniform draw in [0, jitter)
    late       the same wait, meant to outlast the switch's timeout; with no
               ``seconds`` it defaults to :data:`LATE_DEFAULT`
    no_answer  decided and recorded, never answered
    close      decided and recorded, then the connection is closed instead
    garble     the answer's bytes after the MTI are inverted (framing intact)
    duplicate  the answer is sent twice

Faults only change the *answer*: the decision and the ledger row are made
when the request arrives, so a reversal sent during a delay finds its original.
Network management (0800) is never faulted: a link must be able to sign on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from switch.config import FaultRule
from switch.messages import F_AMOUNT, F_PAN

__all__ = ["LATE_DEFAULT", "FaultPlan", "garble", "matches", "plan"]

LATE_DEFAULT = 30.0
_GARBLE_KEEP = 4  # bytes left readable at the front (the MTI in ASCII dialects)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    delay: float = 0.0
    answer: bool = True
    close: bool = False
    garble: bool = False
    copies: int = 1
    kinds: tuple[str, ...] = ()

    @property
    def faulty(self) -> bool:
        return bool(self.kinds)


def matches(rule: FaultRule, request: Mapping[str, str], random: Callable[[], float]) -> bool:
    """True when every trigger of ``rule`` matches (the fraction draw is made last)."""
    if rule.pan is not None and request.get(F_PAN) != rule.pan:
        return False
    if rule.amount is not None:
        amount = request.get(F_AMOUNT, "")
        if not (amount.isdigit() and rule.amount.isdigit() and int(amount) == int(rule.amount)):
            return False
    return rule.fraction is None or random() < rule.fraction


def plan(
    rules: Iterable[FaultRule], request: Mapping[str, str], random: Callable[[], float]
) -> FaultPlan:
    """Combine every rule that fires for ``request`` (delays add up)."""
    if request.get("t", "")[:2] == "08":
        return FaultPlan()
    delay = 0.0
    answer, close, garbled, copies = True, False, False, 1
    kinds: list[str] = []
    for rule in rules:
        if not matches(rule, request, random):
            continue
        kinds.append(rule.kind)
        if rule.kind in ("latency", "late"):
            seconds = rule.seconds or (LATE_DEFAULT if rule.kind == "late" else 0.0)
            delay += seconds + (random() * rule.jitter if rule.jitter else 0.0)
        elif rule.kind == "no_answer":
            answer = False
        elif rule.kind == "close":
            close = True
        elif rule.kind == "garble":
            garbled = True
        elif rule.kind == "duplicate":
            copies = 2
    return FaultPlan(
        delay=delay, answer=answer, close=close, garble=garbled, copies=copies, kinds=tuple(kinds)
    )


def garble(message: bytes) -> bytes:
    """The message with every byte after the first four inverted: undecodable, same length."""
    return message[:_GARBLE_KEEP] + bytes(b ^ 0xFF for b in message[_GARBLE_KEEP:])
