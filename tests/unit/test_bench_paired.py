"""``switch bench --against``: the paired summary, the checkout check, the options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from bench.paired import METRICS, check_checkout, summarise
from bench.procs import ROOT
from bench.run import BenchOptions
from switch.cli import main


def _phase(tps: float, p50: float, p99: float | None, cpu: float) -> dict[str, Any]:
    return {"tps": tps, "p50_ms": p50, "p99_ms": p99, "cpu_us_per_txn": cpu}


def _round(this: dict[str, Any], against: dict[str, Any]) -> dict[str, Any]:
    return {"this": this, "against": against}


def test_medians_and_paired_counts_per_phase_and_metric() -> None:
    rounds = [
        _round(
            {"closed": _phase(2600, 20, 40, 300), "1000": _phase(1000, 3, 12, 760)},
            {"closed": _phase(2500, 21, 41, 310), "1000": _phase(1000, 3, 15, 770)},
        ),
        _round(
            {"closed": _phase(2400, 22, 44, 320), "1000": _phase(999, 4, 20, 800)},
            {"closed": _phase(2700, 19, 39, 290), "1000": _phase(1000, 3, 14, 780)},
        ),
        _round(
            {"closed": _phase(2800, 18, 38, 280), "1000": _phase(1000, 3, 9, 740)},
            {"closed": _phase(2600, 20, 42, 300), "1000": _phase(1000, 3, 16, 740)},
        ),
    ]
    summary = summarise(rounds)

    closed = summary["closed"]
    assert closed["tps"] == {
        "this": 2600,
        "against": 2600,
        "this_better_in": 2,  # higher TPS is better
        "this_worse_in": 1,
        "rounds": 3,
    }
    assert closed["p99_ms"]["this"] == 40 and closed["p99_ms"]["against"] == 41
    assert (closed["p99_ms"]["this_better_in"], closed["p99_ms"]["this_worse_in"]) == (2, 1)
    open_ = summary["1000"]
    assert "tps" not in open_  # an open loop's TPS is its given rate
    assert open_["p99_ms"]["this"] == 12 and open_["p99_ms"]["against"] == 15
    assert (open_["p99_ms"]["this_better_in"], open_["p99_ms"]["this_worse_in"]) == (2, 1)
    # 3 = 3 in the second round: neither better nor worse.
    assert (open_["p50_ms"]["this_better_in"], open_["p50_ms"]["this_worse_in"]) == (0, 1)
    # 740 = 740 in the last round.
    assert (
        open_["cpu_us_per_txn"]["this_better_in"],
        open_["cpu_us_per_txn"]["this_worse_in"],
    ) == (
        1,
        1,
    )


def test_a_round_without_a_value_is_left_out() -> None:
    rounds = [
        _round({"closed": _phase(1, 1, None, 1)}, {"closed": _phase(1, 1, 5, 1)}),
        _round({"closed": _phase(1, 1, 4, 1)}, {"closed": _phase(1, 1, 5, 1)}),
    ]
    p99 = summarise(rounds)["closed"]["p99_ms"]
    assert p99 == {"this": 4, "against": 5, "this_better_in": 1, "this_worse_in": 0, "rounds": 1}


def test_no_rounds_no_summary() -> None:
    assert summarise([]) == {}


_values = st.floats(min_value=0.1, max_value=1e4, allow_nan=False)
_phases = st.builds(_phase, _values, _values, _values, _values)


@given(st.lists(st.tuples(_phases, _phases), min_size=1, max_size=12))
def test_swapping_the_versions_swaps_better_and_worse(pairs: list[tuple[Any, Any]]) -> None:
    forward = summarise([_round({"closed": a}, {"closed": b}) for a, b in pairs])["closed"]
    backward = summarise([_round({"closed": b}, {"closed": a}) for a, b in pairs])["closed"]
    for metric in METRICS:
        f, b = forward[metric], backward[metric]
        assert f["rounds"] == len(pairs)
        assert f["this_better_in"] + f["this_worse_in"] <= f["rounds"]
        assert (f["this_better_in"], f["this_worse_in"]) == (
            b["this_worse_in"],
            b["this_better_in"],
        )
        assert (f["this"], f["against"]) == (b["against"], b["this"])


def test_a_folder_without_the_switch_is_not_a_checkout(tmp_path: Path) -> None:
    (tmp_path / "switch").mkdir()
    (tmp_path / "switch" / "__init__.py").write_text("")
    with pytest.raises(ValueError, match=r"no specs/, simulators/"):
        check_checkout(tmp_path)
    check_checkout(ROOT)  # this checkout is one


def test_paired_options_refuse_what_they_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        BenchOptions(against=tmp_path, rounds=0)
    for extra in ({"curves": True}, {"soak": 60.0}, {"pin": True}):
        with pytest.raises(ValueError, match="not with --curves, --soak or --pin"):
            BenchOptions(against=tmp_path, **extra)


def test_the_cli_refuses_no_rounds_and_a_folder_that_is_no_checkout(tmp_path: Path) -> None:
    runner = CliRunner()
    none = runner.invoke(main, ["bench", "--rounds", "0"])
    assert none.exit_code == 2, none.output
    assert "--rounds" in none.output
    empty = runner.invoke(main, ["bench", "--against", str(tmp_path)])
    assert empty.exit_code == 2, empty.output
    assert "is not a checkout of the switch" in empty.output
