"""Operator mistakes on the command line: a message naming the argument, exit 2, no traceback.

Every case here fails before any connection is made, so no network runs:
the commands load the shipped ``switch.toml`` (or a copy in tmp_path) and
stop at the bad argument.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from switch.cli import main

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "switch.toml")


def _run(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert not re.search(r"\d{13}", result.output), result.output  # no clear PAN
    return result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--amount", "-5"], "--amount: '-5' is not an amount like 10.00"),
        (["--amount", "NaN"], "--amount: 'NaN' is not an amount like 10.00"),
        (["--amount", "Infinity"], "--amount: 'Infinity' is not an amount like 10.00"),
        (["--amount", "1e30"], "--amount: '1e30' does not fit field 4 (12 digits of minor units)"),
        (["--amount", "1.005"], "--amount: '1.005' has more than 2 decimals for currency 933"),
        (["--amount", "1", "4=abc"], "cannot encode for iso87ascii: field 4"),
    ],
)
def test_send_refuses_what_cannot_be_sent_naming_it(args: list[str], message: str) -> None:
    result = _run("send", "--pan", "4111111111111111", *args, "--config", CONFIG, "--port", "1")
    assert result.exit_code == 2, result.output
    assert message in result.output
