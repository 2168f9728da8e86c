from __future__ import annotations

import pytest

from switch.matching import InFlight, StanAllocator, match_key


def test_answer_matches_request_by_class_and_stan() -> None:
    table: InFlight[str] = InFlight()
    table.add("0100", "000001", "auth")
    table.add("0400", "000001", "reversal")
    assert table.answer("0410", "000001", now=0).item == "reversal"
    assert table.answer("0110", "000001", now=0).item == "auth"
    assert len(table) == 0


def test_same_stan_in_flight_twice_is_refused() -> None:
    table: InFlight[str] = InFlight()
    table.add("0100", "000007", "a")
    with pytest.raises(KeyError):
        table.add("0100", "000007", "b")


def test_answer_after_give_up_is_late_within_window_then_unmatched() -> None:
    table: InFlight[str] = InFlight(late_window=10)
    key = table.add("0100", "000002", "auth")
    assert table.give_up(key, now=5) == "auth"
    match = table.answer("0110", "000002", now=6)
    assert (match.kind, match.item) == ("late", "auth")
    table.add("0100", "000003", "x")
    table.give_up(match_key("0100", "000003"), now=6)
    assert table.answer("0110", "000003", now=17).kind == "unmatched"


def test_unknown_answer_is_unmatched() -> None:
    assert InFlight[str]().answer("0110", "123456", now=0).kind == "unmatched"


def test_a_request_mti_from_the_issuer_never_answers_a_waiting_request() -> None:
    # An issuer that echoes our 0100 back, or sends its own 0800 with the STAN of
    # our sign-on, has not answered it: only a response MTI (0110, 0810) does.
    table: InFlight[str] = InFlight()
    table.add("0100", "000004", "auth")
    table.add("0800", "000005", "sign-on")
    assert table.answer("0100", "000004", now=0).kind == "unmatched"
    assert table.answer("0800", "000005", now=0).kind == "unmatched"
    assert table.answer("0110", "000004", now=0).item == "auth"
    assert table.answer("0810", "000005", now=0).item == "sign-on"


def test_stan_allocator_wraps_and_skips_busy_stans() -> None:
    table: InFlight[str] = InFlight()
    alloc = StanAllocator(start=999_999)
    assert alloc.allocate(table) == "999999"
    table.add("0100", "000001", "busy")
    assert alloc.allocate(table) == "000002"


def test_drain_returns_every_live_request() -> None:
    table: InFlight[str] = InFlight()
    table.add("0100", "000001", "a")
    table.add("0200", "000002", "b")
    assert sorted(table.drain()) == ["a", "b"]
    assert len(table) == 0
