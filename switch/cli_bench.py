"""``switch bench`` and ``switch bench-relay``: parse options, call bench/, print.

The benchmark itself lives in the ``bench`` package beside ``switch`` (the
runner, the load driver, the report); the frame relay baseline is
``switch.relay``. Exit codes: 0 a valid run; 1 an invalid run (an error, a
timeout, an unanswered request, or a process that did not exit 0); 2 bad
usage.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from switch.cli_common import UsageError, echo_json, json_option

__all__ = ["COMMANDS"]


def _rates(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[float, ...]:
    if value is None:
        return ()
    try:
        rates = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected rates like 500,1000,2000, got {value!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise click.BadParameter("rates must be positive numbers")
    return rates


def _bench_modules() -> tuple[Any, Any]:
    """bench.run and bench.report (imported late: the benchmark is not the daemon's code)."""
    return importlib.import_module("bench.run"), importlib.import_module("bench.report")


@click.command()
@click.option("--duration", type=click.FloatRange(min=0.5), help="Seconds per phase [10].")
@click.option(
    "--rate", "rates", callback=_rates, help="Open-loop rates, comma-separated [500,1000,2000]."
)
@click.option(
    "--arrivals",
    type=click.Choice(["even", "poisson"]),
    help="Open loop: requests due evenly, or with exponential gaps as from many"
    " independent shops (seeded: the same every run) [even].",
)
@click.option("--connections", type=click.IntRange(min=1), help="Acquirer connections [10].")
@click.option(
    "--inflight", type=click.IntRange(min=1), help="Closed loop: requests in flight in total [64]."
)
@click.option("--quick", is_flag=True, help="CI-sized smoke run (seconds, low rate).")
@click.option("--curves", is_flag=True, help="Add scale curves: connections and in-flight depth.")
@click.option(
    "--soak",
    type=click.FloatRange(min=5),
    help="Add an open-loop run at 1000 TPS sampling the switch's RSS: this many seconds"
    " after the recent-transactions table is full (60 s more).",
)
@click.option(
    "--pin",
    is_flag=True,
    help="Give each phase's target a CPU of its own, the driver and simulators the"
    " others (needs 2 CPUs): its latency without waiting for a core.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the generated config, logs, journal and ledgers here.",
)
@click.option(
    "--against",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Another checkout of the switch (e.g. a git worktree of main): run both"
    " versions in paired rounds, the order alternating, and report medians and the"
    " rounds this one did better in (the switch only; --rate defaults to 1000, or"
    " to --quick's rate).",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    help="Full runs, each afresh, reported with their spread and each target met in"
    " k of N; with --against, paired rounds, each version once per round [6].",
)
@click.option(
    "--instructions",
    is_flag=True,
    help="Count the switch's instructions per transaction under valgrind's callgrind,"
    " alone (8 TPS) and batched (closed loop): the code path's work, repeated to ~1%"
    " alone and ~10% batched (with --against, for both versions). Needs valgrind.",
)
@json_option
def bench(
    duration: float | None,
    rates: tuple[float, ...],
    arrivals: str | None,
    connections: int | None,
    inflight: int | None,
    quick: bool,
    curves: bool,
    soak: float | None,
    pin: bool,
    workdir: Path | None,
    against: Path | None,
    rounds: int | None,
    instructions: bool,
    as_json: bool,
) -> None:
    """Measure the switch against two baselines on this machine.

    Starts the issuer simulators, the switch (journal and write-ahead on) and a
    frame relay as separate processes on free loopback ports, drives load from
    another process, and reports closed-loop TPS, open-loop latency at each
    rate, switch CPU per transaction and RSS, with ratios to (a) the issuer
    simulator alone and (b) the relay in the switch's place.

    With --instructions, the switch runs under valgrind's callgrind and the
    report is its instructions per transaction in two windows: alone (an open
    loop at 8 TPS) and batched (the closed loop). A count, not a timing: the
    same code repeats it alone to ~1%, where times here move by 10-20%.

    With --rounds N alone, N full runs one after the other, each starting
    every process afresh: each round's numbers, the median and range of each,
    and for each target the rounds that met it (times here move 10-20% from
    run to run; one run says little about a target).

    With --against DIR, another checkout of the switch: paired rounds, each
    starting both versions' simulators and switch afresh and running the
    closed loop and each --rate against one version then the other (the
    order alternating from round to round); the report gives each version's
    medians and the rounds this one did better and worse in.

    \b
    Examples:
        switch bench
        switch bench --quick --json
        switch bench --rate 1000 --duration 30 --connections 100 --inflight 256
        switch bench --curves --soak 300
        switch bench --pin --rate 1000
        switch bench --rate 1000 --arrivals poisson
        switch bench --duration 5 --rate 500,1000 --rounds 5
        switch bench --against ../main --rounds 8 --duration 8
        switch bench --instructions --against ../main
    """
    run_mod, report_mod = _bench_modules()
    if rounds is not None and instructions:
        raise UsageError("--instructions counts, it has no timed rounds: not with --rounds")
    if instructions and (rates or arrivals):
        raise UsageError("--instructions runs its own windows: not with --rate or --arrivals")
    if instructions:
        why = importlib.import_module("bench.instructions").callgrind_missing()
        if why is not None:
            raise UsageError(f"--instructions {why}")
    if against is not None and not rates and not quick:
        rates = (1000.0,)  # the open-loop rate of the p99 target
    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("duration", duration),
            ("rates", rates or None),
            ("arrivals", arrivals),
            ("connections", connections),
            ("inflight", inflight),
            ("curves", curves),
            ("soak", soak),
            ("pin", pin or None),
            ("workdir", workdir),
            ("against", against),
            ("rounds", rounds),
            ("instructions", instructions or None),
        )
        if value is not None
    }
    options_cls = run_mod.BenchOptions
    try:
        options = options_cls.quick(**overrides) if quick else options_cls(**overrides)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None

    def progress(text: str) -> None:
        click.echo(f"bench: {text}", err=True)

    if against is not None:
        try:
            importlib.import_module("bench.paired").check_checkout(against.resolve())
        except ValueError as exc:
            raise UsageError(f"--against: {exc}") from None
    run, render = run_mod.run_bench, report_mod.render
    if instructions:
        run = importlib.import_module("bench.instructions").run_instructions
        render = report_mod.render_instructions
    elif against is not None:
        run = importlib.import_module("bench.paired").run_paired
        render = report_mod.render_paired
    elif rounds is not None:
        run = importlib.import_module("bench.rounds").run_rounds
        render = report_mod.render_rounds
    try:
        result = run(options, progress)
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise click.ClickException(f"bench could not run: {exc}") from None
    if as_json:
        echo_json(result)
    else:
        click.echo(render(result))
    if not result["valid"]:
        sys.exit(1)


@click.command("bench-relay")
@click.option("--listen", type=click.IntRange(0, 65535), required=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--to", "upstream", required=True, help="Issuer HOST:PORT to forward to.")
@click.option("--framing", default="2b", show_default=True, help="Framing on both sides.")
def bench_relay(listen: int, host: str, upstream: str, framing: str) -> None:
    """Run the frame relay (the benchmark's baseline): forward frames, never decode.

    \b
    Example:
        switch bench-relay --listen 9200 --to 127.0.0.1:9101
    """
    from switch.relay import run

    up_host, _, up_port = upstream.rpartition(":")
    if not up_port.isdigit():
        raise UsageError(f"--to: expected HOST:PORT, got {upstream!r}")
    run((up_host or "127.0.0.1", int(up_port)), listen_port=listen, host=host, framing=framing)


COMMANDS = [bench, bench_relay]
