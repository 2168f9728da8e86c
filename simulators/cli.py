"""``switch sim ...``: the issuer simulators, their settlement files, the traffic generator.

Parse, load config, call the library -- no logic here. Exit codes as for
every ``switch`` command (switch.cli_common): 0 success, 1 the generator saw
missing or mismatched answers, 2 a usage or configuration error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import trio

from simulators import acquirer, security, settlement
from simulators.issuer import serve
from simulators.ledger import Ledger
from switch.cli_common import (
    UsageError,
    config_option,
    echo_json,
    json_option,
    load,
    simulator_config,
)
from switch.config import Config, SimulatorConfig
from switch.errors import ConfigError, SecurityError
from switch.keys import KeyStore
from switch.server import setup_logging
from switch.vault import Vault

__all__ = ["COMMANDS", "run_simulators", "sim"]


@click.group()
def sim() -> None:
    """Issuer simulators (Visa, MasterCard, BELKART) and the acquirer traffic generator."""


def _network_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--network",
        "-n",
        required=True,
        help="Simulator name from [simulators.NAME] in the config (visa, mastercard, belkart).",
    )(func)


async def run_simulators(
    sims: Sequence[SimulatorConfig],
    vault: Vault,
    keys: Mapping[str, KeyStore | None] | None = None,
) -> None:
    """Run ``sims`` in one process until SIGINT/SIGTERM, then stop cleanly."""
    stores = keys or {}
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for config in sims:
                run_one = functools.partial(
                    serve, config, vault=vault, keys=stores.get(config.name)
                )
                port = await nursery.start(run_one)
                click.echo(f"simulator {config.name} listening on {config.host}:{port}")
            async for signum in signals:
                logging.getLogger("simulators").info("%s: stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _run(config: Config, sims: Sequence[SimulatorConfig]) -> None:
    setup_logging(config.switch.log_level)
    try:
        keys = {one.name: security.open_keys(one, config.security) for one in sims}
        vault = Vault.load_or_create(config.switch.token_key_file)
        trio.run(run_simulators, sims, vault, keys)
    except (ConfigError, SecurityError) as exc:
        raise UsageError(str(exc)) from None
    except BaseExceptionGroup as group:
        config_errors, _ = group.split(ConfigError)  # a TLS file serve could not load
        if config_errors is not None:
            raise UsageError(str(_first(config_errors))) from None
        bind_errors, rest = group.split(OSError)
        if bind_errors is None or rest is not None:
            raise
        raise click.ClickException(f"cannot listen: {_first(bind_errors)}") from None


def _first(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


@sim.command("issuer")
@_network_option
@click.option("--port", "-p", type=click.IntRange(0, 65535), help="Listen on this port instead.")
@config_option
def issuer_command(network: str, port: int | None, config_path: Path) -> None:
    """Run one issuer simulator (Ctrl-C or SIGTERM stops it)."""
    config = load(config_path)
    one = simulator_config(config, network)
    if port is not None:
        one = dataclasses.replace(one, port=port)
    _run(config, [one])


@sim.command("all")
@config_option
def all_command(config_path: Path) -> None:
    """Run every simulator of the config in one process (Ctrl-C or SIGTERM stops them)."""
    config = load(config_path)
    if not config.simulators:
        raise UsageError(f"{config_path}: no [simulators.NAME] tables")
    _run(config, list(config.simulators.values()))


@sim.command("settlement")
@_network_option
@click.option(
    "--date",
    "day",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Business day (UTC date of the requests), YYYY-MM-DD.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the CSV here (default: standard output).",
)
@config_option
def settlement_command(network: str, day: dt.datetime, out: Path | None, config_path: Path) -> None:
    """Write one business day of a simulator's ledger as the settlement CSV."""
    config = load(config_path)
    one = simulator_config(config, network)
    if not one.ledger.exists():
        raise UsageError(f"{one.ledger}: no ledger yet (has the {network} simulator run?)")
    ledger = Ledger.open(one.ledger, Vault.load_or_create(config.switch.token_key_file))
    try:
        if out is None:
            settlement.write_settlement(ledger, day.date().isoformat(), sys.stdout)
            return
        try:
            fh = out.open("w", newline="")
        except OSError as exc:
            raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
        with fh:
            rows = settlement.write_settlement(ledger, day.date().isoformat(), fh)
        click.echo(f"{rows} rows written to {out}", err=True)
    finally:
        ledger.close()


@sim.command("acquirer")
@click.option("--rate", type=float, help="Requests per second in total (omit: closed loop).")
@click.option("--duration", type=float, default=10.0, show_default=True, help="Seconds to send.")
@click.option("--connections", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--inflight",
    type=click.IntRange(1),
    help="Closed loop: requests outstanding at all times (default 2 per connection).",
)
@click.option(
    "--mix",
    help="Weights by kind, e.g. approve=60,decline=20,refund=5,reversal=10,echo=5,timeout=0.",
)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per answer.")
@click.option("--host", help="Switch host (default: the config's first listener).")
@click.option("--port", type=click.IntRange(1, 65535), help="Switch port (default: from config).")
@click.option("--seed", type=int, help="Seed the mix for a reproducible run.")
@config_option
@json_option
def acquirer_command(
    rate: float | None,
    duration: float,
    connections: int,
    inflight: int | None,
    mix: str | None,
    timeout: float,
    host: str | None,
    port: int | None,
    seed: int | None,
    config_path: Path,
    as_json: bool,
) -> None:
    """Send a realistic acquirer mix to the switch and check every answer.

    Exit 1 if any answer is missing (timeout) or does not match its request.
    """
    try:
        weights = acquirer.parse_mix(mix)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    framing = "2b"
    if host is None or port is None:
        listener = load(config_path).listeners[0]
        host = host or listener.host
        port = port or listener.port
        framing = listener.framing
    try:
        result = trio.run(
            functools.partial(
                acquirer.run_load,
                host,
                port,
                rate=rate,
                duration=duration,
                connections=connections,
                mix=weights,
                inflight=inflight,
                timeout=timeout,
                framing=framing,
                seed=seed,
            )
        )
    except OSError as exc:
        raise click.ClickException(f"cannot reach the switch at {host}:{port}: {exc}") from None
    summary = result.summary()
    if as_json:
        echo_json(summary)
    else:
        _print_summary(summary)
    if not result.ok:
        sys.exit(1)


@sim.command("cavv")
@click.option("--pan", required=True, help="The card number (a 3-D Secure enrolled test card).")
@click.option(
    "--amount", required=True, help="Amount in minor units, as it will be in F4 (e.g. 1000)."
)
def cavv_command(pan: str, amount: str) -> None:
    """Print the CAVV the simulators' ACS would issue for PAN and AMOUNT (for tests and demos).

    Put it in the acquirer's F48 tag AV (with EC = 05) of an e-commerce request.
    """
    if not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19):
        raise UsageError("--pan: expected 12 to 19 digits")
    try:
        click.echo(security.cavv_for(pan, amount))
    except ValueError as exc:
        raise UsageError(f"--amount: {exc}") from None


def _print_summary(summary: dict[str, Any]) -> None:
    lat = summary["latency_ms"]
    click.echo(
        f"sent {summary['sent']}  answered {summary['answered']}  timeouts {summary['timeouts']}  "
        f"mismatches {summary['mismatches']}  in {summary['elapsed_s']} s "
        f"({summary['rate_per_s']}/s)"
    )
    click.echo(f"latency ms: {lat}")
    click.echo(f"by response code: {summary['by_response_code']}")
    click.echo(f"by kind: {summary['by_kind']}")
    for line in summary["first_mismatches"]:
        click.echo(f"MISMATCH {line}")
    click.echo("PASS" if summary["ok"] else "FAIL")


COMMANDS = [sim]
