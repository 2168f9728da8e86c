"""Fault triggers and what they add up to, pure."""

from __future__ import annotations

import pytest

import specs
from simulators import faults
from switch import codec
from switch.config import FaultRule
from switch.errors import CodecError

REQ = {"t": "0100", "2": "4111111111111111", "4": "000000001000", "11": "000001"}


def never() -> float:
    return 0.99


def always() -> float:
    return 0.0


def test_a_rule_without_triggers_hits_every_request() -> None:
    assert faults.matches(FaultRule(kind="close"), REQ, never)


@pytest.mark.parametrize(
    ("rule", "hit"),
    [
        (FaultRule(kind="close", pan="4111111111111111"), True),
        (FaultRule(kind="close", pan="5555555555554444"), False),
        (FaultRule(kind="close", amount="1000"), True),
        (FaultRule(kind="close", amount="000000001000"), True),
        (FaultRule(kind="close", amount="999"), False),
        (FaultRule(kind="close", pan="4111111111111111", amount="999"), False),
    ],
)
def test_pan_and_amount_triggers_combine_with_and(rule: FaultRule, hit: bool) -> None:
    assert faults.matches(rule, REQ, never) is hit


def test_fraction_trigger_uses_the_callers_draw() -> None:
    rule = FaultRule(kind="no_answer", fraction=0.5)
    assert faults.matches(rule, REQ, always)
    assert not faults.matches(rule, REQ, never)


def test_plan_adds_delays_and_collects_effects() -> None:
    rules = [
        FaultRule(kind="latency", seconds=1.0, jitter=2.0),
        FaultRule(kind="late"),
        FaultRule(kind="duplicate"),
        FaultRule(kind="garble"),
        FaultRule(kind="close", pan="5555555555554444"),
    ]
    plan = faults.plan(rules, REQ, lambda: 0.5)
    assert plan.delay == pytest.approx(1.0 + 1.0 + faults.LATE_DEFAULT)
    assert (plan.copies, plan.garble, plan.close, plan.answer) == (2, True, False, True)
    assert plan.kinds == ("latency", "late", "duplicate", "garble")


def test_no_answer_plan() -> None:
    plan = faults.plan([FaultRule(kind="no_answer")], REQ, never)
    assert not plan.answer and plan.faulty


def test_network_management_is_never_faulted() -> None:
    echo = {"t": "0800", "11": "000001", "70": "301"}
    assert not faults.plan([FaultRule(kind="no_answer")], echo, always).faulty


@pytest.mark.parametrize("name", ["visa", "mastercard", "belkart"])
def test_garble_keeps_the_length_and_breaks_the_decode(name: str) -> None:
    spec = specs.load(name)
    answer = {"t": "0110", "11": "000001", "39": "00", "41": "TERM0001"}
    raw = codec.encode(answer, spec)
    bad = faults.garble(raw)
    assert len(bad) == len(raw) and bad != raw
    with pytest.raises(CodecError):
        codec.decode(bad, spec)
