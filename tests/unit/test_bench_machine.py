"""The bench's account of the whole machine over a phase (/proc/stat)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.procs import machine_cpu, machine_load

TICKS = os.sysconf("SC_CLK_TCK")


def test_busy_is_every_state_but_idle_and_iowait_and_steal_is_apart(tmp_path: Path) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    (tmp_path / "stat").write_text(
        f"cpu  {3 * TICKS} {TICKS} {2 * TICKS} {50 * TICKS} {7 * TICKS} 0 {TICKS} {4 * TICKS} 0 0\n"
        "cpu0 1 2 3 4 5 6 7 8 0 0\n"
    )
    assert machine_cpu(tmp_path) == (7.0, 4.0)


@pytest.mark.parametrize("content", [None, "", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 x\n"])
def test_an_unreadable_account_reads_as_none(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "stat").write_text(content)
    assert machine_cpu(tmp_path) is None


def test_load_over_a_phase_counts_what_the_bench_did_not_spend_as_outside() -> None:
    # 10 s of wall: 14 s busy, 11 of them the bench's own processes, 0.2 s stolen.
    assert machine_load((100.0, 1.0), (114.0, 1.2), 10.0, bench_cpu_s=11.0) == {
        "busy_cores": 1.4,
        "outside_cores": 0.3,
        "steal_ms_per_s": 20.0,
    }
    # The bench's processes and /proc/stat tick apart: never below zero outside.
    late = machine_load((100.0, 1.0), (114.0, 1.0), 10.0, bench_cpu_s=14.3)
    assert late is not None and late["outside_cores"] == 0
    assert machine_load(None, (114.0, 1.0), 10.0, bench_cpu_s=1.0) is None
    assert machine_load((100.0, 1.0), None, 10.0, bench_cpu_s=1.0) is None
    assert machine_load((100.0, 1.0), (114.0, 1.0), 0.0, bench_cpu_s=1.0) is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="no /proc/stat here")
def test_this_machine_has_an_account() -> None:
    first = machine_cpu()
    sum(range(200_000))  # keep a core busy for a moment
    second = machine_cpu()
    assert first is not None and second is not None
    assert second[0] >= first[0] > 0 and second[1] >= first[1] >= 0
