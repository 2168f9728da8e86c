"""``switch run`` and the operator commands that talk to a running daemon.

``run`` starts the daemon in the foreground; ``status``, ``link`` and ``saf``
speak to it over its admin socket (switch.admin). Exit codes: 0 success,
1 the daemon answered an error or is not running, 2 bad usage or config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import trio

from switch.admin import MAX_ID, AdminError, call
from switch.cli_common import UsageError, config_option, echo_json, json_option, load
from switch.errors import ConfigError, SwitchError

__all__ = ["COMMANDS"]


@click.command()
@config_option
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Override switch.log_level.",
)
def run(config_path: Path, log_level: str | None) -> None:
    """Run the switch daemon in the foreground until SIGTERM or Ctrl-C.

    \b
    Example:
        switch run --config switch.toml
    """
    from switch.server import run as run_server
    from switch.server import setup_logging

    config = load(config_path)
    try:
        setup_logging(log_level or config.switch.log_level, config.switch.log_file)
    except OSError as exc:
        raise UsageError(
            f"switch.log_file: cannot open {config.switch.log_file}: {exc.strerror or exc}"
        ) from None
    try:
        trio.run(run_server, config)
    except KeyboardInterrupt:
        pass
    except (OSError, SwitchError, BaseExceptionGroup) as exc:
        problem = _user_problem(exc)
        if problem is None:
            raise
        if isinstance(problem, ConfigError):  # a key whose file will not load: exit 2
            raise UsageError(f"cannot run the switch: {problem}") from None
        raise click.ClickException(f"cannot run the switch: {problem}") from None


def _user_problem(exc: BaseException) -> OSError | SwitchError | None:
    """The operator-facing cause (port in use, bad key store...) inside trio's exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _user_problem(inner)
            if found is not None:
                return found
        return None
    if isinstance(exc, OSError | SwitchError):
        return exc
    return None


def _admin(config_path: Path, request: dict[str, Any]) -> dict[str, Any]:
    config = load(config_path)
    try:
        return call(config.switch.admin_socket, request)
    except AdminError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@config_option
@json_option
def status(config_path: Path, as_json: bool) -> None:
    """Show the running switch: listeners, links, in-flight, SAF depth, TPS, and
    where a transaction's time goes inside it (per stage, since the start).

    \b
    Example:
        switch status --json
    """
    st = _admin(config_path, {"cmd": "status"})["status"]
    if as_json:
        echo_json(st)
        return
    click.echo(
        f"uptime {st['uptime_s']}s  in-flight {st['in_flight']}  "
        f"TPS(1m) {st['tps_1m']}  SAF depth {st['saf_depth']}  "
        f"journal committed {st['journal']['committed']} in {st['journal']['batches']} batches"
    )
    click.echo("\nlisteners:")
    for li in st["listeners"]:
        click.echo(
            f"  {li['name']:<12} {li['address']:<22} {li['spec']:<12} "
            f"connections {li['connections']}  accepted {li['accepted']}"
        )
    click.echo("\nissuer links:")
    for lk in st["links"]:
        click.echo(
            f"  {lk['name']:<12} {lk['state']:<11} {lk['endpoint'] or '-':<22} "
            f"in-flight {lk['in_flight']}  sent {lk['sent']}  timeouts {lk['timeouts']}  "
            f"late {lk['late']}  unmatched {lk['unmatched']}  "
            f"last error: {lk['last_error'] or '-'}"
        )
    if st.get("counters"):
        click.echo(
            "\ncounters: " + ", ".join(f"{k}={v}" for k, v in sorted(st["counters"].items()))
        )
    stages = st.get("stages_ms") or {}
    if any(row["count"] for row in stages.values()):
        click.echo("\ntime inside the switch since the start, ms (p50 / p99, count):")
        for name, row in stages.items():
            click.echo(f"  {name:<12} {row['p50']} / {row['p99']}  ({row['count']})")


@click.command()
@click.argument("action", type=click.Choice(["down", "up"]))
@click.argument("name")
@config_option
def link(action: str, name: str, config_path: Path) -> None:
    """Take an issuer link down (its requests answered 91 at once) or bring it back up.

    \b
    Example:
        switch link down visa
    """
    answer = _admin(config_path, {"cmd": "link", "name": name, "action": action})
    click.echo(f"link {name}: {answer['link']['state']}")


@click.group()
def saf() -> None:
    """Inspect and retry the store-and-forward queue of reversals."""


@saf.command("list")
@click.option(
    "--status",
    "entry_status",
    type=click.Choice(["pending", "done", "expired"]),
    default=None,
    help="Only entries in this state.",
)
@config_option
@json_option
def saf_list(entry_status: str | None, config_path: Path, as_json: bool) -> None:
    """List SAF entries (reversals waiting to reach an issuer).

    \b
    Example:
        switch saf list --status pending
    """
    entries = _admin(config_path, {"cmd": "saf_list", "status": entry_status})["entries"]
    if as_json:
        echo_json(entries)
        return
    if not entries:
        click.echo("SAF is empty")
    for e in entries:
        click.echo(
            f"{e['id']:>6} {e['status']:<8} {e['link']:<11} txn {e['txn_id']} "
            f"attempts {e['attempts']}  {e['reason']}  {e['last_error'] or ''}"
        )


@saf.command("retry")
@click.argument("entry_id", type=click.IntRange(1, MAX_ID), required=False)
@config_option
def saf_retry(entry_id: int | None, config_path: Path) -> None:
    """Make SAF entries due now (one by id, or all pending).

    Exit 1 when ENTRY_ID names no pending entry.

    \b
    Example:
        switch saf retry
    """
    answer = _admin(config_path, {"cmd": "saf_retry", "id": entry_id})
    click.echo(f"{answer['retried']} entr{'y' if answer['retried'] == 1 else 'ies'} retried")


COMMANDS = [run, status, link, saf]
