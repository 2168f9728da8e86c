"""``switch bench --instructions``: reading callgrind's dumps, ratios, the report, refusals.

The run itself (the switch under valgrind) is in tests/integration/test_bench_smoke.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bench.instructions import callgrind_missing, dumped_instructions, ratios
from bench.report import render_instructions
from bench.run import BenchOptions
from switch.cli import main

# The head of a dump as callgrind 3.19 writes it on ``callgrind_control --dump``.
_DUMP = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 11285
cmd:  /usr/bin/python -m switch.cli run --config switch.toml
part: 1

desc: Timerange: Basic block 0 - 156909122
desc: Trigger: dump

positions: line
events: Ir
summary: 769552848


ob=(1) /usr/lib/libpython3.11.so.1.0
"""


def test_a_dump_gives_its_summary_count() -> None:
    assert dumped_instructions(_DUMP) == 769_552_848


def test_a_dump_of_an_older_callgrind_gives_its_totals_line() -> None:
    text = _DUMP.replace("summary: 769552848\n", "") + "\ntotals: 12345\n"
    assert dumped_instructions(text) == 12_345


def test_a_dump_without_a_count_is_refused() -> None:
    with pytest.raises(ValueError, match="no summary line"):
        dumped_instructions(_DUMP.replace("summary: 769552848\n", ""))


def _window(per_txn: int | None, txns: int = 80) -> dict[str, Any]:
    return {
        "instructions": (per_txn or 0) * txns,
        "transactions": txns,
        "per_txn": per_txn,
        "commits_per_txn": 1.95,
        "valid": True,
    }


def test_ratios_are_this_over_against_per_window_and_none_without_a_count() -> None:
    this = {"alone": _window(2_000_000), "batched": _window(None)}
    against = {"alone": _window(2_500_000), "batched": _window(1_250_000)}
    assert ratios(this, against) == {"alone": 0.8, "batched": None}


def test_the_report_shows_each_version_window_and_the_ratios() -> None:
    version = {"root": "/x", "commit": "abc1234", "exit_codes": {"switch": 0}}
    result = {
        "machine": {"cores": 2, "cpu": "EPYC", "python": "3.11.7", "system": "Linux"},
        "options": {"window_s": 10.0, "alone_rate": 8.0, "connections": 10, "inflight": 64},
        "versions": {
            "this": {**version, "alone": _window(2_000_000), "batched": _window(1_200_000)},
            "against": {**version, "alone": _window(2_500_000), "batched": _window(1_250_000)},
        },
        "ratios": {"alone": 0.8, "batched": 0.96},
        "valid": True,
        "problems": [],
    }
    text = render_instructions(result)
    assert "this alone" in text and "against batched" in text
    assert "2,000,000" in text and "1,250,000" in text
    assert "alone 0.8000, batched 0.9600" in text
    assert "run VALID" in text


def test_without_valgrind_on_the_path_it_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no valgrind there
    why = callgrind_missing()
    assert why is not None and "valgrind, callgrind_control not on PATH" in why
    refused = CliRunner().invoke(main, ["bench", "--instructions", "--quick"])
    assert refused.exit_code == 2, refused.output
    assert "--instructions needs valgrind's callgrind" in refused.output


def test_instructions_refuse_what_they_cannot_do(tmp_path: Path) -> None:
    for extra in ({"curves": True}, {"soak": 60.0}, {"pin": True}):
        with pytest.raises(ValueError, match="not with --curves, --soak or --pin"):
            BenchOptions(instructions=True, **extra)
    runner = CliRunner()
    for args in (["--rate", "1000"], ["--arrivals", "poisson"]):
        refused = runner.invoke(main, ["bench", "--instructions", *args])
        assert refused.exit_code == 2, refused.output
        assert "runs its own windows" in refused.output
    for args in (["--against", ".", "--rounds", "2"], ["--rounds", "2"]):
        rounds = runner.invoke(main, ["bench", "--instructions", *args])
        assert rounds.exit_code == 2, rounds.output
        assert "not with --rounds" in rounds.output
