"""``switch bench --pin``: the plan (pure) and pinning a real process's threads."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.load import _cpu_list
from bench.procs import pin, plan_pins

NAMES = ["simulators", "baseline", "switch", "relay"]


def test_the_target_gets_the_lowest_cpu_alone_and_the_rest_share_the_others() -> None:
    plan, driver = plan_pins("switch", NAMES, {0, 1, 2, 3})
    assert plan["switch"] == {0}
    assert plan["simulators"] == plan["baseline"] == plan["relay"] == {1, 2, 3}
    assert driver == {1, 2, 3}
    plan, driver = plan_pins("baseline", NAMES, {2, 5})  # not necessarily from 0
    assert plan["baseline"] == {2}
    assert plan["switch"] == {5} and driver == {5}


def test_pinning_needs_two_cpus() -> None:
    with pytest.raises(RuntimeError, match="at least 2 CPUs"):
        plan_pins("switch", NAMES, {0})


def _allowed(pid: int) -> dict[str, str]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("Cpus_allowed_list:"))
        out[tid] = line.split(":", 1)[1].strip()
    return out


def test_pin_moves_every_thread_of_a_process() -> None:
    cpu = min(os.sched_getaffinity(0))
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, threading\n"
            "done = threading.Event()\n"
            "threading.Thread(target=done.wait).start()\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n"
            "done.set()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline() == "ready\n"
            assert len(_allowed(child.pid)) == 2  # the main thread and the one it started
            pin(child.pid, {cpu})
            assert set(_allowed(child.pid).values()) == {str(cpu)}
        finally:
            child.stdin.close()
            child.wait(timeout=10)


def test_driver_cpu_list_is_parsed_or_refused() -> None:
    assert _cpu_list("1") == {1}
    assert _cpu_list("1,3") == {1, 3}
    for bad in ("", "x", "1,-2"):
        with pytest.raises(argparse.ArgumentTypeError, match="CPU numbers"):
            _cpu_list(bad)
