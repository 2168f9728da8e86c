"""``switch bench``: the switch against its baselines, in one run, on this machine.

Three targets get the same load from a separate driver process (bench.load):

    issuer  a Visa simulator, no switch (baseline a)
    relay   the frame relay (switch.relay) in front of that simulator (baseline b)
    switch  the switch, journal and write-ahead on, routing to its own simulators
            (so a saturated baseline never starves the switch's links)

For each: a closed loop (K in flight over N connections: the maximum TPS),
then an open loop at each rate (latency p50/p95/p99/max as the acquirer sees
it). Around each phase we read the target's CPU time and RSS from /proc, so
CPU per transaction is the kernel's accounting of that process divided by
the transactions it carried. A run is *valid* when every request of every
phase was answered 00 in time: numbers from an invalid run mean nothing.

``--against DIR`` (bench.paired) runs this checkout's switch against another
checkout's in paired rounds instead.

``--curves`` adds TPS and p99 against the switch versus connections
(1/10/100/1000) and in-flight depth, and journal bytes per million
transactions; ``--soak S`` an open-loop run of S seconds with the switch's
RSS sampled throughout (its growth is a target).
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import ARRIVALS, runq_wait_ms_per_s, runq_wait_s
from bench.procs import (
    PYTHON,
    Network,
    cpu_seconds,
    machine_cpu,
    machine_load,
    plan_pins,
    python_env,
    rss_kib,
)
from switch.config import SwitchSettings
from switch.recent import SLICES
from switch.stages import between, percentiles

__all__ = ["BenchOptions", "Phase", "Runner", "machine", "run_bench", "target_checks"]

TARGETS = ("issuer", "relay", "switch")
TARGETS_OF_ISSUE = {
    "closed_loop_tps": 2500.0,  # at least
    "p99_ms_at_1000": 10.0,  # at most
    "cpu_us_per_txn": 300.0,  # at most
    "rss_growth_pct_5min": 10.0,  # less than
}


def target_checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 8 against a run's result: name, label, the value,
    the comparison, the target and ``met`` (None where the run did not
    measure it: no 1000 TPS rate, no soak)."""
    sw = result["switch"]
    soak = result.get("soak")
    checks = [
        ("closed_loop_tps", "closed-loop TPS", sw["closed_loop_tps"], ">="),
        ("p99_ms_at_1000", "p99 at 1000 TPS, ms", sw["p99_ms_by_rate"].get("1000"), "<="),
        ("cpu_us_per_txn", "CPU us/txn (closed)", sw["cpu_us_per_txn_closed"], "<="),
        (
            "rss_growth_pct_5min",
            "RSS growth % (table full)",
            soak.get("rss_growth_pct") if soak else None,
            "<",
        ),
    ]
    out = []
    for name, label, value, op in checks:
        target = TARGETS_OF_ISSUE[name]
        met = None
        if value is not None:
            met = {">=": value >= target, "<=": value <= target, "<": value < target}[op]
        out.append(
            {"name": name, "label": label, "value": value, "op": op, "target": target, "met": met}
        )
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchOptions:
    duration: float = 10.0
    warmup: float = 1.0
    rates: tuple[float, ...] = (500.0, 1000.0, 2000.0)
    arrivals: str = "even"  # open loop: bench.load.ARRIVALS
    connections: int = 10
    inflight: int = 64
    curves: bool = False
    curve_connections: tuple[int, ...] = (1, 10, 100, 1000)
    curve_inflight: tuple[int, ...] = (1, 4, 16, 64, 256)
    soak: float | None = None
    soak_rate: float = 1000.0
    workdir: Path | None = None
    pin: bool = False  # each phase's target on a CPU of its own (bench.procs.plan_pins)
    against: Path | None = None  # another checkout: paired rounds (bench.paired)
    rounds: int = 6  # paired rounds, each version once per round
    instructions: bool = False  # count the switch's instructions instead (bench.instructions)

    def __post_init__(self) -> None:
        if self.arrivals not in ARRIVALS:
            raise ValueError(
                f"arrivals must be one of {', '.join(ARRIVALS)}, not {self.arrivals!r}"
            )
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, not {self.rounds}")
        if self.against is not None and (self.curves or self.soak or self.pin):
            raise ValueError("--against compares two switches: not with --curves, --soak or --pin")
        if self.instructions and (self.curves or self.soak or self.pin):
            raise ValueError(
                "--instructions counts the switch's instructions:"
                " not with --curves, --soak or --pin"
            )

    def described(self) -> dict[str, Any]:
        """The options every result reports (under ``options``)."""
        return {
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "connections": self.connections,
            "inflight": self.inflight,
            "rates": list(self.rates),
            "arrivals": self.arrivals,
        }

    @classmethod
    def quick(cls, **overrides: Any) -> BenchOptions:
        """CI-sized: a few seconds per target, one low rate; proves the harness, not speed."""
        values: dict[str, Any] = {
            "duration": 1.5,
            "warmup": 0.3,
            "rates": (200.0,),
            "connections": 4,
            "inflight": 16,
        }
        values.update(overrides)
        return cls(**values)


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


@dataclass(slots=True)
class Phase:
    """One load run against one target, with that target's /proc readings."""

    target: str
    load: dict[str, Any]
    cpu_s: float
    rss_kib_start: int
    rss_kib_end: int
    rss_kib_peak: int
    rss_samples_kib: list[int] = field(default_factory=list)
    runq_wait_ms_per_s: float | None = None  # the target's event loop (load.runq_wait_s)
    stages_ms: dict[str, Any] | None = None  # the switch's own split (switch.stages)
    machine: dict[str, float] | None = None  # the whole machine meanwhile (procs.machine_load)

    @property
    def cpu_us_per_txn(self) -> float | None:
        answered = self.load.get("answered", 0)
        return round(self.cpu_s / answered * 1e6, 1) if answered else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            **self.load,
            "target_cpu_s": round(self.cpu_s, 3),
            "cpu_us_per_txn": self.cpu_us_per_txn,
            "target_runq_wait_ms_per_s": self.runq_wait_ms_per_s,
            **({"stages_ms": self.stages_ms} if self.stages_ms is not None else {}),
            **({"machine": self.machine} if self.machine is not None else {}),
            "rss_mib": {
                "start": round(self.rss_kib_start / 1024, 1),
                "end": round(self.rss_kib_end / 1024, 1),
                "peak": round(self.rss_kib_peak / 1024, 1),
            },
        }


class Runner:
    def __init__(self, net: Network, options: BenchOptions, progress: Callable[[str], None]):
        self.net = net
        self.options = options
        self.progress = progress

    def _load_args(self, target: str) -> list[str]:
        if target == "switch":
            return ["--port", str(self.net.ports.listener), "--dialect", "acquirer"]
        port = self.net.ports.relay if target == "relay" else self.net.ports.baseline
        return ["--port", str(port), "--dialect", "issuer", "--spec", "visa"]

    def load_command(
        self,
        target: str,
        *,
        mode: str,
        connections: int,
        inflight: int = 1,
        rate: float = 0.0,
        duration: float | None = None,
        warmup: float | None = None,
    ) -> list[str]:
        """The load driver's command line for one phase against ``target``."""
        opts = self.options
        duration = opts.duration if duration is None else duration
        what = f"{inflight} in flight" if mode == "closed" else f"{rate:.0f} TPS"
        self.progress(f"{target}: {mode} loop, {connections} connection(s), {what}, {duration:g} s")
        return [
            PYTHON,
            "-m",
            "bench.load",
            *self._load_args(target),
            "--mode",
            mode,
            "--connections",
            str(connections),
            "--inflight",
            str(max(inflight, connections)),
            "--rate",
            str(rate),
            "--arrivals",
            opts.arrivals,
            "--duration",
            str(duration),
            "--warmup",
            str(opts.warmup if warmup is None else warmup),
        ]

    def phase(
        self,
        target: str,
        *,
        mode: str,
        connections: int,
        inflight: int = 1,
        rate: float = 0.0,
        duration: float | None = None,
        sample_every: float = 0.5,
    ) -> Phase:
        opts = self.options
        duration = opts.duration if duration is None else duration
        args = self.load_command(
            target,
            mode=mode,
            connections=connections,
            inflight=inflight,
            rate=rate,
            duration=duration,
        )
        process = "baseline" if target == "issuer" else target
        if opts.pin:
            driver_cpus = self.net.pin_for(process)
            args += ["--cpus", ",".join(str(cpu) for cpu in sorted(driver_cpus))]
        pid = self.net.pid(process)
        buckets0 = self.net.stage_buckets() if target == "switch" else None
        cpu0 = cpu_seconds(pid)
        machine0, bench0 = machine_cpu(), self.net.cpu_seconds() + _own_cpu_seconds()
        wait0, wall0 = runq_wait_s(pid), time.perf_counter()
        rss_start = rss_kib(pid)[0]
        samples: list[int] = []
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=python_env()
        )
        sampler = threading.Thread(
            target=_sample_rss, args=(pid, proc, samples, sample_every), daemon=True
        )
        sampler.start()
        out, err = proc.communicate(timeout=duration + opts.warmup + 120)
        sampler.join()
        cpu1 = cpu_seconds(pid)
        wall = time.perf_counter() - wall0
        wait = runq_wait_ms_per_s(wait0, runq_wait_s(pid), wall)
        machine = machine_load(
            machine0,
            machine_cpu(),
            wall,
            self.net.cpu_seconds() + _own_cpu_seconds() - bench0,
        )
        rss_end, rss_peak = rss_kib(pid)
        if proc.returncode != 0:
            raise RuntimeError(f"load driver failed ({proc.returncode}): {err.decode()[-2000:]}")
        return Phase(
            target=target,
            load=json.loads(out),
            cpu_s=cpu1 - cpu0,
            rss_kib_start=rss_start,
            rss_kib_end=rss_end,
            rss_kib_peak=rss_peak,
            rss_samples_kib=samples,
            runq_wait_ms_per_s=wait,
            machine=machine,
            stages_ms=None
            if buckets0 is None
            else percentiles(between(buckets0, self.net.stage_buckets()), (50, 99)),
        )


def _own_cpu_seconds() -> float:
    """CPU of this process (every thread) and of its children that have ended
    and been waited for: the load driver of a phase, once it has returned."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime


def _sample_rss(pid: int, proc: subprocess.Popen[bytes], out: list[int], every: float) -> None:
    while proc.poll() is None:
        try:
            out.append(rss_kib(pid)[0])
        except OSError:
            return
        time.sleep(every)  # sampling another process: nothing to wait on


def run_bench(
    options: BenchOptions, progress: Callable[[str], None] = lambda text: None
) -> dict[str, Any]:
    """Start everything, run every phase, stop everything; the result as plain data."""
    if options.pin:  # fail before starting anything on a 1-CPU machine
        plan_pins("switch", [], os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="switch-bench-") as tmp:
        workdir = options.workdir or Path(tmp)
        max_conn = max((*options.curve_connections, options.connections)) + 10
        net = Network(workdir, max_connections=max_conn)
        progress(f"starting simulators, switch and relay in {workdir}")
        with net:
            result = _run_phases(net, options, progress)
            codes = net.stop()
            size, txns = net.journal_bytes_per_txn()
        result["exit_codes"] = codes
        result["journal"] = {
            "bytes": size,
            "transactions": txns,
            "bytes_per_txn": round(size / txns, 1) if txns else None,
            "mib_per_million_txn": round(size / txns * 1e6 / 2**20, 1) if txns else None,
        }
        if any(code != 0 for code in codes.values()):
            result["valid"] = False
            result.setdefault("problems", []).append(f"a process did not exit 0: {codes}")
    return result


def _run_phases(
    net: Network, options: BenchOptions, progress: Callable[[str], None]
) -> dict[str, Any]:
    runner = Runner(net, options, progress)
    closed: dict[str, Phase] = {}
    opened: dict[str, dict[str, Phase]] = {}
    for target in TARGETS:
        closed[target] = runner.phase(
            target, mode="closed", connections=options.connections, inflight=options.inflight
        )
        for rate in options.rates:
            opened.setdefault(f"{rate:g}", {})[target] = runner.phase(
                target, mode="open", connections=options.connections, rate=rate
            )
    phases = [*closed.values(), *(p for by in opened.values() for p in by.values())]
    result: dict[str, Any] = {
        "machine": machine(),
        "options": {**options.described(), "pin": options.pin},
        "closed": {t: p.to_dict() for t, p in closed.items()},
        "open": {r: {t: p.to_dict() for t, p in by.items()} for r, by in opened.items()},
    }
    if options.curves:
        curves = _curves(runner, options)
        phases += curves
        result["curves"] = _curve_rows(curves)
    if options.soak:
        fill = _table_fill_seconds(options.soak_rate)
        soak = runner.phase(
            "switch",
            mode="open",
            connections=options.connections,
            rate=options.soak_rate,
            duration=fill + options.soak,
            sample_every=_SOAK_SAMPLE,
        )
        phases.append(soak)
        result["soak"] = {**soak.to_dict(), **_growth(soak, fill)}
    result["switch"] = _switch_summary(closed, opened)
    result["ratios"] = _ratios(closed, opened)
    problems = [
        f"{p.target} {p.load['mode']}: {p.load['errors']} errors, {p.load['timeouts']} timeouts,"
        f" {p.load['answered']}/{p.load['sent']} answered {p.load['error_examples'][:2]}"
        for p in phases
        if not p.load["valid"]
    ]
    result["valid"] = not problems
    result["problems"] = problems
    result["errors"] = sum(p.load["errors"] for p in phases)
    result["timeouts"] = sum(p.load["timeouts"] for p in phases)
    return result


def _curves(runner: Runner, options: BenchOptions) -> list[Phase]:
    phases = []
    for connections in options.curve_connections:
        phases.append(
            runner.phase(
                "switch",
                mode="closed",
                connections=connections,
                inflight=max(options.inflight, connections),
            )
        )
    for inflight in options.curve_inflight:
        phases.append(
            runner.phase(
                "switch", mode="closed", connections=options.connections, inflight=inflight
            )
        )
    return phases


def _curve_rows(phases: list[Phase]) -> list[dict[str, Any]]:
    return [
        {
            "connections": p.load["connections"],
            "inflight": p.load["inflight"],
            "tps": p.load["tps"],
            "p99_ms": p.load["latency_ms"]["p99"],
            "cpu_us_per_txn": p.cpu_us_per_txn,
            "valid": p.load["valid"],
        }
        for p in phases
    ]


_SOAK_SAMPLE = 5.0  # seconds between the soak's RSS samples


def _table_fill_seconds(rate: float) -> float:
    """Seconds at ``rate`` until the switch's recent-transactions table is full.

    The table keeps the last ``recent_window`` seconds of transactions for
    duplicate and reversal matching, at most ``recent_limit`` of them (the
    generated config leaves both at their defaults): memory the switch is
    meant to take, once, then keep flat. It holds up to one slice more than
    it finds (``switch.recent.SLICES``), so its memory is full that much
    later. The soak runs this long first, so its growth figure shows what
    keeps growing after that, as a leak would.
    """
    defaults = SwitchSettings()
    fill = min(defaults.recent_window, defaults.recent_limit / rate) * (1 + 1 / SLICES)
    return math.ceil(fill / _SOAK_SAMPLE) * _SOAK_SAMPLE


def _growth(phase: Phase, fill: float) -> dict[str, Any]:
    samples = phase.rss_samples_kib
    # Sample i is taken about i * _SOAK_SAMPLE seconds in (the driver starts
    # a moment later): the sample after the fill's is the base of the growth
    # the target is about.
    warm = int(fill // _SOAK_SAMPLE) + 1
    if len(samples) < 2:
        return {"rss_growth_pct": None, "rss_growth_with_fill_pct": None, "table_fill_s": fill}
    first, last = samples[0], samples[-1]
    after_fill = None
    if len(samples) >= warm + 2:  # at least two samples after the fill
        after_fill = round((last - samples[warm]) / samples[warm] * 100, 1)
    return {
        "rss_growth_pct": after_fill,
        "rss_growth_with_fill_pct": round((last - first) / first * 100, 1),
        "table_fill_s": fill,
        "rss_samples_mib": [round(s / 1024, 1) for s in samples],
    }


def _switch_summary(
    closed: dict[str, Phase], opened: dict[str, dict[str, Phase]]
) -> dict[str, Any]:
    switch_phases = [closed["switch"], *(by["switch"] for by in opened.values())]
    cpu = [p.cpu_us_per_txn for p in switch_phases if p.cpu_us_per_txn is not None]
    return {
        "closed_loop_tps": closed["switch"].load["tps"],
        "cpu_us_per_txn_closed": closed["switch"].cpu_us_per_txn,
        "cpu_us_per_txn_max": max(cpu) if cpu else None,
        "rss_mib_peak": round(max(p.rss_kib_peak for p in switch_phases) / 1024, 1),
        "p99_ms_by_rate": {r: by["switch"].load["latency_ms"]["p99"] for r, by in opened.items()},
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _ratios(closed: dict[str, Phase], opened: dict[str, dict[str, Phase]]) -> dict[str, Any]:
    """The switch divided by each baseline (TPS: higher is better; the rest: lower)."""
    sw = closed["switch"]
    out: dict[str, Any] = {}
    for base in ("issuer", "relay"):
        b = closed[base]
        out[f"vs_{base}"] = {
            "closed_loop_tps": _ratio(sw.load["tps"], b.load["tps"]),
            "cpu_us_per_txn": _ratio(sw.cpu_us_per_txn, b.cpu_us_per_txn),
            "p99_by_rate": {
                r: _ratio(
                    by["switch"].load["latency_ms"]["p99"], by[base].load["latency_ms"]["p99"]
                )
                for r, by in opened.items()
            },
        }
    return out
