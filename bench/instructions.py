"""``switch bench --instructions``: the switch's instructions per transaction, counted by callgrind.

Time on a shared machine moves by more than most changes do (see
``bench.paired``); the instructions a process executes do not. Here the
switch runs under valgrind's callgrind with its counting off, so it starts
and warms up at valgrind's base speed, and the count is turned on only for
each measured window (``callgrind_control``): the instructions executed in
the switch process's user space (all its threads; never the kernel's)
from the moment the window's driver is connected until its last answer is
in (``bench.load --handshake``: no connecting or closing counted), divided
by the transactions answered in it. Run again, the same code gives
the same count alone to within ~1%; batched only to within ~10%, since
batch sizes (and the loop passes that wait on SQLite's lock) follow the
timing of the processes around the switch. For the same reason a slower
version gathers bigger batches, which lowers its batched count: compare
versions by the alone window.

What it measures is the code path's work, not time. Two windows:

    alone    an open loop at 8 TPS: under callgrind the switch runs some 50
             times slower, so at 8 TPS each request still meets an idle loop,
             as it does at a few hundred TPS natively (two journal commits and
             every wake-up its own);
    batched  a closed loop, 10 connections with 64 in flight: commits, sends
             and loop passes shared by many transactions.

A run is valid when every request of every window was answered 00 in time
and every process exited 0. ``--against DIR`` counts another checkout's
switch the same way, one version after the other (counts need no pairing),
and reports the ratio.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.load import HANDSHAKE_CONNECTED, HANDSHAKE_DRAINED
from bench.paired import check_checkout, commit_of, prefixed
from bench.procs import ROOT, Network, python_env
from bench.run import BenchOptions, Runner, machine

__all__ = [
    "ALONE_RATE",
    "WINDOWS",
    "callgrind_missing",
    "dumped_instructions",
    "ratios",
    "run_instructions",
]

ALONE_RATE = 8.0
WINDOWS = ("alone", "batched")
_TOOLS = ("valgrind", "callgrind_control")
_OUT = "callgrind.out"
# The dump's total: "summary: N" (older callgrind: "totals: N") for event Ir.
_TOTAL = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def callgrind_missing() -> str | None:
    """Why ``--instructions`` cannot run here, or None when it can."""
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"needs valgrind's callgrind ({', '.join(missing)} not on PATH;"
            " e.g. apt install valgrind)"
        )
    return None


def dumped_instructions(text: str) -> int:
    """The instruction count of one callgrind dump (ValueError when it holds none)."""
    match = _TOTAL.search(text)
    if match is None:
        raise ValueError("no summary line in the callgrind dump")
    return int(match.group(1))


def run_instructions(
    options: BenchOptions, progress: Callable[[str], None] = lambda text: None
) -> dict[str, Any]:
    """Count this checkout's switch (and ``options.against``'s); the result as plain data."""
    why = callgrind_missing()
    if why is not None:
        raise ValueError(f"--instructions {why}")
    roots = {"this": ROOT}
    if options.against is not None:
        roots["against"] = options.against.resolve()
        check_checkout(roots["against"])
    versions: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="switch-bench-ir-") as tmp:
        workdir = options.workdir or Path(tmp)
        for name, root in roots.items():
            versions[name] = {
                "root": str(root),
                "commit": commit_of(root),
                **_count(options, root, workdir / name, prefixed(progress, name)),
            }
    problems = [
        f"{name} {window}: {w['errors']} errors, {w['timeouts']} timeouts,"
        f" {w['answered']}/{w['sent']} answered"
        for name, v in versions.items()
        for window in WINDOWS
        if not (w := v[window])["valid"]
    ]
    problems += [
        f"{name}: a process did not exit 0: {v['exit_codes']}"
        for name, v in versions.items()
        if any(v["exit_codes"].values())
    ]
    result: dict[str, Any] = {
        "machine": machine(),
        "options": {
            "window_s": options.duration,
            "alone_rate": ALONE_RATE,
            "connections": options.connections,
            "inflight": options.inflight,
        },
        "versions": versions,
        "valid": not problems,
        "problems": problems,
    }
    if "against" in versions:
        result["ratios"] = ratios(versions["this"], versions["against"])
    return result


def ratios(this: Mapping[str, Any], against: Mapping[str, Any]) -> dict[str, float | None]:
    """Per window: this version's instructions per transaction over the other's."""
    out: dict[str, float | None] = {}
    for window in WINDOWS:
        a, b = this[window]["per_txn"], against[window]["per_txn"]
        out[window] = round(a / b, 4) if a and b else None
    return out


def _count(
    options: BenchOptions, root: Path, workdir: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """One version: its network with the switch under callgrind, both windows, stopped."""
    workdir.mkdir(parents=True, exist_ok=True)
    wrapper = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={workdir / _OUT}.%p",
    ]
    progress(f"starting simulators and the switch under callgrind from {root}")
    net = Network(
        workdir,
        max_connections=options.connections + 10,
        code_root=root,
        baselines=False,
        switch_wrapper=wrapper,
    )
    out: dict[str, Any] = {}
    with net:
        runner = Runner(net, options, progress)
        shapes: dict[str, dict[str, Any]] = {
            "alone": {"mode": "open", "connections": options.connections, "rate": ALONE_RATE},
            "batched": {
                "mode": "closed",
                "connections": options.connections,
                "inflight": options.inflight,
            },
        }
        for part, (window, shape) in enumerate(shapes.items(), start=1):
            # Uncounted first: connections, caches and the interpreter's
            # specialised code warm, as in any phase's warm-up.
            _load(runner.load_command("switch", duration=options.warmup, warmup=0, **shape))
            out[window] = _window(net, runner, shape, workdir, part)
        out["exit_codes"] = net.stop()
    return out


def _window(
    net: Network,
    runner: Runner,
    shape: Mapping[str, Any],
    workdir: Path,
    part: int,
) -> dict[str, Any]:
    """Count one window: the driver connected, counting on, its load until drained,
    a dump, counting off, then the driver closes (``bench.load``'s handshake)."""
    pid = net.pid("switch")
    batches0 = net.switch_status()["journal"]["batches"]
    args = [*runner.load_command("switch", warmup=0, **shape), "--handshake"]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=python_env(),
    )
    try:
        _until(proc, HANDSHAKE_CONNECTED)
        _callgrind("--instr=on", pid)
        _go(proc)
        _until(proc, HANDSHAKE_DRAINED)
        _callgrind("--dump", pid)  # counts since the last dump, then starts again from 0
        _callgrind("--instr=off", pid)
        out, err = proc.communicate(b"\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    load = _driver_result(proc.returncode, out, err)
    batches = net.switch_status()["journal"]["batches"] - batches0
    instructions = dumped_instructions((workdir / f"{_OUT}.{pid}.{part}").read_text())
    answered = load["answered"]
    return {
        "instructions": instructions,
        "transactions": answered,
        "per_txn": round(instructions / answered) if answered else None,
        "commits_per_txn": round(batches / answered, 3) if answered else None,
        "tps": load["tps"],
        "sent": load["sent"],
        "answered": answered,
        "errors": load["errors"],
        "timeouts": load["timeouts"],
        "valid": load["valid"],
    }


def _load(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(args, capture_output=True, env=python_env(), timeout=600)
    return _driver_result(proc.returncode, proc.stdout, proc.stderr)


def _driver_result(returncode: int, out: bytes, err: bytes) -> dict[str, Any]:
    """The load driver's JSON result; RuntimeError with its stderr when it failed."""
    if returncode != 0:
        raise RuntimeError(f"load driver failed ({returncode}): {err.decode()[-2000:]}")
    return dict(json.loads(out))


def _until(proc: subprocess.Popen[bytes], marker: str) -> None:
    """Read the driver's stderr up to ``marker``; RuntimeError if it ends first."""
    assert proc.stderr is not None
    seen: list[str] = []
    while line := proc.stderr.readline().decode(errors="replace"):
        if line.rstrip("\n") == marker:
            return
        seen.append(line)
    proc.wait()
    raise RuntimeError(
        f"load driver ended ({proc.returncode}) before {marker!r}: {''.join(seen)[-2000:]}"
    )


def _go(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"\n")
    proc.stdin.flush()


def _callgrind(command: str, pid: int) -> None:
    proc = subprocess.run(
        ["callgrind_control", command, str(pid)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"callgrind_control {command} {pid} failed: {(proc.stderr or proc.stdout)[-500:]}"
        )
