"""The bench result as text: absolute numbers, ratios to the baselines, the verdict."""

from __future__ import annotations

from typing import Any

from bench.run import TARGETS, target_checks
from switch.stages import STAGES

__all__ = ["render", "render_instructions", "render_paired", "render_rounds"]


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [_row(header, widths), *(_row(r, widths) for r in rows)]


def _busy(phase: dict[str, Any]) -> str:
    machine = phase.get("machine")
    if not machine:
        return "-"
    return f"{machine['busy_cores']:.2f} ({machine['outside_cores']:.2f})"


def _max_steal(result: dict[str, Any]) -> float:
    phases = [
        *result["closed"].values(),
        *(p for by in result["open"].values() for p in by.values()),
    ]
    return max(((p.get("machine") or {}).get("steal_ms_per_s", 0.0) for p in phases), default=0.0)


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    o = result["options"]
    lines = [
        f"switch bench: {m['cores']} cores ({m['cpu']}), Python {m['python']}, {m['system']};"
        " driver, target and simulator co-located on loopback",
        f"{o['connections']} connections; closed loop {o['inflight']} in flight;"
        f" {o['duration_s']:g} s per phase after {o['warmup_s']:g} s warm-up",
        *(
            ["pinned: each phase's target on a CPU of its own, everything else on the others"]
            if o.get("pin")
            else []
        ),
        "",
        "closed loop (maximum throughput)",
    ]
    rows = []
    for target in TARGETS:
        p = result["closed"][target]
        lat = p["latency_ms"]
        rows.append(
            [
                target,
                _num(p["tps"]),
                _num(lat["p50"], 2),
                _num(lat["p99"], 2),
                _num(p["cpu_us_per_txn"]),
                _num(p["rss_mib"]["peak"]),
                _busy(p),
                f"{p['errors']}/{p['timeouts']}",
            ]
        )
    lines += _table(
        ["target", "TPS", "p50 ms", "p99 ms", "CPU us/txn", "RSS MiB", "busy", "err/t-out"], rows
    )
    arrivals = o.get("arrivals", "even")
    lines += ["", f"open loop latency, ms (p50 / p95 / p99 / max); {arrivals} arrivals"]
    rows = []
    for rate, by in result["open"].items():
        for target in TARGETS:
            p = by[target]
            lat = p["latency_ms"]
            rows.append(
                [
                    f"{rate} TPS",
                    target,
                    " / ".join(_num(lat[k], 2) for k in ("p50", "p95", "p99", "max")),
                    _num(p["cpu_us_per_txn"]),
                    f"{_num(p.get('target_runq_wait_ms_per_s'))}"
                    f" / {_num(p.get('driver_runq_wait_ms_per_s'))}",
                    _busy(p),
                    f"{p['errors']}/{p['timeouts']}",
                ]
            )
    lines += _table(
        ["rate", "target", "latency", "CPU us/txn", "no core ms/s", "busy", "err/t-out"], rows
    )
    lines += [
        "  no core: ms of each second the target's / the driver's event loop was"
        " runnable but waited for a CPU (co-located processes contending)",
        f"  busy: cores of the {m['cores']} the machine kept busy during the phase"
        " (in brackets: outside the bench's own processes)",
    ]
    steal = _max_steal(result)
    if steal:
        lines += [
            f"  the hypervisor took up to {_num(steal)} ms per second from this machine (steal)"
        ]
    rows = []
    for rate, by in result["open"].items():
        stages = by["switch"].get("stages_ms")
        if stages:
            rows.append(
                [f"{rate} TPS"]
                + [
                    f"{_num(stages[name]['p50'], 2)} / {_num(stages[name]['p99'], 2)}"
                    for name in STAGES
                ]
            )
    if rows:
        lines += ["", "inside the switch, open loop, ms (p50 / p99 per stage; switch.stages)"]
        lines += _table(["rate", *STAGES], rows)
    lines += ["", "switch relative to the baselines (TPS: higher is better; CPU, p99: lower)"]
    rows = []
    for base in ("issuer", "relay"):
        r = result["ratios"][f"vs_{base}"]
        p99 = ", ".join(f"{rate}: {_num(v, 2)}x" for rate, v in r["p99_by_rate"].items())
        rows.append(
            [
                f"vs {base}",
                f"{_num(r['closed_loop_tps'], 2)}x",
                f"{_num(r['cpu_us_per_txn'], 2)}x",
                p99,
            ]
        )
    lines += _table(["", "TPS", "CPU/txn", "p99 by rate"], rows)
    if "curves" in result:
        lines += ["", "scale curves (switch, closed loop)"]
        lines += _table(
            ["connections", "in flight", "TPS", "p99 ms", "CPU us/txn", "valid"],
            [
                [
                    _num(c["connections"]),
                    _num(c["inflight"]),
                    _num(c["tps"]),
                    _num(c["p99_ms"], 2),
                    _num(c["cpu_us_per_txn"]),
                    "yes" if c["valid"] else "NO",
                ]
                for c in result["curves"]
            ],
        )
    j = result.get("journal", {})
    if j.get("transactions"):
        lines += [
            "",
            f"journal: {_num(j['bytes'])} bytes for {_num(j['transactions'])} transactions"
            f" = {_num(j['bytes_per_txn'])} B/txn, {_num(j['mib_per_million_txn'])} MiB"
            " per million transactions",
        ]
    if "soak" in result:
        s = result["soak"]
        lines += [
            "",
            f"soak: {s['rate']:g} TPS for {s['duration']:g} s,"
            f" p99 {_num(s['latency_ms']['p99'], 2)} ms,"
            f" switch RSS {s['rss_mib']['start']} -> {s['rss_mib']['end']} MiB;"
            f" growth {_num(s['rss_growth_pct'])} % after the first {s['table_fill_s']:g} s"
            " (the recent-transactions table filling),"
            f" {_num(s.get('rss_growth_with_fill_pct'))} % with them",
        ]
    lines += ["", *_verdict(result)]
    return "\n".join(lines)


def _verdict(result: dict[str, Any]) -> list[str]:
    out = ["targets (issue 8):"]
    for check in target_checks(result):
        if check["name"] == "rss_growth_pct_5min" and "soak" not in result:
            continue
        mark = {None: "n/a", True: "met", False: "NOT met"}[check["met"]]
        out.append(
            f"  {check['label']}: {_num(check['value'])}"
            f" (target {check['op']} {check['target']:g}) {mark}"
        )
    out.append(_validity(result))
    return out


def _validity(result: dict[str, Any]) -> str:
    if result["valid"]:
        return "run VALID: every request answered 00 in time, 0 errors, 0 timeouts"
    return "run INVALID: " + "; ".join(result["problems"])


_METRIC_NAMES = {
    "tps": "TPS",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "cpu_us_per_txn": "CPU us/txn",
}


def _phase_name(phase: str) -> str:
    return "closed loop" if phase == "closed" else f"open {phase} TPS"


def _versions_header(title: str, result: dict[str, Any], setting: str) -> list[str]:
    """The machine, how the versions ran, and each version's checkout and commit."""
    m = result["machine"]
    v = result["versions"]
    return [
        f"switch bench {title}: {m['cores']} cores ({m['cpu']}), Python {m['python']},"
        f" {m['system']}; {setting}",
        *(
            f"{name + ':':8s} {v[name]['root']} ({v[name]['commit'] or 'no git commit'})"
            for name in v
        ),
    ]


def render_paired(result: dict[str, Any]) -> str:
    """``switch bench --against``: medians per version and the rounds this one won."""
    o = result["options"]
    lines = [
        *_versions_header(
            "--against", result, "both versions' simulators and switch up at once, on loopback"
        ),
        f"{o['rounds']} rounds, the order alternating; {o['connections']} connections;"
        f" closed loop {o['inflight']} in flight; {o['duration_s']:g} s per phase after"
        f" {o['warmup_s']:g} s warm-up; {o['arrivals']} arrivals",
        "",
        "medians over the rounds (TPS: higher is better; the rest: lower)",
    ]
    rows = []
    for phase, by_metric in result["summary"].items():
        for i, (metric, s) in enumerate(by_metric.items()):
            rows.append(
                [
                    _phase_name(phase) if i == 0 else "",
                    _METRIC_NAMES[metric],
                    _num(s["this"], 2),
                    _num(s["against"], 2),
                    f"{s['this_better_in']} / {s['this_worse_in']} of {s['rounds']}",
                ]
            )
    lines += _table(["phase", "metric", "this", "against", "rounds this did better / worse"], rows)
    lines += ["", "p99 ms by round (this / against)"]
    for phase in result["summary"]:
        pairs = ", ".join(
            f"{_num(r['this'][phase]['p99_ms'], 2)}/{_num(r['against'][phase]['p99_ms'], 2)}"
            for r in result["rounds"]
        )
        lines.append(f"  {_phase_name(phase)}: {pairs}")
    lines += ["", _validity(result)]
    return "\n".join(lines)


def _spread_text(spread: dict[str, Any] | None, digits: int = 1) -> str:
    if spread is None:
        return "-"
    return (
        f"{_num(spread['median'], digits)}"
        f" [{_num(spread['min'], digits)} - {_num(spread['max'], digits)}]"
    )


def render_rounds(result: dict[str, Any]) -> str:
    """``switch bench --rounds N``: each round's numbers, their spread, targets met in k of N."""
    m = result["machine"]
    o = result["options"]
    rounds = result["rounds"]
    rates = list(result["summary"]["p99_ms_by_rate"])
    lines = [
        f"switch bench, {len(rounds)} rounds: {m['cores']} cores ({m['cpu']}),"
        f" Python {m['python']}, {m['system']}; each round a full run, every process"
        " started afresh",
        f"{o['connections']} connections; closed loop {o['inflight']} in flight;"
        f" {o['duration_s']:g} s per phase after {o['warmup_s']:g} s warm-up;"
        f" {o['arrivals']} arrivals",
        "",
    ]
    header = ["round", "issuer TPS", "switch TPS", "CPU us/txn"]
    header += [f"p99 ms @{rate}" for rate in rates]
    header += ["RSS growth %", "valid"]
    rows = []
    for number, row in enumerate(rounds, start=1):
        rows.append(
            [
                str(number),
                _num(row["issuer_closed_tps"]),
                _num(row["closed_loop_tps"]),
                _num(row["cpu_us_per_txn_closed"]),
                *(_num(row["p99_ms_by_rate"].get(rate), 2) for rate in rates),
                _num(row["rss_growth_pct"]),
                "yes" if row["valid"] else "NO",
            ]
        )
    lines += _table(header, rows)
    summary = result["summary"]
    lines += ["", "over the rounds: median [min - max]"]
    spread_rows = [
        ["issuer alone, closed-loop TPS", _spread_text(summary["issuer_closed_tps"])],
        ["switch, closed-loop TPS", _spread_text(summary["closed_loop_tps"])],
        ["switch CPU us/txn, closed loop", _spread_text(summary["cpu_us_per_txn_closed"])],
    ]
    for rate in rates:
        spread_rows.append(
            [f"switch p99 ms at {rate} TPS", _spread_text(summary["p99_ms_by_rate"][rate], 2)]
        )
        spread_rows.append(
            [
                f"switch CPU us/txn at {rate} TPS",
                _spread_text(summary["cpu_us_per_txn_by_rate"][rate]),
            ]
        )
    if summary["rss_growth_pct"] is not None:
        spread_rows.append(["switch RSS growth % (soak)", _spread_text(summary["rss_growth_pct"])])
    width = max(len(label) for label, _ in spread_rows)
    lines += [f"  {label.ljust(width)}  {value}" for label, value in spread_rows]
    lines += ["", f"targets (issue 8), rounds that met each of {len(rounds)}:"]
    for t in result["targets"]:
        counted = f"met in {t['met']} of {t['of']}" if t["of"] else "not measured"
        lines.append(f"  {t['label']} (target {t['op']} {t['target']:g}): {counted}")
    if result["valid"]:
        lines += [
            "",
            f"all {len(rounds)} rounds VALID: every request answered 00 in time,"
            " 0 errors, 0 timeouts",
        ]
    else:
        lines += ["", "rounds INVALID: " + "; ".join(result["problems"])]
    return "\n".join(lines)


def render_instructions(result: dict[str, Any]) -> str:
    """``switch bench --instructions``: each version's instructions per transaction."""
    o = result["options"]
    v = result["versions"]
    lines = [
        *_versions_header(
            "--instructions", result, "the switch under callgrind, counting only in each window"
        ),
        f"windows of {o['window_s']:g} s after an uncounted warm-up; alone: open loop at"
        f" {o['alone_rate']:g} TPS; batched: closed loop, {o['connections']} connections,"
        f" {o['inflight']} in flight",
        "",
        "instructions per transaction (the switch process's user space, all threads;"
        " the code path's work, not time)",
    ]
    rows = [
        [
            f"{name} {window}",
            _num(w["per_txn"]),
            _num(w["transactions"]),
            _num(w["commits_per_txn"], 3),
            _num(w["instructions"]),
        ]
        for name in v
        for window in ("alone", "batched")
        if (w := v[name][window])
    ]
    lines += _table(["version, window", "per txn", "txns", "commits/txn", "instructions"], rows)
    if "ratios" in result:
        r = result["ratios"]
        lines += [
            "",
            f"this / against: alone {_num(r['alone'], 4)}, batched {_num(r['batched'], 4)}"
            " (a count, not a timing: the same code repeats it within ~1% alone,"
            " ~10% batched; a slower version batches more, so judge by alone)",
        ]
    lines += ["", _validity(result)]
    return "\n".join(lines)
