"""``switch bench --quick`` end to end: the harness runs and its run is valid.

Real processes (simulators, switch, relay, load driver) on free loopback
ports. This proves the benchmark measures something honest -- every request
answered 00, no errors, no timeouts, every process exits 0, the JSON has its
shape -- and never asserts a speed: CI machines are not benchmark machines.
"""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from bench.instructions import callgrind_missing
from bench.load import HANDSHAKE_CONNECTED, HANDSHAKE_DRAINED, arrival_times
from bench.procs import Network, python_env
from bench.report import render, render_rounds
from switch.launch import free_port, start, wait_for_port
from switch.stages import STAGES

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _quick_bench(workdir: Path, *args: str) -> dict[str, Any]:
    """``switch bench --quick --json`` as a process; its exit code 0 and its result."""
    command = [sys.executable, "-m", "switch.cli", "bench", "--quick", "--json"]
    proc = subprocess.run(
        [*command, "--workdir", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _copy_checkout(dest: Path) -> Path:
    """A copy of this checkout's packages (what ``--against`` needs) at ``dest``."""
    for package in ("switch", "specs", "simulators"):
        shutil.copytree(
            ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return dest


def test_quick_bench_is_a_valid_run_with_every_number_reported(tmp_path: Path) -> None:
    result = _quick_bench(tmp_path)

    assert result["valid"] is True, result["problems"]
    assert result["errors"] == 0
    assert result["timeouts"] == 0
    assert result["exit_codes"] == {"relay": 0, "switch": 0, "simulators": 0, "baseline": 0}
    assert result["machine"]["cores"] >= 1
    assert result["options"]["arrivals"] == "even"  # the default schedule, said in the result
    phases = [*result["closed"].values()]
    phases += [p for by_target in result["open"].values() for p in by_target.values()]
    assert {p["target"] for p in phases} == {"issuer", "relay", "switch"}
    for phase in phases:
        if phase["target"] == "switch":  # the switch's own split of the time (switch.stages)
            stages = phase["stages_ms"]
            assert set(stages) == set(STAGES)
            assert all(row["count"] > 0 and row["p99"] is not None for row in stages.values())
        else:
            assert "stages_ms" not in phase
        assert phase["answered"] == phase["sent"] > 0
        assert set(phase["latency_ms"]) == {"p50", "p95", "p99", "max"}
        assert phase["cpu_us_per_txn"] is not None
        assert phase["rss_mib"]["peak"] > 0
        for waited in (phase["target_runq_wait_ms_per_s"], phase["driver_runq_wait_ms_per_s"]):
            assert waited is None or 0 <= waited <= 1000  # None without schedstat
        # The machine over the phase: the bench's own processes were busy, so
        # what ran outside them is less than all that ran.
        machine = phase["machine"]
        assert 0 <= machine["outside_cores"] < machine["busy_cores"]
        assert machine["busy_cores"] <= result["machine"]["cores"] + 0.05
        assert machine["steal_ms_per_s"] >= 0
    for base in ("vs_issuer", "vs_relay"):
        assert set(result["ratios"][base]) == {"closed_loop_tps", "cpu_us_per_txn", "p99_by_rate"}
    assert result["journal"]["transactions"] >= result["closed"]["switch"]["answered"]
    assert result["switch"]["rss_mib_peak"] > 0

    # The text report gives each phase's busy cores, and says so when the
    # hypervisor took time from the machine.
    text = render(result)
    switch_closed = result["closed"]["switch"]["machine"]
    assert f"{switch_closed['busy_cores']:.2f} ({switch_closed['outside_cores']:.2f})" in text
    steal_line = "ms per second from this machine (steal)"
    for phase in phases:
        phase["machine"]["steal_ms_per_s"] = 0.0
    assert steal_line not in render(result)
    result["closed"]["relay"]["machine"]["steal_ms_per_s"] = 12.5
    assert f"the hypervisor took up to 12.5 {steal_line}" in render(result)


def test_rounds_are_full_runs_each_afresh_with_targets_counted(tmp_path: Path) -> None:
    result = _quick_bench(tmp_path / "work", "--rounds", "2")

    assert result["valid"] is True, result["problems"]
    assert len(result["runs"]) == len(result["rounds"]) == 2
    # Each round started every process afresh, in folders of its own.
    work = tmp_path / "work"
    assert sorted(p.name for p in work.iterdir()) == ["round-1", "round-2"]
    for round_dir in work.iterdir():
        assert (round_dir / "logs" / "switch.log").exists()
    for run, row in zip(result["runs"], result["rounds"], strict=True):
        assert run["valid"] and run["exit_codes"]["switch"] == 0
        assert row["closed_loop_tps"] == run["switch"]["closed_loop_tps"] > 0
    counted = {t["name"]: t["of"] for t in result["targets"]}
    # --quick's one rate is 200 TPS and it has no soak: those targets are unmeasured.
    assert counted == {
        "closed_loop_tps": 2,
        "cpu_us_per_txn": 2,
        "p99_ms_at_1000": 0,
        "rss_growth_pct_5min": 0,
    }
    tps = result["summary"]["closed_loop_tps"]
    assert tps["min"] <= tps["median"] <= tps["max"] and tps["rounds"] == 2
    assert "all 2 rounds VALID" in render_rounds(result)


def test_paired_bench_runs_the_other_checkouts_code_in_alternating_rounds(
    tmp_path: Path,
) -> None:
    # A copy of this checkout whose switch package leaves a mark when a
    # process imports it: only the "against" network's children can.
    other = _copy_checkout(tmp_path / "other")
    mark = other / "imported-by-a-child"
    with (other / "switch" / "__init__.py").open("a") as init:
        init.write(
            "\nimport pathlib as _pathlib\n"
            "(_pathlib.Path(__file__).resolve().parent.parent / 'imported-by-a-child').touch()\n"
        )
    result = _quick_bench(tmp_path / "work", "--against", str(other), "--rounds", "2")

    assert result["valid"] is True, result["problems"]
    assert mark.exists()  # the other checkout's code ran
    assert result["versions"]["this"]["root"] == str(ROOT)
    assert result["versions"]["against"]["root"] == str(other.resolve())
    assert [r["first"] for r in result["rounds"]] == ["this", "against"]
    # Each round started both versions afresh, in its own folders.
    work = tmp_path / "work"
    assert sorted(p.name for p in work.iterdir()) == ["round-1", "round-2"]
    for round_dir in work.iterdir():
        for version in ("this", "against"):
            assert (round_dir / version / "logs" / "switch.log").exists()
    for row in result["rounds"]:
        for version in ("this", "against"):
            assert set(row[version]) == {"closed", "200"}  # the quick rate
            for phase in row[version].values():
                assert phase["valid"] and phase["errors"] == 0 and phase["timeouts"] == 0
                assert phase["p99_ms"] is not None and phase["cpu_us_per_txn"] is not None
    assert set(result["summary"]) == {"closed", "200"}
    assert result["summary"]["closed"]["tps"]["rounds"] == 2
    assert result["exit_codes"] == {
        "this": {"switch": 0, "simulators": 0},
        "against": {"switch": 0, "simulators": 0},
    }


@pytest.mark.skipif(callgrind_missing() is not None, reason=str(callgrind_missing()))
def test_instruction_counts_tell_a_heavier_switch_from_this_one(tmp_path: Path) -> None:
    # A copy of this checkout whose processor does 20,000 loop turns more per
    # request: alone, its count per transaction must rise well beyond the
    # noise of --quick's short windows (A/A ratios 0.88-1.14 seen; ~1% in
    # full windows). Batched counts are not compared: a slower switch
    # gathers bigger batches, which cut its count per transaction (the
    # batched ratio, this over the heavier copy, was 0.71 once and 1.20 once).
    heavier = _copy_checkout(tmp_path / "heavier")
    with (heavier / "switch" / "processor.py").open("a") as processor:
        processor.write(
            "\n_handle = Processor.handle\n"
            "async def _heavier(self, *args, **kwargs):\n"
            "    sum(range(20_000))\n"
            "    return await _handle(self, *args, **kwargs)\n"
            "Processor.handle = _heavier\n"
        )
    result = _quick_bench(tmp_path / "work", "--instructions", "--against", str(heavier))

    assert result["valid"] is True, result["problems"]
    this, other = result["versions"]["this"], result["versions"]["against"]
    assert this["root"] == str(ROOT) and other["root"] == str(heavier.resolve())
    for version in (this, other):
        assert version["exit_codes"] == {"switch": 0, "simulators": 0}
        alone, batched = version["alone"], version["batched"]
        for window in (alone, batched):
            assert window["valid"] and window["errors"] == 0 and window["timeouts"] == 0
            assert window["transactions"] == window["answered"] > 0
            assert window["per_txn"] == round(window["instructions"] / window["transactions"])
        # Batched, transactions share journal commits; alone, far fewer do.
        assert batched["commits_per_txn"] < alone["commits_per_txn"]
        assert batched["per_txn"] < alone["per_txn"]
    # Seen with 20,000 turns: 0.34-0.36.
    assert result["ratios"]["alone"] < 0.7
    assert result["ratios"]["batched"] is not None
    # The dumps are kept with the rest of the run's files.
    assert list((tmp_path / "work" / "this").glob("callgrind.out.*.1"))


def test_a_checkout_that_cannot_start_is_named_with_the_end_of_its_log(tmp_path: Path) -> None:
    broken = _copy_checkout(tmp_path / "broken")
    with (broken / "switch" / "server.py").open("a") as server:
        server.write("\nraise SystemExit('this checkout is broken on purpose')\n")
    network = Network(tmp_path / "work", code_root=broken, baselines=False)
    with pytest.raises(RuntimeError) as caught, network:
        pass
    text = str(caught.value)
    assert f"from {broken} did not start" in text
    assert "this checkout is broken on purpose" in text  # the end of its log
    assert all(p.popen.poll() is not None for p in network.processes.values())


class _Reflector(socketserver.BaseRequestHandler):
    """An upstream that sends back every byte it receives."""

    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


def test_bench_relay_forwards_frames_unchanged_and_stops_on_sigterm(tmp_path: Path) -> None:
    relay_port = free_port()
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Reflector) as upstream:
        upstream.daemon_threads = True
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        relay = start(
            "relay",
            [
                "bench-relay",
                "--listen",
                str(relay_port),
                "--to",
                f"127.0.0.1:{upstream.server_address[1]}",
            ],
            log_dir=tmp_path,
        )
        try:
            wait_for_port("127.0.0.1", relay_port, proc=relay.popen)
            with socket.create_connection(("127.0.0.1", relay_port), timeout=5) as client:
                # Two frames in one write, the second split over two: both come back whole.
                client.sendall(b"\x00\x03abc\x00\x02d")
                client.sendall(b"e")
                received = b""
                while len(received) < 9:
                    received += client.recv(100)
                assert received == b"\x00\x03abc\x00\x02de"
        finally:
            assert relay.stop() == 0, relay.log_text()
            upstream.shutdown()


@pytest.mark.parametrize("arrivals", ["even", "poisson"])
def test_open_loop_sends_every_request_its_schedule_makes_due(
    tmp_path: Path, arrivals: str
) -> None:
    # A real network (simulators, switch, relay); the driver as the bench runs it.
    rate, warmup, duration, seed = 300.0, 0.2, 1.0, 5
    with Network(tmp_path) as net:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.load",
                "--port",
                str(net.ports.listener),
                "--mode",
                "open",
                "--rate",
                str(rate),
                "--arrivals",
                arrivals,
                "--seed",
                str(seed),
                "--duration",
                str(duration),
                "--warmup",
                str(warmup),
                "--connections",
                "3",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=python_env(),
            cwd=ROOT,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    due = itertools.takewhile(lambda t: t < warmup + duration, arrival_times(rate, arrivals, seed))
    assert result["sent"] == sum(1 for _ in due)
    assert result["valid"] is True, result["error_examples"]
    assert result["answered"] == result["sent"]
    assert result["arrivals"] == arrivals


class _Recorder(socketserver.BaseRequestHandler):
    """A target that answers nothing and records what it got and when it saw EOF."""

    server: _RecordingServer

    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.server.received.append(data)
        self.server.closed.set()


class _RecordingServer(socketserver.ThreadingTCPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.received: list[bytes] = []
        self.closed = threading.Event()


def test_a_handshaking_driver_sends_only_when_told_and_closes_only_when_told() -> None:
    with _RecordingServer() as target:
        threading.Thread(target=target.serve_forever, daemon=True).start()
        args = ["--port", str(target.server_address[1]), "--connections", "1", "--mode", "open"]
        args += ["--rate", "50", "--duration", "0.2", "--warmup", "0", "--timeout", "0.5"]
        driver = subprocess.Popen(
            [sys.executable, "-m", "bench.load", *args, "--handshake"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=python_env(),
            cwd=ROOT,
        )
        assert driver.stdin is not None and driver.stderr is not None
        try:
            assert driver.stderr.readline().decode().strip() == HANDSHAKE_CONNECTED
            assert target.received == []
            driver.stdin.write(b"\n")
            driver.stdin.flush()
            assert driver.stderr.readline().decode().strip() == HANDSHAKE_DRAINED
            assert target.received  # the run's requests went out
            assert not target.closed.is_set()  # and the connection is still open
            out, _ = driver.communicate(b"\n", timeout=30)
        finally:
            if driver.poll() is None:
                driver.kill()
        assert target.closed.wait(10)
        assert driver.returncode == 0
        result = json.loads(out)
        assert result["sent"] == 10 and result["answered"] == 0 and result["timeouts"] == 10
