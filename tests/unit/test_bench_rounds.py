"""``switch bench --rounds N``: the rounds' spread and each target's count of rounds met."""

from __future__ import annotations

from typing import Any

import pytest

from bench.report import render_rounds
from bench.rounds import summarise_rounds
from bench.run import target_checks


def _run(
    tps: float,
    p99_1000: float | None,
    cpu: float,
    *,
    growth: float | None = None,
    problems: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The parts of a run_bench result that the rounds read."""
    rates = {"500": 4.0, **({"1000": p99_1000} if p99_1000 is not None else {})}
    result: dict[str, Any] = {
        "machine": {"cores": 2, "cpu": "EPYC", "python": "3.11.7", "system": "Linux"},
        "options": {
            "duration_s": 5.0,
            "warmup_s": 1.0,
            "connections": 10,
            "inflight": 64,
            "rates": [float(r) for r in rates],
            "arrivals": "even",
        },
        "closed": {"issuer": {"tps": tps * 3}},
        "open": {rate: {"switch": {"cpu_us_per_txn": cpu * 2}} for rate in rates},
        "switch": {
            "closed_loop_tps": tps,
            "cpu_us_per_txn_closed": cpu,
            "p99_ms_by_rate": rates,
        },
        "valid": not problems,
        "problems": list(problems),
        "errors": len(problems),
        "timeouts": 0,
    }
    if growth is not None:
        result["soak"] = {"rss_growth_pct": growth}
    return result


def _target(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in result["targets"] if t["name"] == name)


def test_each_target_is_counted_over_the_rounds_that_measured_it() -> None:
    result = summarise_rounds([_run(2400, 12.0, 320), _run(2600, 9.0, 290), _run(3000, 15.0, 280)])

    assert (
        _target(result, "closed_loop_tps")["met"],
        _target(result, "closed_loop_tps")["of"],
    ) == (2, 3)
    assert (_target(result, "p99_ms_at_1000")["met"], _target(result, "p99_ms_at_1000")["of"]) == (
        1,
        3,
    )
    assert (_target(result, "cpu_us_per_txn")["met"], _target(result, "cpu_us_per_txn")["of"]) == (
        2,
        3,
    )
    # No soak in any round: the RSS target was not measured, not failed.
    assert (
        _target(result, "rss_growth_pct_5min")["met"],
        _target(result, "rss_growth_pct_5min")["of"],
    ) == (0, 0)
    summary = result["summary"]
    assert summary["closed_loop_tps"] == {"median": 2600, "min": 2400, "max": 3000, "rounds": 3}
    assert summary["p99_ms_by_rate"]["1000"]["median"] == 12.0
    assert summary["cpu_us_per_txn_by_rate"]["500"]["max"] == 640
    assert summary["issuer_closed_tps"]["min"] == 7200
    assert summary["rss_growth_pct"] is None
    assert result["valid"] is True and result["problems"] == []


def test_a_round_without_the_rate_or_soak_is_left_out_of_that_count() -> None:
    result = summarise_rounds(
        [_run(2600, None, 290, growth=0.8), _run(2600, 8.0, 290, growth=12.5)]
    )

    assert (_target(result, "p99_ms_at_1000")["met"], _target(result, "p99_ms_at_1000")["of"]) == (
        1,
        1,
    )
    assert (
        _target(result, "rss_growth_pct_5min")["met"],
        _target(result, "rss_growth_pct_5min")["of"],
    ) == (1, 2)
    assert result["summary"]["rss_growth_pct"] == {
        "median": 6.65,
        "min": 0.8,
        "max": 12.5,
        "rounds": 2,
    }


def test_one_invalid_round_makes_the_rounds_invalid_and_is_named() -> None:
    result = summarise_rounds(
        [_run(2600, 8.0, 290), _run(2600, 8.0, 290, problems=("switch open: 3 errors",))]
    )

    assert result["valid"] is False
    assert result["problems"] == ["round 2: switch open: 3 errors"]
    assert result["errors"] == 1
    assert [row["valid"] for row in result["rounds"]] == [True, False]


def test_no_rounds_is_refused() -> None:
    with pytest.raises(ValueError, match="no rounds"):
        summarise_rounds([])


def test_a_target_the_run_did_not_measure_is_neither_met_nor_missed() -> None:
    checks = {c["name"]: c for c in target_checks(_run(2600, None, 310))}

    assert checks["closed_loop_tps"]["met"] is True
    assert checks["cpu_us_per_txn"]["met"] is False
    assert checks["p99_ms_at_1000"]["met"] is None
    assert checks["rss_growth_pct_5min"]["met"] is None


def test_the_report_gives_every_round_and_each_target_met_in_k_of_n() -> None:
    text = render_rounds(summarise_rounds([_run(2400, 12.0, 320), _run(3000, 9.0, 280)]))

    assert "switch bench, 2 rounds" in text
    assert "p99 ms @1000" in text and "12.00" in text and "9.00" in text
    assert "closed-loop TPS (target >= 2500): met in 1 of 2" in text
    assert "RSS growth % (table full) (target < 10): not measured" in text
    assert "switch, closed-loop TPS         2,700.0 [2,400 - 3,000]" in text
    assert text.endswith(
        "all 2 rounds VALID: every request answered 00 in time, 0 errors, 0 timeouts"
    )
    invalid = summarise_rounds([_run(2400, 12.0, 320, problems=("relay closed: 1 timeouts",))])
    assert render_rounds(invalid).endswith("rounds INVALID: round 1: relay closed: 1 timeouts")
