"""``switch keys ...``: the key store from the command line (switch.keys does the work).

The store is ``security.keystore`` of the config, else ``var/keys.json`` beside
the config file; the master key comes from ``$SWITCH_MASTER_KEY`` (or the
variable ``security.master_key_env`` names), else ``security.master_key_file``,
else ``master.key`` beside the store. Output never holds a key value: names,
types, algorithms, versions and check values only.

Exit codes: 0 done; 2 a usage, configuration or key-store error (a bad KCV,
an unknown key, a missing or loose master key), printed as one line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from switch.cli_common import (
    UsageError,
    config_option,
    echo_json,
    json_option,
    load,
    simulator_config,
)
from switch.config import Config, SecurityConfig
from switch.errors import SecurityError
from switch.keys import KEY_TYPES, KeyEntry, KeyStore, load_master_key, master_key_path

__all__ = ["COMMANDS", "keys"]

_TYPES = click.Choice([*KEY_TYPES, "MAC", "ZMK"], case_sensitive=False)
_ALGORITHMS = click.Choice(["tdes2", "tdes3", "aes256"], case_sensitive=False)


def _simulator() -> str | None:
    """NAME of ``switch keys --simulator NAME``, or None for the switch's own store."""
    simulator: str | None = (click.get_current_context().find_object(dict) or {}).get("simulator")
    return simulator


def _security(config_path: Path) -> SecurityConfig:
    """The config's security table, with the store path defaulted beside the config.

    With ``switch keys --simulator NAME`` the store is that issuer simulator's
    own (``[simulators.NAME] keystore``), under the same master key.
    """
    config: Config = load(config_path)
    security = config.security
    simulator = _simulator()
    if simulator is not None:
        keystore = simulator_config(config, simulator).keystore
        return dataclasses.replace(security, keystore=keystore)
    if security.keystore is None:
        base = (config.source or config_path).resolve().parent
        security = dataclasses.replace(security, keystore=base / "var" / "keys.json")
    return security


@contextmanager
def _errors() -> Iterator[None]:
    """Key-store errors as one line and exit 2 (their text never holds a key value)."""
    try:
        yield
    except SecurityError as exc:
        raise UsageError(str(exc)) from None


def _open(config_path: Path) -> KeyStore:
    security = _security(config_path)
    assert security.keystore is not None
    simulator = _simulator()
    init = "switch keys init" if simulator is None else f"switch keys --simulator {simulator} init"
    with _errors():
        return KeyStore.open(security.keystore, load_master_key(security), init=init)


def _show(entry: KeyEntry, verb: str) -> None:
    click.echo(
        f"{verb} {entry.name}: {entry.type} {entry.algorithm} v{entry.version} KCV {entry.kcv}"
    )


@click.group()
@click.option(
    "--simulator",
    "-s",
    metavar="NAME",
    help="Work on issuer simulator NAME's own key store instead of the switch's.",
)
@click.pass_context
def keys(ctx: click.Context, simulator: str | None) -> None:
    """Manage the key store: PIN, MAC and key-encrypting keys (values never shown)."""
    ctx.obj = {"simulator": simulator}


@keys.command("init")
@config_option
def init(config_path: Path) -> None:
    """Create an empty key store, and a master key file (0600) if there is no master key."""
    security = _security(config_path)
    assert security.keystore is not None
    if not os.environ.get(security.master_key_env):
        path = master_key_path(security)
        assert path is not None
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            click.echo(f"wrote a new master key to {path} (mode 0600): back it up")
    with _errors():
        KeyStore.create(security.keystore, load_master_key(security))
    click.echo(f"created an empty key store at {security.keystore}")


@keys.command("list")
@config_option
@json_option
def list_keys(config_path: Path, as_json: bool) -> None:
    """Names, types, algorithms, versions and check values of the keys."""
    entries = _open(config_path).entries()
    if as_json:
        echo_json([entry.as_dict() for entry in entries])
        return
    if not entries:
        click.echo("no keys")
        return
    click.echo(f"{'NAME':<20} {'TYPE':<4} {'ALGORITHM':<9} {'VER':>3} {'KCV':<10} CREATED")
    for e in entries:
        line = f"{e.name:<20} {e.type:<4} {e.algorithm:<9} {e.version:>3} {e.kcv:<10} {e.created}"
        if e.previous_version is not None:
            line += f"  (v{e.previous_version} {e.previous_kcv} accepted until {e.previous_until})"
        click.echo(line)


@keys.command("generate")
@click.argument("name")
@click.option(
    "--type", "key_type", type=_TYPES, required=True, help="ZPK, ZAK (MAC), KEK (ZMK), DEK."
)
@click.option("--algorithm", type=_ALGORITHMS, help="Default: tdes2 (ZPK, ZAK), aes256 (KEK, DEK).")
@config_option
def generate(name: str, key_type: str, algorithm: str | None, config_path: Path) -> None:
    """Generate a random key NAME; prints its check value."""
    store = _open(config_path)
    with _errors():
        _show(store.generate(name, key_type, algorithm), "generated")


@keys.command("import")
@click.argument("name")
@click.option(
    "--type", "key_type", type=_TYPES, required=True, help="ZPK, ZAK (MAC), KEK (ZMK), DEK."
)
@click.option(
    "--value",
    prompt=True,
    hide_input=True,
    help="The key in hex (prompted, hidden, when not given: keeps it out of shell history).",
)
@click.option("--kcv", help="Its check value (4+ hex digits); the import fails on a mismatch.")
@click.option("--algorithm", type=_ALGORITHMS, help="Default: from the length (16 bytes: tdes2).")
@config_option
def import_key(
    name: str,
    key_type: str,
    value: str,
    kcv: str | None,
    algorithm: str | None,
    config_path: Path,
) -> None:
    """Import a clear key NAME received from a partner (check its KCV with --kcv)."""
    store = _open(config_path)
    with _errors():
        _show(store.import_key(name, key_type, value, kcv, algorithm=algorithm), "imported")


@keys.command("rotate")
@click.argument("name")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=24.0,
    show_default=True,
    help="Hours the previous version is still accepted on received messages.",
)
@config_option
def rotate(name: str, grace: float, config_path: Path) -> None:
    """Replace key NAME by a new random version; the old one is kept for --grace hours."""
    store = _open(config_path)
    with _errors():
        _show(store.rotate(name, grace=dt.timedelta(hours=grace)), "rotated")


def _admin(config_path: Path, request: dict[str, object]) -> dict[str, object]:
    from switch.admin import AdminError, call

    if _simulator():
        raise UsageError("--simulator: this command talks to the running switch, not a simulator")

    try:
        return call(load(config_path).switch.admin_socket, request, timeout=30.0)
    except AdminError as exc:
        raise click.ClickException(str(exc)) from None


@keys.command("exchange")
@click.argument("link")
@config_option
def exchange(link: str, config_path: Path) -> None:
    """Send issuer link LINK a new zone PIN key (0800, F70 = 161, TR-31 under its KEK).

    \b
    Example:
        switch keys exchange visa
    """
    answer = _admin(config_path, {"cmd": "key_exchange", "name": link})
    click.echo(f"link {link}: new zone PIN key acknowledged, KCV {answer['kcv']}")


@keys.command("reload")
@config_option
def reload(config_path: Path) -> None:
    """Make the running switch re-read the key store (after rotate or import).

    \b
    Example:
        switch keys rotate acquirer-zak && switch keys reload
    """
    _admin(config_path, {"cmd": "keys_reload"})
    click.echo("the switch re-read its key store")


COMMANDS = [keys]
