"""switch.stages: per-stage histograms, their percentiles and the difference of two snapshots."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from switch.stages import STAGES, StageTimes, between, percentiles

WIDTH = 2**0.25  # one bucket: a percentile read from the buckets is at most this much high


def test_no_samples_no_percentiles() -> None:
    out = percentiles(StageTimes().snapshot())
    assert set(out) == set(STAGES)
    assert out["issuer"] == {"count": 0, "p50": None, "p99": None}


def test_percentiles_are_nearest_rank_to_within_a_bucket() -> None:
    times = StageTimes()
    for _ in range(99):
        times.add("issuer", 0.001)
    times.add("issuer", 0.100)
    out = percentiles(times.snapshot(), (50, 99, 100))["issuer"]
    assert out["count"] == 100
    for pct, true_ms in ((50, 1.0), (99, 1.0), (100, 100.0)):
        value = out[f"p{pct}"]
        assert isinstance(value, float)
        assert true_ms <= value <= true_ms * WIDTH


def test_between_two_snapshots_is_what_was_added_in_between() -> None:
    times = StageTimes()
    times.add("queued", 0.002)
    before = times.snapshot()
    times.add("queued", 0.004)
    times.add("outcome", 0.0005)
    added = percentiles(between(before, times.snapshot()))
    assert added["queued"]["count"] == 1
    assert added["outcome"]["count"] == 1
    assert added["issuer"]["count"] == 0
    queued = added["queued"]["p50"]
    assert isinstance(queued, float) and 4.0 <= queued <= 4.0 * WIDTH


@given(st.lists(st.floats(min_value=1e-5, max_value=100.0), min_size=1, max_size=300))
def test_a_bucketed_percentile_is_never_low_and_at_most_one_bucket_high(
    samples: list[float],
) -> None:
    times = StageTimes()
    for seconds in samples:
        times.add("checks", seconds)
    ordered = sorted(samples)
    out = percentiles(times.snapshot(), (50, 99))["checks"]
    for pct in (50, 99):
        true_ms = ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1] * 1000
        value = out[f"p{pct}"]
        assert isinstance(value, float)
        assert true_ms <= value * 1.0001  # rounding to µs
        assert value <= true_ms * WIDTH * 1.0001 + 0.001
