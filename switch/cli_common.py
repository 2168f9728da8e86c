"""What every CLI module shares: the --config and --json options, config loading.

Exit codes (documented in README): 0 success; 1 the command ran and found a
problem (declines in a demo, mismatches in a replay, breaks in recon); 2 a
usage or configuration error (click's own convention).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from switch.config import Config, SimulatorConfig, load_config
from switch.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG",
    "UsageError",
    "config_option",
    "echo_json",
    "json_option",
    "load",
    "simulator_config",
    "write_output",
]

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_CONFIG = "switch.toml"


class UsageError(click.ClickException):
    """A user error: printed as 'Error: ...' with exit code 2."""

    exit_code = 2


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DEFAULT_CONFIG,
        show_default=True,
        envvar="SWITCH_CONFIG",
        help="Path to switch.toml.",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(
        func
    )


def load(config_path: Path) -> Config:
    """Load the config or exit 2 with the key path and the problem."""
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def simulator_config(config: Config, name: str) -> SimulatorConfig:
    """``[simulators.NAME]`` of the config, or exit 2 naming the ones it has."""
    try:
        return config.simulators[name]
    except KeyError:
        known = ", ".join(config.simulators) or "none"
        raise UsageError(f"no simulator named {name!r} in the config (known: {known})") from None


def write_output(path: Path, text: str) -> None:
    """Write an --out/--record file, or exit 2 naming it (a folder that does not exist...)."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))
