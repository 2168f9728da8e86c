"""The bench's account of time a process was runnable but had no core (schedstat)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.load import runq_wait_ms_per_s, runq_wait_s


def test_run_queue_wait_is_the_second_schedstat_field_in_seconds(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "schedstat").write_text("355329611 1500000000 24\n")
    assert runq_wait_s(42, proc=tmp_path) == 1.5


@pytest.mark.parametrize("content", [None, "", "garbage here"])
def test_no_schedstat_account_reads_as_none(tmp_path: Path, content: str | None) -> None:
    (tmp_path / "7").mkdir()
    if content is not None:
        (tmp_path / "7" / "schedstat").write_text(content)
    assert runq_wait_s(7, proc=tmp_path) is None


def test_wait_per_second_of_the_phase() -> None:
    assert runq_wait_ms_per_s(1.0, 1.25, 5.0) == 50.0
    assert runq_wait_ms_per_s(None, 1.25, 5.0) is None
    assert runq_wait_ms_per_s(1.0, None, 5.0) is None
    assert runq_wait_ms_per_s(1.0, 1.25, 0.0) is None


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="no schedstat here")
def test_this_process_has_an_account() -> None:
    first = runq_wait_s()
    assert first is not None and first >= 0
    second = runq_wait_s(os.getpid())
    assert second is not None and second >= first
