"""Trace parsing, scheduling, matching and golden traces: pure, no sockets."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import specs
from switch import codec
from switch.replay import (
    FieldDiff,
    TraceError,
    compare,
    describe,
    display_value,
    golden_line,
    parse_trace,
    prepare_request,
    schedule,
)

SPEC = specs.load("iso87ascii")
NOW = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=dt.UTC)


def _line(**obj: object) -> str:
    return json.dumps(obj)


REQUEST = {
    "t": "0100",
    "2": "4111111111111111",
    "3": "000000",
    "4": "000000001000",
    "41": "TERM0001",
    "42": "SHOP00000000001",
    "49": "933",
}


def test_trace_lines_keep_their_file_line_numbers_past_comments_and_blanks() -> None:
    text = "# a comment\n\n" + _line(request=REQUEST, expect={"39": "00"}) + "\n"
    [line] = parse_trace(text)
    assert line.number == 3
    assert line.expect == {"39": "00"}


def test_mti_key_is_accepted_as_t() -> None:
    [line] = parse_trace(_line(request={**REQUEST, "mti": "0200"} | {"t": "0200"}))
    assert line.request is not None and line.request["t"] == "0200"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"expect": {}}, "exactly one of request or hex"),
        ({"request": REQUEST, "hex": "00"}, "exactly one of request or hex"),
        ({"request": {"2": "4111111111111111"}}, "no MTI"),
        ({"request": REQUEST, "expect": {"39": "*maybe"}}, "unknown matcher '*maybe'"),
        ({"request": REQUEST, "expect": {"x9": "00"}}, "'x9' is not a field number"),
        ({"request": REQUEST, "expect": {"39": 0}}, "expect.39: expected a string"),
        ({"request": REQUEST, "delay_ms": -1}, "delay_ms must be a number >= 0"),
        ({"request": REQUEST, "delay_ms": float("nan")}, "delay_ms must be a number >= 0"),
        ({"request": REQUEST, "delay_ms": float("inf")}, "delay_ms must be a number >= 0"),
        ({"request": REQUEST, "ts": float("nan")}, "ts must be an ISO time"),
        ({"request": REQUEST, "bogus": 1}, "unknown key(s) bogus"),
        ({"hex": "zz"}, "hex is not hexadecimal"),
        ({"request": {**REQUEST, "90": "*original:1"}}, "must name an earlier line"),
        ({"request": {**REQUEST, "90": "*whatever"}}, "is not *from:N:F or *original:N"),
        ({"request": REQUEST, "ts": "yesterday-ish"}, "ts must be an ISO time"),
    ],
)
def test_malformed_lines_are_refused_naming_the_line(obj: dict[str, object], message: str) -> None:
    with pytest.raises(TraceError, match=r"^line 1: .*" + re.escape(message)):
        parse_trace(json.dumps(obj))


def test_a_pan_written_as_a_json_number_is_refused_without_showing_it() -> None:
    obj = {"request": {**REQUEST, "2": 4111111111111111}, "expect": {"2": 4111111111111111}}
    with pytest.raises(TraceError) as caught:
        parse_trace(json.dumps(obj))
    assert str(caught.value) == "line 1: request.2: expected a string, got a number"
    assert not re.search(r"\d{13}", str(caught.value))


def test_a_line_that_is_not_json_names_its_number() -> None:
    with pytest.raises(TraceError, match="line 2: not JSON"):
        parse_trace(_line(request=REQUEST) + "\n{oops\n")


def test_fast_timing_sends_everything_at_once() -> None:
    lines = parse_trace("\n".join(_line(request=REQUEST, delay_ms=500) for _ in range(3)))
    assert schedule(lines, "fast") == [0.0, 0.0, 0.0]


def test_original_timing_adds_up_delays() -> None:
    lines = parse_trace("\n".join(_line(request=REQUEST, delay_ms=d) for d in (0, 250, 0, 1000)))
    assert schedule(lines, "original") == [0.0, 0.25, 0.25, 1.25]


def test_original_timing_follows_timestamps_and_never_goes_back() -> None:
    lines = parse_trace(
        "\n".join(
            _line(request=REQUEST, ts=ts)
            for ts in ("2024-05-01T10:00:00+00:00", "2024-05-01T10:00:02+00:00", 1714557601.0)
        )
    )
    assert schedule(lines, "original") == [0.0, 2.0, 2.0]


def test_prepare_fills_stan_and_times_but_keeps_what_the_trace_gives() -> None:
    [line] = parse_trace(_line(request={**REQUEST, "11": "000042"}))
    request = prepare_request(line, SPEC, now=NOW, sent={}, stan=lambda: "999999")
    assert request["11"] == "000042"
    assert request["7"] == "0501100000"
    assert (request["12"], request["13"]) == ("100000", "0501")
    [bare] = parse_trace(_line(request=REQUEST))
    assert prepare_request(bare, SPEC, now=NOW, sent={}, stan=lambda: "000007")["11"] == "000007"


def test_original_reference_builds_f90_from_the_earlier_request_as_sent() -> None:
    lines = parse_trace(
        _line(request=REQUEST)
        + "\n"
        + _line(request={**REQUEST, "t": "0400", "90": "*original:1", "37": "*from:1:11"})
    )
    first = prepare_request(lines[0], SPEC, now=NOW, sent={}, stan=lambda: "000123")
    second = prepare_request(lines[1], SPEC, now=NOW, sent={1: first}, stan=lambda: "000124")
    assert second["90"] == "0100" + "000123" + "0501100000" + "0" * 22
    assert second["37"] == "000123"
    assert second["11"] == "000124"


def test_hex_lines_are_decoded_in_the_listener_dialect() -> None:
    raw = codec.encode({**REQUEST, "11": "000321", "7": "0501100000"}, SPEC)
    [line] = parse_trace(_line(hex=raw.hex()))
    request = prepare_request(line, SPEC, now=NOW, sent={})
    assert request["11"] == "000321" and request["2"] == "4111111111111111"


def test_undecodable_hex_is_a_trace_error() -> None:
    [line] = parse_trace(_line(hex="30313030"))
    with pytest.raises(TraceError, match="line 1: hex does not decode"):
        prepare_request(line, SPEC, now=NOW, sent={})


ANSWER = {
    "t": "0110",
    "11": "000042",
    "37": "412310000001",
    "38": "A1B2C3",
    "39": "00",
    "41": "TERM0001",
}


def test_every_matcher_passes_on_a_matching_answer() -> None:
    expect = {"t": "0110", "11": "*echo", "38": "*present", "44": "*absent", "39": "00"}
    assert compare(expect, {"11": "000042"}, ANSWER) == []


def test_each_matcher_reports_its_own_field() -> None:
    expect = {"39": "51", "38": "*absent", "44": "*present", "11": "*echo"}
    diffs = compare(expect, {"11": "000043"}, ANSWER)
    assert [d.field for d in diffs] == ["11", "38", "39", "44"]
    assert diffs[2] == FieldDiff("39", "51", "00", "expected '51'")


def test_a_diff_line_names_the_field_and_the_meaning_of_the_code() -> None:
    [diff] = compare({"39": "00"}, {}, {**ANSWER, "39": "51"})
    text = describe(diff, SPEC)
    assert text.startswith("39 (")
    assert "expected '00', got '51'" in text and "Insufficient funds" in text


def test_a_diff_on_the_pan_never_shows_it_in_clear() -> None:
    [diff] = compare({"2": "4111111111111111"}, {}, {"2": "4000000000000002"})
    text = describe(diff, SPEC)
    assert "4111111111111111" not in text and "4000000000000002" not in text
    assert "411111******1111" in text and "400000******0002" in text


def test_display_hides_cvv2_and_cavv_inside_field_48_and_track_data() -> None:
    assert display_value("48", "C2003123EC00205", SPEC) == "C2003***EC00205"
    assert display_value("48", "EC00205AV004abcd", SPEC) == "EC00205AV004****"
    assert display_value("48", "C2003123") == "********"  # dialect unknown: hidden whole
    assert display_value("35", "4111111111111111=3012") == "********"
    assert display_value("2", "4111111111111111") == "411111******1111"


@given(st.from_regex(r"[0-9]{13,19}", fullmatch=True))
def test_display_never_shows_a_pan_whatever_field_it_is_in(pan: str) -> None:
    for field in ("2", "37", "48", "44", "35"):
        shown = display_value(field, pan, SPEC) or ""
        assert pan not in shown
        assert re.search(r"[0-9]{13,}", shown) is None


def test_golden_line_turns_the_answer_into_matchers() -> None:
    [line] = parse_trace(_line(request=REQUEST, delay_ms=20, expect={"39": "51"}))
    request = {**REQUEST, "11": "000042", "7": "0501100000"}
    golden = golden_line(line, request, {**ANSWER, "41": "TERM0001"})
    assert golden["request"] == REQUEST and golden["delay_ms"] == 20
    assert golden["expect"] == {
        "t": "0110",
        "11": "*echo",
        "37": "*present",
        "38": "*present",
        "39": "00",
        "41": "*echo",
    }
    declined = golden_line(line, request, {"t": "0110", "11": "000042", "39": "51"})
    assert declined["expect"]["38"] == "*absent"
    # and the golden line parses and matches the answer it came from
    [again] = parse_trace(json.dumps(golden))
    assert compare(again.expect, request, {**ANSWER, "41": "TERM0001"}) == []


def test_golden_line_without_answer_expects_nothing_and_says_so() -> None:
    [line] = parse_trace(_line(request=REQUEST))
    golden = golden_line(line, REQUEST, None)
    assert golden["expect"] == {} and "no answer" in golden["note"]
