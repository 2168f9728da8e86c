"""The ``switch`` command: parse, load config, call the library -- no logic here.

Commands live beside the code they drive and are gathered here:
``switch.cli_wire`` (decode, encode), ``switch.cli_daemon`` (run, status,
link, saf), ``switch.cli_ops`` (demo, send, replay, journal, report),
``switch.cli_recon`` (recon), ``switch.cli_keys`` (keys), and
``simulators.cli`` (sim ...).
"""

from __future__ import annotations

import importlib

import click

from switch import __version__

__all__ = ["main"]

_COMMAND_MODULES = (
    "switch.cli_wire",
    "switch.cli_daemon",
    "switch.cli_ops",
    "switch.cli_recon",
    "switch.cli_keys",
    "switch.cli_bench",
    "simulators.cli",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="switch")
def main() -> None:
    """ISO 8583 acquiring switch: route, translate, relay, reverse and journal.

    \b
    Start everything on the embedded defaults and send sample traffic:
        switch demo
    """


for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _name:
            raise
        continue
    for _command in getattr(_module, "COMMANDS", ()):
        main.add_command(_command)


if __name__ == "__main__":
    main()
