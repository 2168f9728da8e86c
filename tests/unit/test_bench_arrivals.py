"""The open loop's schedule (bench.load.arrival_times): even or Poisson, seeded."""

from __future__ import annotations

import itertools
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.load import ARRIVALS, arrival_times
from bench.run import BenchOptions


def _first(n: int, rate: float, arrivals: str, seed: int = 1) -> list[float]:
    return list(itertools.islice(arrival_times(rate, arrivals, seed), n))


@given(rate=st.floats(min_value=1, max_value=100_000), n=st.integers(min_value=1, max_value=500))
def test_even_arrivals_are_one_every_rate_th_of_a_second(rate: float, n: int) -> None:
    assert _first(n, rate, "even") == [i / rate for i in range(n)]


@given(
    seed=st.integers(min_value=0, max_value=2**32), rate=st.floats(min_value=1, max_value=10_000)
)
def test_poisson_arrivals_are_the_same_for_a_seed_and_never_go_back(seed: int, rate: float) -> None:
    times = _first(200, rate, "poisson", seed)
    assert times == _first(200, rate, "poisson", seed)
    assert times[0] == 0.0
    assert all(b >= a for a, b in itertools.pairwise(times))


def test_poisson_gaps_are_exponential_with_the_rate_as_their_mean() -> None:
    rate = 1000.0
    times = _first(50_001, rate, "poisson", seed=7)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(1 / rate, rel=0.03)
    # An exponential's standard deviation equals its mean; even arrivals have none.
    assert statistics.pstdev(gaps) == pytest.approx(mean, rel=0.05)
    # About 1 - 1/e of the gaps are shorter than the mean: the bursts of many shops.
    assert sum(g < 1 / rate for g in gaps) / len(gaps) == pytest.approx(0.632, abs=0.02)
    assert _first(1000, rate, "poisson", seed=8) != _first(1000, rate, "poisson", seed=7)


@pytest.mark.parametrize(("rate", "arrivals"), [(0, "even"), (-5, "poisson"), (100, "bursty")])
def test_a_schedule_that_cannot_be_is_refused(rate: float, arrivals: str) -> None:
    with pytest.raises(ValueError, match=r"rate|arrivals"):
        next(arrival_times(rate, arrivals))


def test_switch_bench_offers_every_schedule_and_the_driver_the_same() -> None:
    # switch.cli_bench lists them itself: it imports the benchmark only when run.
    from switch.cli_bench import bench

    option = next(p for p in bench.params if p.name == "arrivals")
    assert tuple(option.type.choices) == ARRIVALS  # type: ignore[attr-defined]


def test_bench_options_refuse_a_schedule_the_driver_does_not_know() -> None:
    assert BenchOptions(arrivals="poisson").arrivals == "poisson"
    with pytest.raises(ValueError, match="arrivals must be one of even, poisson"):
        BenchOptions.quick(arrivals="bursty")
