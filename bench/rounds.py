"""``switch bench --rounds N``: N full runs of this switch, each afresh, summarised.

On a machine whose times move 10-20% from one run to the next, one run says
little about whether the switch meets a target. This runs the whole bench
(:func:`bench.run.run_bench`: simulators, switch and relay started anew, every
phase) N times in a row and reports each round's headline numbers, the
median and range of each, and for each target of issue 8 the number of
rounds that met it.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from bench.run import BenchOptions, run_bench, target_checks

__all__ = ["round_row", "run_rounds", "summarise_rounds"]


def run_rounds(
    options: BenchOptions, progress: Callable[[str], None] = lambda text: None
) -> dict[str, Any]:
    """``options.rounds`` full runs, one after the other; every result kept."""
    runs = []
    for number in range(1, options.rounds + 1):
        progress(f"round {number} of {options.rounds}")
        workdir = options.workdir / f"round-{number}" if options.workdir else None
        runs.append(run_bench(dataclasses.replace(options, workdir=workdir), progress))
    return summarise_rounds(runs)


def round_row(result: dict[str, Any]) -> dict[str, Any]:
    """One round's headline numbers: the switch's, and the issuer alone's
    closed loop (how fast the machine was in that round)."""
    sw = result["switch"]
    rates = result["open"]
    return {
        "valid": result["valid"],
        "issuer_closed_tps": result["closed"]["issuer"]["tps"],
        "closed_loop_tps": sw["closed_loop_tps"],
        "cpu_us_per_txn_closed": sw["cpu_us_per_txn_closed"],
        "p99_ms_by_rate": dict(sw["p99_ms_by_rate"]),
        "cpu_us_per_txn_by_rate": {r: by["switch"]["cpu_us_per_txn"] for r, by in rates.items()},
        "rss_growth_pct": (result.get("soak") or {}).get("rss_growth_pct"),
        "targets": {c["name"]: c["met"] for c in target_checks(result)},
    }


def _spread(values: Sequence[float | None]) -> dict[str, Any] | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {
        "median": statistics.median(present),
        "min": min(present),
        "max": max(present),
        "rounds": len(present),
    }


def summarise_rounds(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The rounds' rows, the spread of each number and each target's count of
    rounds met; valid only when every round was."""
    if not runs:
        raise ValueError("no rounds to summarise")
    rows = [round_row(r) for r in runs]
    rates = list(runs[0]["open"])
    spread = {
        "issuer_closed_tps": _spread([r["issuer_closed_tps"] for r in rows]),
        "closed_loop_tps": _spread([r["closed_loop_tps"] for r in rows]),
        "cpu_us_per_txn_closed": _spread([r["cpu_us_per_txn_closed"] for r in rows]),
        "p99_ms_by_rate": {
            rate: _spread([r["p99_ms_by_rate"].get(rate) for r in rows]) for rate in rates
        },
        "cpu_us_per_txn_by_rate": {
            rate: _spread([r["cpu_us_per_txn_by_rate"].get(rate) for r in rows]) for rate in rates
        },
        "rss_growth_pct": _spread([r["rss_growth_pct"] for r in rows]),
    }
    targets = []
    for check in target_checks(runs[0]):
        verdicts = [row["targets"][check["name"]] for row in rows]
        measured = [v for v in verdicts if v is not None]
        targets.append(
            {
                "name": check["name"],
                "label": check["label"],
                "op": check["op"],
                "target": check["target"],
                "met": sum(measured),
                "of": len(measured),
            }
        )
    problems = [
        f"round {number}: {problem}"
        for number, run in enumerate(runs, start=1)
        for problem in run["problems"]
    ]
    return {
        "machine": runs[0]["machine"],
        "options": runs[0]["options"],
        "rounds": rows,
        "summary": spread,
        "targets": targets,
        "runs": list(runs),
        "valid": all(r["valid"] for r in runs),
        "problems": problems,
        "errors": sum(r["errors"] for r in runs),
        "timeouts": sum(r["timeouts"] for r in runs),
    }
