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


@pytest.fixture
def journal_file(tmp_path: Path) -> str:
    from switch.journal import Journal

    path = tmp_path / "journal.db"
    Journal.open(path).close()
    return str(path)


def test_report_to_a_folder_that_does_not_exist_names_the_file(
    tmp_path: Path, journal_file: str
) -> None:
    out = tmp_path / "nowhere" / "report.html"
    result = _run("report", "--journal", journal_file, "--out", str(out), "--config", CONFIG)
    assert result.exit_code == 2, result.output
    assert f"Error: cannot write {out}: No such file or directory" in result.output


def _recon(journal_file: str, *args: str) -> Result:
    return _run("recon", "--date", "2024-05-01", "--journal", journal_file, *args, "-c", CONFIG)


def test_recon_breaks_to_a_folder_that_does_not_exist_names_the_file(
    tmp_path: Path, journal_file: str
) -> None:
    from switch.recon import SETTLEMENT_COLUMNS

    settlement = tmp_path / "visa.csv"
    settlement.write_text(",".join(SETTLEMENT_COLUMNS) + "\n")
    out = tmp_path / "nowhere" / "breaks.json"
    result = _recon(journal_file, "-s", f"visa={settlement}", "--out", str(out))
    assert result.exit_code == 2, result.output
    assert f"Error: cannot write {out}: No such file or directory" in result.output


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff\xfe\x00rrn", "not UTF-8 text"),
        (b"", "empty (no header line)"),
        (b"rrn,stan\n", "lacks column(s) auth_code"),
    ],
)
def test_recon_names_the_settlement_file_it_cannot_read(
    tmp_path: Path, journal_file: str, content: bytes, problem: str
) -> None:
    settlement = tmp_path / "visa.csv"
    settlement.write_bytes(content)
    result = _recon(journal_file, "-s", f"visa={settlement}")
    assert result.exit_code == 2, result.output
    assert f"Error: settlement file {settlement}: {problem}" in result.output


def test_run_with_a_log_file_it_cannot_open_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    config = tmp_path / "switch.toml"
    config.write_text('[switch]\nlog_file = "afile/switch.log"\n')
    result = _run("run", "--config", str(config))
    assert result.exit_code == 2, result.output
    assert f"Error: switch.log_file: cannot open {tmp_path / 'afile' / 'switch.log'}" in (
        result.output
    )


def test_run_with_a_tls_file_that_will_not_load_names_the_key_and_exits_2(tmp_path: Path) -> None:
    import logging

    config = tmp_path / "switch.toml"
    config.write_text(
        '[switch]\njournal = "var/journal.db"\n\n[[listeners]]\nport = 0\n'
        'tls_cert = "missing.pem"\ntls_key = "missing.key"\n'
    )
    root = logging.getLogger()
    saved = root.handlers[:], root.level  # `run` installs its own logging
    try:
        result = _run("run", "--config", str(config))
    finally:
        root.handlers[:], root.level = saved
    assert result.exit_code == 2, result.output  # a config key's file, as the simulators say
    assert "listener listener0: cannot load tls_cert" in result.output
    assert "Traceback" not in result.output


def test_the_log_files_folder_is_made_as_the_journals_is(tmp_path: Path) -> None:
    import logging

    from switch.server import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info", tmp_path / "var" / "log" / "switch.log")
        assert (tmp_path / "var" / "log" / "switch.log").exists()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = saved[0], saved[1]
