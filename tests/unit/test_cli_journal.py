"""``switch journal`` and ``switch journal show`` on a real journal file: what a
script reading their output can rely on."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from switch.cli import main
from switch.journal import Journal, Leg

TXN = "3f2a9c1e0b7d4a55"
T0 = 1_700_000_000_000_000


@pytest.fixture
def journal_file(tmp_path: Path) -> str:
    """A journal holding exactly one transaction."""
    path = tmp_path / "journal.db"
    journal = Journal.open(path)
    try:
        journal.write_batch(
            [
                Leg(txn_id=TXN, leg="acquirer_in", time_us=T0, mti="0100", amount=1000),
                Leg(txn_id=TXN, leg="acquirer_out", time_us=T0 + 1, response_code="00"),
            ]
        )
    finally:
        journal.close()
    return str(path)


def _journal(journal_file: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["journal", *args, "--journal", journal_file])


def _csv_header(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return next(csv.reader(io.StringIO(result.output)))


@pytest.mark.parametrize("legs", [[], ["--legs"]], ids=["transactions", "legs"])
def test_csv_header_is_the_same_with_and_without_rows(journal_file: str, legs: list[str]) -> None:
    some = _csv_header(_journal(journal_file, "--csv", *legs))
    none = _csv_header(_journal(journal_file, "--csv", "--rc", "99", *legs))
    assert "txn_id" in some and "pan_enc" not in some
    assert none == some


@pytest.mark.parametrize("prefix", ["%", "_", "3f2a9c1e0b7d4a5_", "3f2a%"])
def test_show_matches_a_prefix_literally_not_as_a_like_pattern(
    journal_file: str, prefix: str
) -> None:
    result = _journal(journal_file, "show", prefix)
    assert result.exit_code == 1, result.output
    assert f"no transaction {prefix!r}" in result.output


def test_show_still_finds_a_transaction_by_a_unique_prefix(journal_file: str) -> None:
    result = _journal(journal_file, "show", TXN[:6].upper())
    assert result.exit_code == 0, result.output
    assert f"transaction {TXN}" in result.output


def test_show_refuses_an_empty_prefix_instead_of_matching_everything(journal_file: str) -> None:
    result = _journal(journal_file, "show", "")
    assert result.exit_code == 2, result.output
    assert "give a transaction id" in result.output
