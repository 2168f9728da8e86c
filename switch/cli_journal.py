"""``switch journal`` and ``switch report``: the two commands that read the journal.

Presentation only: queries are switch.journal's, numbers are switch.report's.
Every row printed goes through :func:`safe_row` (no encrypted PAN, masked
form only). Exit codes: 0 success; 2 bad usage, or no journal where the
config says it is.

The one exception is ``switch journal reveal TXN``: it opens the AES-GCM
encrypted PAN of a transaction's issuer-out leg with the vault's data key
(switch.vault) and prints the clear PAN on standard output, nowhere else.
Each attempt, granted or refused, leaves an audit line (masked PAN, user,
UTC time) in the switch's log.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import getpass
import io
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from switch.cards import mask_pan
from switch.cli_common import (
    UsageError,
    config_option,
    echo_json,
    json_option,
    load,
    write_output,
)
from switch.config import Config
from switch.errors import ConfigError, SecurityError
from switch.journal import LEG_KINDS, STATES, Journal
from switch.logmask import MaskingFilter
from switch.messages import response_code_meaning
from switch.vault import Vault

__all__ = ["journal", "report", "reveal_pan", "table"]

_TIME_HELP = "ISO time (2024-05-01T10:00, naive = local), 15m / 2h / 7d ago, today, yesterday."


def _journal_option(func: Any) -> Any:
    return click.option(
        "--journal",
        "journal_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Journal file (default: switch.journal of the config).",
    )(func)


def _sub_config_option(func: Any) -> Any:
    """A subcommand's own --config, defaulting to the journal group's."""
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Path to switch.toml (default: the journal command's).",
    )(func)


def _open_journal(config_path: Path, journal_path: Path | None) -> Journal:
    path = journal_path or load(config_path).switch.journal
    if not path.exists():
        raise UsageError(
            f"no journal at {path}: has the switch run with this config? (switch.journal)"
        )
    return Journal.open(path)


def _time(text: str | None, option: str) -> int | None:
    from switch.report import parse_time

    if text is None:
        return None
    try:
        return parse_time(text, dt.datetime.now(dt.UTC))
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _local_time(us: int | None) -> str:
    if us is None:
        return "-"
    return dt.datetime.fromtimestamp(us / 1e6).astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Plain aligned columns; ``columns`` is (key, heading)."""
    cells = [[("" if r.get(k) is None else str(r.get(k))) for k, _ in columns] for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, (_, h) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True)).rstrip()]
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def safe_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A journal row fit for output: no encrypted PAN, masked form only."""
    out = {k: v for k, v in row.items() if k != "pan_enc"}
    if out.get("pan_masked"):
        out["pan_masked"] = mask_pan(str(out["pan_masked"]))  # idempotent on masked values
    return out


def _resolve(db: Journal, txn: str) -> str:
    """The one transaction ``txn`` names (an id or a unique prefix), or a ClickException.

    The prefix is matched literally: LIKE's wildcards in it are escaped (ids are
    hex today, but a journal may hold ids made otherwise), so ``%`` names nothing.
    """
    if not txn:
        raise UsageError("give a transaction id or a prefix of one")
    pattern = txn.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    matches = [
        r[0]
        for r in db.db.conn.execute(
            "select txn_id from transactions where txn_id like ? escape '\\' limit 2",
            (pattern,),
        )
    ]
    if not matches:
        raise click.ClickException(f"no transaction {txn!r} in {db.path}")
    if len(matches) > 1:
        raise UsageError(f"{txn!r} matches more than one transaction: give more of the id")
    return str(matches[0])


# -- journal ------------------------------------------------------------------------

_TXN_COLUMNS = (
    ("time", "time"),
    ("txn_id", "txn"),
    ("mti", "mti"),
    ("link", "network"),
    ("terminal", "terminal"),
    ("stan", "stan"),
    ("rrn", "rrn"),
    ("pan_masked", "card"),
    ("amount_shown", "amount"),
    ("response_code", "rc"),
    ("state", "state"),
    ("latency", "latency"),
)
_LEG_COLUMNS = (
    ("time", "time"),
    ("txn_id", "txn"),
    ("leg", "leg"),
    ("link", "link"),
    ("mti", "mti"),
    ("terminal", "terminal"),
    ("stan", "stan"),
    ("rrn", "rrn"),
    ("pan_masked", "card"),
    ("amount_shown", "amount"),
    ("response_code", "rc"),
    ("latency", "latency"),
    ("note", "note"),
)


def _decorate(row: Mapping[str, Any]) -> dict[str, Any]:
    from switch.report import format_amount

    out = safe_row(row)
    out["time"] = _local_time(row.get("created_us", row.get("time_us")))
    amount = row.get("amount")
    out["amount_shown"] = (
        None if amount is None else format_amount(int(amount), row.get("currency"))
    )
    latency = row.get("latency_us")
    out["latency"] = None if latency is None else f"{latency / 1000:.1f} ms"
    return out


def _emit_csv(rows: Sequence[Mapping[str, Any]], db_columns: Sequence[str]) -> None:
    """Safe rows as CSV; with no rows, the header they would have had (same for scripts)."""
    safe = [safe_row(r) for r in rows]
    names = list(safe[0] if safe else safe_row(dict.fromkeys(db_columns)))
    click.echo(_csv(safe, names), nl=False)


def _emit(
    rows: list[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    fmt: str,
    db_columns: Sequence[str],
) -> None:
    if fmt == "json":
        echo_json([safe_row(r) for r in rows])
    elif fmt == "csv":
        _emit_csv(rows, db_columns)
    elif rows:
        click.echo(table([_decorate(r) for r in rows], columns))


@click.group(invoke_without_command=True)
@click.option("--rrn", default=None, help="Retrieval reference number (F37).")
@click.option("--stan", default=None, help="The acquirer's STAN (F11).")
@click.option("--terminal", default=None, help="Terminal id (F41).")
@click.option("--merchant", default=None, help="Merchant id (F42).")
@click.option("--pan", default=None, help="Masked PAN as shown, e.g. 411111******1111.")
@click.option("--token", default=None, help="PAN token (keyed HMAC, from another row).")
@click.option("--rc", "response_code", default=None, help="Response code (F39), e.g. 51.")
@click.option("--state", type=click.Choice(STATES), default=None, help="Transaction state.")
@click.option("--network", "link", default=None, help="Issuer link name, e.g. visa.")
@click.option("--since", default=None, help=f"From this time. {_TIME_HELP}")
@click.option("--until", default=None, help="Up to (not including) this time.")
@click.option("--legs", "show_legs", is_flag=True, help="Every leg of the matching transactions.")
@click.option(
    "--leg",
    "leg_kind",
    type=click.Choice(LEG_KINDS),
    default=None,
    help="Only the legs of this kind (implies --legs).",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="Most rows, newest first.",
)
@_journal_option
@config_option
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="CSV output.")
@click.pass_context
def journal(
    ctx: click.Context,
    rrn: str | None,
    stan: str | None,
    terminal: str | None,
    merchant: str | None,
    pan: str | None,
    token: str | None,
    response_code: str | None,
    state: str | None,
    link: str | None,
    since: str | None,
    until: str | None,
    show_legs: bool,
    leg_kind: str | None,
    limit: int,
    journal_path: Path | None,
    config_path: Path,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Find transactions (or legs) in the journal; `journal show TXN` for one in full.

    Filters combine with AND. A clear PAN given to --pan is masked first:
    the journal only knows the masked form and the token.

    \b
    Example:
        switch journal --pan 411111******1111 --since 1h
        switch journal --rc 91 --json
        switch journal show 3f2a9c1e0b7d4a55
    """
    ctx.ensure_object(dict)
    ctx.obj.update(
        config_path=config_path, journal_path=journal_path, as_json=as_json, as_csv=as_csv
    )
    if ctx.invoked_subcommand is not None:
        return
    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    filters: dict[str, Any] = {
        "rrn": rrn,
        "stan": stan,
        "terminal": terminal,
        "merchant": merchant,
        "pan_masked": None if pan is None else mask_pan(pan),
        "pan_token": token,
        "response_code": response_code,
        "link": link,
        "since_us": _time(since, "--since"),
        "until_us": _time(until, "--until"),
    }
    fmt = "json" if as_json else "csv" if as_csv else "table"
    db = _open_journal(config_path, journal_path)
    try:
        txns = db.find_transactions(limit=limit, state=state, **filters)
        if show_legs or leg_kind:
            # The filters name the transaction (the acquirer's STAN, not the switch's
            # issuer-side one): show every leg of each, oldest transaction first.
            rows = [
                leg
                for txn in reversed(txns)
                for leg in db.legs_of(txn["txn_id"])
                if leg_kind is None or leg["leg"] == leg_kind
            ]
            _emit(rows, _LEG_COLUMNS, fmt, db.columns("legs"))
        else:
            rows = txns
            _emit(rows, _TXN_COLUMNS, fmt, db.columns("transactions"))
    finally:
        db.close()
    if fmt == "table":
        what = "legs of " if show_legs or leg_kind else ""
        click.echo(
            f"{len(rows) if what else ''}{' ' if what else ''}{what}{len(txns)} transactions"
            + (f" (limit {limit}; --limit for more)" if len(txns) == limit else ""),
            err=not rows,
        )


@journal.command("show")
@click.argument("txn")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="CSV output (the legs).")
@_journal_option
@_sub_config_option
@click.pass_context
def journal_show(
    ctx: click.Context,
    txn: str,
    as_json: bool,
    as_csv: bool,
    journal_path: Path | None,
    config_path: Path | None,
) -> None:
    """Every leg of one transaction, with the time each took.

    TXN is a transaction id or a unique prefix of one.

    \b
    Example:
        switch journal show 3f2a9c1e
        switch journal show 3f2a9c1e0b7d4a55 --json
    """
    opts = ctx.obj
    as_json = as_json or opts["as_json"]
    as_csv = as_csv or opts["as_csv"]
    db = _open_journal(config_path or opts["config_path"], journal_path or opts["journal_path"])
    try:
        txn_id = _resolve(db, txn)
        row = db.transaction(txn_id)
        assert row is not None
        legs = db.legs_of(txn_id)
        leg_columns = db.columns("legs")
        related = [
            db.transaction(other)
            for other in (row.get("original_txn"), row.get("reversed_by"))
            if other and other != row["txn_id"]
        ]
    finally:
        db.close()
    if as_json:
        echo_json({"transaction": safe_row(row), "legs": [safe_row(leg) for leg in legs]})
        return
    if as_csv:
        _emit_csv(legs, leg_columns)
        return
    shown = _decorate(row)
    rc = row.get("response_code")
    click.echo(
        f"transaction {row['txn_id']}  {row.get('mti')}  {shown['pan_masked'] or '-'}  "
        f"{shown['amount_shown'] or '-'}  network {row.get('link') or '(switch)'}\n"
        f"state {row.get('state')}  rc {rc or '-'}"
        + (f" {response_code_meaning(rc)}" if rc else "")
        + f"  auth {row.get('auth_code') or '-'}  latency {shown['latency'] or '-'}\n"
        f"acquirer F41 {row.get('terminal')} F42 {row.get('merchant')} F11 {row.get('stan')} "
        f"F37 {row.get('rrn')} F7 {row.get('f7')}; issuer F11 {row.get('issuer_stan') or '-'} "
        f"F7 {row.get('issuer_f7') or '-'}"
    )
    for other in related:
        if other is not None:
            relation = "reverses" if other["txn_id"] == row.get("original_txn") else "reversed by"
            click.echo(f"{relation} {other['txn_id']} ({other.get('mti')}, {other.get('state')})")
    if not legs:
        return
    start = legs[0]["time_us"]
    prev = start
    out = []
    for leg in legs:
        out.append(
            {
                **_decorate(leg),
                "at": f"+{(leg['time_us'] - start) / 1000:.1f} ms",
                "step": f"{(leg['time_us'] - prev) / 1000:.1f} ms",
            }
        )
        prev = leg["time_us"]
    click.echo("")
    click.echo(
        table(
            out,
            [
                ("at", "at"),
                ("step", "step"),
                ("leg", "leg"),
                ("link", "link"),
                ("mti", "mti"),
                ("stan", "stan"),
                ("rrn", "rrn"),
                ("amount_shown", "amount"),
                ("response_code", "rc"),
                ("auth_code", "auth"),
                ("state", "state"),
                ("note", "note"),
            ],
        )
    )


# -- journal reveal -----------------------------------------------------------------

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as switch.server's


def reveal_pan(db: Journal, vault: Vault, txn_id: str) -> tuple[str, str]:
    """The masked and the clear PAN of transaction ``txn_id``, from its issuer-out leg.

    SecurityError (never holding a value) when no leg carries an encrypted
    PAN, when it does not open under the vault's data key, or when what opens
    is not the card the journal shows for the transaction.
    """
    encrypted = [leg for leg in db.legs_of(txn_id) if leg["leg"] == "issuer_out" and leg["pan_enc"]]
    if not encrypted:
        raise SecurityError(
            f"transaction {txn_id} has no encrypted PAN (it never reached an issuer)"
        )
    leg = encrypted[-1]
    pan = vault.decrypt_pan(leg["pan_enc"])
    shown = leg.get("pan_masked") or (db.transaction(txn_id) or {}).get("pan_masked")
    if shown and mask_pan(pan) != shown:
        raise SecurityError(f"transaction {txn_id}: the encrypted PAN is not the card journaled")
    return mask_pan(pan), pan


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = "?"
    sudo = os.environ.get("SUDO_USER")
    return f"{user} (uid {os.getuid()}{f', sudo by {sudo}' if sudo else ''})"


def _audit(config: Config, level: int, text: str) -> None:
    """One line in the switch's log (its file, else standard error), through the PAN mask.

    ClickException when the line cannot be written: no audit, no reveal.
    """
    log_file = config.switch.log_file
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    record = logging.LogRecord(
        "switch.audit", level, __file__, 0, f"{text} by {_who()} at {now}", None, None
    )
    try:
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = (
            logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
        )
    except OSError as exc:
        raise click.ClickException(f"cannot write the audit line to {log_file}: {exc}") from None
    handler.addFilter(MaskingFilter())
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    try:
        handler.handle(record)
    finally:
        handler.close()


@journal.command("reveal")
@click.argument("txn")
@click.option("--reason", default=None, help="Why (a chargeback case number...): for the audit.")
@_journal_option
@_sub_config_option
@click.pass_context
def journal_reveal(
    ctx: click.Context,
    txn: str,
    reason: str | None,
    journal_path: Path | None,
    config_path: Path | None,
) -> None:
    """Print the clear PAN of one transaction (chargebacks); every attempt is audited.

    TXN is a transaction id or a unique prefix of one. The PAN is kept only
    AES-GCM encrypted on the legs sent to an issuer; it opens with the data
    key of switch.token_key_file. The clear PAN goes to standard output and
    nowhere else; the log gets an audit line with the masked PAN, the user
    and the time. Exit 1 when the transaction is unknown, holds no encrypted
    PAN or the key does not open it; 2 when the key file is missing or bad.

    \b
    Example:
        switch journal reveal 3f2a9c1e --reason "chargeback CB-1042"
    """
    opts = ctx.obj
    config = load(config_path or opts["config_path"])
    why = f" ({reason})" if reason else ""

    def refuse(exc: click.ClickException) -> click.ClickException:
        with contextlib.suppress(click.ClickException):  # the refusal matters more
            _audit(config, logging.WARNING, f"reveal of {txn!r} refused: {exc.message}{why}")
        return exc

    key_file = config.switch.token_key_file
    if not key_file.exists():
        raise refuse(UsageError(f"no data key at {key_file} (switch.token_key_file)"))
    try:
        vault = Vault.load_or_create(key_file)
    except ConfigError as exc:
        raise refuse(UsageError(str(exc))) from None
    try:
        path = journal_path or opts["journal_path"] or config.switch.journal
        db = _open_journal(config_path or opts["config_path"], path)
    except click.ClickException as exc:
        raise refuse(exc) from None
    try:
        txn_id = _resolve(db, txn)
        masked, pan = reveal_pan(db, vault, txn_id)
    except SecurityError as exc:
        raise refuse(click.ClickException(str(exc))) from None
    except click.ClickException as exc:
        raise refuse(exc) from None
    finally:
        db.close()
    _audit(config, logging.WARNING, f"PAN {masked} of transaction {txn_id} revealed{why}")
    click.echo(pan)


# -- report -------------------------------------------------------------------------


@click.command()
@click.option(
    "--since", default=None, help=f"Start of the period (default: the whole journal). {_TIME_HELP}"
)
@click.option("--until", default=None, help="End of the period (not included).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "html"]),
    default=None,
    help="Output format (default: table, or html for an --out *.html).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
@_journal_option
@config_option
def report(
    since: str | None,
    until: str | None,
    fmt: str | None,
    out_path: Path | None,
    journal_path: Path | None,
    config_path: Path,
) -> None:
    """Traffic for a period: counts and amounts by network, merchant and response code.

    Also the approval rate and latency p50/p95/p99. The HTML format is one
    self-contained page with charts (transactions over time, latency
    histogram, response codes) to open in any browser or mail on.

    \b
    Example:
        switch report --since today
        switch report --since 7d --format html --out report.html
        switch report --since 2024-05-01 --until 2024-05-02 --format csv
    """
    from switch.report import gather, render_csv, render_json, render_table
    from switch.report_html import render_html

    since_us, until_us = _time(since, "--since"), _time(until, "--until")
    if fmt is None:
        fmt = (
            "html"
            if out_path is not None and out_path.suffix.lower() in (".html", ".htm")
            else "table"
        )
    db = _open_journal(config_path, journal_path)
    try:
        data = gather(db, since_us=since_us, until_us=until_us)
    finally:
        db.close()
    renderers = {
        "table": render_table,
        "csv": render_csv,
        "json": render_json,
        "html": render_html,
    }
    text = renderers[fmt](data)
    if out_path is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        write_output(out_path, text if text.endswith("\n") else text + "\n")
        click.echo(f"{fmt} report of {data.requests} requests written to {out_path}", err=True)
