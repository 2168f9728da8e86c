"""Where a transaction's time goes inside the switch: a histogram per stage.

A request's path, timed from the read that brought it to the send of its
answer:

    queued       read from the acquirer -> its task first runs
    checks       -> decoded, validated, deduplicated, routed, translated
    write_ahead  -> the acquirer-in and issuer-out legs are committed
    issuer       -> sent to the issuer and its answer back in the task
    outcome      -> the issuer-in and acquirer-out legs are committed
    answer_send  -> the answer handed on: written to the acquirer's socket, or
                    queued behind the send already running on it (an outbox)

(``checks`` to ``outcome`` for requests that go to an issuer; a request
answered by the switch itself has ``queued`` and ``answer_send`` only.)

Counts only grow, so two snapshots taken around a run give that run's own
distribution (:func:`between`); ``switch bench`` does that for each phase
and ``switch status`` shows them since the start. Buckets are a quarter of a
power of two wide from 10 µs: a percentile read from them is within 19% of
the true one, and adding a sample is one ``bisect``. Pure: no clock, no I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["STAGES", "StageTimes", "between", "percentiles"]

STAGES = ("queued", "checks", "write_ahead", "issuer", "outcome", "answer_send")

# Upper bounds (seconds) of the buckets: 10 µs * 2**(i/4), up to ~170 s; the
# last bucket takes anything longer.
_BOUNDS: tuple[float, ...] = tuple(10e-6 * 2 ** (i / 4) for i in range(97))


class StageTimes:
    """Bucket counts per stage since the start."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts = {stage: [0] * (len(_BOUNDS) + 1) for stage in STAGES}

    def add(self, stage: str, seconds: float) -> None:
        self._counts[stage][bisect_right(_BOUNDS, seconds)] += 1

    def snapshot(self) -> dict[str, list[int]]:
        """Counts per bucket, per stage (a copy: diff two with :func:`between`)."""
        return {stage: list(counts) for stage, counts in self._counts.items()}


def between(
    before: Mapping[str, Sequence[int]], after: Mapping[str, Sequence[int]]
) -> dict[str, list[int]]:
    """The counts added from ``before`` to ``after`` (two snapshots)."""
    out = {}
    for stage, counts in after.items():
        earlier = before.get(stage) or [0] * len(counts)
        out[stage] = [a - b for a, b in zip(counts, earlier, strict=True)]
    return out


def percentiles(
    counts: Mapping[str, Sequence[int]], pcts: Iterable[float] = (50, 99)
) -> dict[str, dict[str, float | int | None]]:
    """Per stage: the sample count and each percentile in ms (a bucket's upper
    bound, nearest rank; None without samples)."""
    wanted = tuple(pcts)
    out: dict[str, dict[str, float | int | None]] = {}
    for stage, buckets in counts.items():
        total = sum(buckets)
        row: dict[str, float | int | None] = {"count": total}
        for pct in wanted:
            row[f"p{pct:g}"] = _percentile_ms(buckets, total, pct)
        out[stage] = row
    return out


def _percentile_ms(buckets: Sequence[int], total: int, pct: float) -> float | None:
    if total == 0:
        return None
    rank = max(1, -(-total * pct // 100))  # ceil(total * pct / 100)
    seen = 0
    for index, count in enumerate(buckets):
        seen += count
        if seen >= rank:
            bound = _BOUNDS[min(index, len(_BOUNDS) - 1)]
            return round(bound * 1000, 3)
    return None  # not reached: rank <= total
