"""``switch recon``: reconcile a business day of the journal with the networks' settlement files.

Parses, loads the config, calls :mod:`switch.recon_io` (reading, fixing,
cutover) and :mod:`switch.recon_report` (rendering). Exit codes: 0 clean,
1 breaks found (or totals out of balance), 2 error (bad usage, config,
unreadable journal or settlement file, issuer host unreachable for cutover).
"""

from __future__ import annotations

import datetime as dt
import io
import sys
from pathlib import Path

import click
import trio

from switch import recon_io, recon_report
from switch.cli_common import UsageError, config_option, json_option, load, write_output
from switch.config import Config
from switch.errors import SwitchError
from switch.journal import Journal
from switch.recon import IssuerRecord, parse_settlement
from switch.saf import SafStore
from switch.vault import Vault

__all__ = ["COMMANDS", "recon"]


def _settlement_paths(
    settlements: tuple[str, ...], networks: tuple[str, ...], config: Config
) -> dict[str, Path]:
    """``FILE`` (one network) or ``NETWORK=FILE`` pairs → network → path."""
    out: dict[str, Path] = {}
    for item in settlements:
        name, sep, path = item.partition("=")
        if not sep:
            if len(networks) != 1:
                raise UsageError(
                    "--settlement FILE needs exactly one --network; "
                    "with several networks write --settlement NETWORK=FILE"
                )
            name, path = networks[0], item
        if name not in config.issuers:
            raise UsageError(f"--settlement {item}: no issuer {name!r} in the config")
        out[name] = Path(path)
    return out


def _from_ledger(config: Config, network: str, day: dt.date) -> list[IssuerRecord] | None:
    """The settlement straight from the simulator's ledger (None: no simulator, no ledger)."""
    try:
        from simulators.ledger import Ledger
        from simulators.settlement import write_settlement
    except ImportError:
        return None
    sim = config.simulators.get(network)
    if sim is None or not sim.ledger.exists():
        return None
    ledger = Ledger.open(sim.ledger, Vault.ephemeral())  # reading needs no keys
    try:
        text = io.StringIO()
        write_settlement(ledger, day.isoformat(), text)
    finally:
        ledger.close()
    text.seek(0)
    return parse_settlement(text)


@click.command()
@config_option
@click.option(
    "--date",
    "day",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Business day to reconcile: the UTC date of the requests.",
)
@click.option(
    "--network",
    "-n",
    "networks",
    multiple=True,
    help="Issuer network (repeatable); default every issuer in the config.",
)
@click.option(
    "--settlement",
    "-s",
    "settlements",
    multiple=True,
    metavar="[NETWORK=]FILE",
    help="The network's settlement CSV (repeatable). Default: read the simulator's ledger.",
)
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Journal file; default switch.journal from the config.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the breaks to FILE: JSON when it ends in .json, else CSV.",
)
@click.option("--cutover", is_flag=True, help="Exchange totals with each issuer in 0500/0510.")
@click.option("--fix", is_flag=True, help="Queue the reversals the breaks call for into the SAF.")
@click.option("--yes", "-y", is_flag=True, help="With --fix: do not ask for confirmation.")
@json_option
def recon(
    config_path: Path,
    day: dt.datetime,
    networks: tuple[str, ...],
    settlements: tuple[str, ...],
    journal_path: Path | None,
    out: Path | None,
    cutover: bool,
    fix: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Reconcile one business day of the journal with the networks' settlement files.

    Every transaction that reached an issuer is classified: matched, or a
    break with both sides' outcomes and the action that fixes it. Totals per
    network and currency (fields 74-89, 97) are compared; --cutover also
    exchanges them with each issuer host in an 0500/0510.

    \b
    Exit codes: 0 clean, 1 breaks found, 2 error.
    \b
    Examples:
        switch recon --date 2024-05-01 --network visa --settlement visa-0501.csv
        switch recon --date 2024-05-01 -s visa=v.csv -s belkart=b.csv --out breaks.json
        switch recon --date 2024-05-01 --cutover
        switch recon --date 2024-05-01 --fix --yes
    """
    config = load(config_path)
    business_day = day.date()
    for name in networks:
        if name not in config.issuers:
            known = ", ".join(sorted(config.issuers)) or "none"
            raise UsageError(f"--network {name}: no such issuer in the config (known: {known})")
    paths = _settlement_paths(settlements, networks, config)
    selected = networks or (tuple(sorted(paths)) if paths else tuple(sorted(config.issuers)))
    journal_file = journal_path or config.switch.journal
    if not journal_file.exists():
        raise UsageError(f"no journal at {journal_file}")
    try:
        records: dict[str, list[IssuerRecord]] = {}
        for name in selected:
            if name in paths:
                records[name] = recon_io.read_settlement(paths[name])
                continue
            from_ledger = _from_ledger(config, name, business_day)
            if from_ledger is None:
                raise UsageError(f"no settlement for {name}: pass --settlement {name}=FILE")
            records[name] = from_ledger
        journal = Journal.open(journal_file)
        saf = SafStore.open(journal_file)
        try:
            report = recon_io.gather(journal, saf, business_day, records)
            if cutover:
                trio.run(lambda: recon_io.cutover(report, config, now=dt.datetime.now(dt.UTC)))
            fixable = [b for b in report.breaks if b.fix == "reverse"]
            if fix and fixable and _confirm(len(fixable), yes):
                fixed = recon_io.queue_fixes(
                    journal, saf, fixable, config, now=dt.datetime.now(dt.UTC)
                )
                report.fixed = [f.as_dict() for f in fixed]
                recon_io.kick_daemon(config)
        finally:
            saf.close()
            journal.close()
    except SwitchError as exc:
        raise UsageError(str(exc)) from None
    if out is not None:
        text = (
            recon_report.render_breaks_json(report.breaks)
            if out.suffix.lower() == ".json"
            else recon_report.render_breaks_csv(report.breaks)
        )
        write_output(out, text)
    click.echo(recon_report.render_json(report) if as_json else recon_report.render_table(report))
    sys.exit(report.exit_code)


def _confirm(count: int, yes: bool) -> bool:
    if yes:
        return True
    return click.confirm(f"Queue {count} reversal(s) into the SAF?", default=False, err=True)


COMMANDS = [recon]
