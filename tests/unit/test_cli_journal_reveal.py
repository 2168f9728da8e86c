"""``switch journal reveal TXN`` on a real journal file: the clear PAN on standard
output only, an audit line in the log, and a one-line refusal for everything else.

Assertions compare PANs through their token or masked form, so a failing test
never prints a card number.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from switch.cards import mask_pan
from switch.cli import main
from switch.journal import Journal, Leg
from switch.vault import Vault

PAN = "4111111111111111"
MASKED = mask_pan(PAN)
TXN = "3f2a9c1e0b7d4a55"
DECLINED_AT_SWITCH = "9d00aa11bb22cc33"
T0 = 1_700_000_000_000_000


def _write_config(folder: Path, *, log_file: str | None = "var/switch.log") -> Path:
    lines = ["[switch]", 'journal = "var/journal.db"', 'token_key_file = "var/token.key"']
    if log_file is not None:
        lines.append(f'log_file = "{log_file}"')
    path = folder / "switch.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault.load_or_create(tmp_path / "var" / "token.key")


@pytest.fixture
def config(tmp_path: Path, vault: Vault) -> Path:
    """A journal with an issuer-routed transaction and one the switch declined itself."""
    journal = Journal.open(tmp_path / "var" / "journal.db")
    card = {"pan_masked": MASKED, "pan_token": vault.token(PAN), "amount": 1000}
    try:
        journal.write_batch(
            [
                Leg(txn_id=TXN, leg="acquirer_in", time_us=T0, mti="0100", **card),
                Leg(
                    txn_id=TXN,
                    leg="issuer_out",
                    time_us=T0 + 1,
                    link="visa",
                    pan_enc=vault.encrypt_pan(PAN),
                    **card,
                ),
                Leg(txn_id=TXN, leg="issuer_in", time_us=T0 + 2, response_code="00"),
                Leg(txn_id=DECLINED_AT_SWITCH, leg="acquirer_in", time_us=T0, **card),
                Leg(
                    txn_id=DECLINED_AT_SWITCH,
                    leg="acquirer_out",
                    time_us=T0 + 1,
                    response_code="15",
                    state="declined",
                ),
            ]
        )
    finally:
        journal.close()
    return _write_config(tmp_path)


def _reveal(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["journal", "reveal", *args, "--config", str(config)])


def _audit_lines(config: Path) -> list[str]:
    return (config.parent / "var" / "switch.log").read_text().splitlines()


def _refused(result: Result, code: int) -> str:
    """The refusal's one line; it is a clean exit, not a traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ")
    return line


def test_reveal_prints_the_clear_pan_on_stdout_and_audits_the_masked_one(
    config: Path, vault: Vault
) -> None:
    result = _reveal(config, TXN, "--reason", "chargeback CB-1042")
    assert result.exit_code == 0, result.output
    [shown] = result.stdout.splitlines()
    assert vault.token(shown) == vault.token(PAN)
    [audit] = _audit_lines(config)
    assert f"PAN {MASKED} of transaction {TXN} revealed (chargeback CB-1042) by " in audit
    assert "switch.audit" in audit and "uid " in audit
    assert PAN not in audit and PAN not in result.stderr


def test_a_unique_prefix_names_the_transaction(config: Path, vault: Vault) -> None:
    result = _reveal(config, TXN[:6])
    assert result.exit_code == 0, result.output
    assert mask_pan(result.stdout.strip()) == MASKED
    assert TXN in _audit_lines(config)[0]


def test_an_unknown_transaction_is_refused_in_one_line(config: Path) -> None:
    line = _refused(_reveal(config, "nosuchtxn"), 1)
    assert "no transaction 'nosuchtxn'" in line
    [audit] = _audit_lines(config)
    assert "reveal of 'nosuchtxn' refused: no transaction" in audit


def test_a_transaction_that_never_reached_an_issuer_has_nothing_to_reveal(config: Path) -> None:
    line = _refused(_reveal(config, DECLINED_AT_SWITCH), 1)
    assert "has no encrypted PAN" in line
    assert "refused" in _audit_lines(config)[0]


def test_another_data_key_does_not_open_the_pan(config: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "var" / "token.key"
    key_file.unlink()
    Vault.load_or_create(key_file)  # new random keys: the journal's PAN no longer opens
    line = _refused(_reveal(config, TXN), 1)
    assert "does not open under this data key" in line
    assert "refused" in _audit_lines(config)[0]


def test_a_missing_or_malformed_key_file_is_refused_and_not_created(
    config: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / "var" / "token.key"
    key_file.unlink()
    assert "no data key at" in _refused(_reveal(config, TXN), 2)
    assert not key_file.exists()
    key_file.write_text("not hex\n")
    assert "expected two lines of 64 hex digits" in _refused(_reveal(config, TXN), 2)
    assert len(_audit_lines(config)) == 2


def test_a_missing_journal_is_refused(config: Path, tmp_path: Path) -> None:
    line = _refused(_reveal(config, TXN, "--journal", str(tmp_path / "none.db")), 2)
    assert "no journal at" in line


def test_without_a_log_file_the_audit_line_goes_to_stderr(tmp_path: Path, vault: Vault) -> None:
    config = _write_config(tmp_path, log_file=None)
    journal = Journal.open(tmp_path / "var" / "journal.db")
    try:
        journal.write_batch(
            [Leg(txn_id=TXN, leg="issuer_out", time_us=T0, pan_enc=vault.encrypt_pan(PAN))]
        )
    finally:
        journal.close()
    result = _reveal(config, TXN)
    assert result.exit_code == 0, result.output
    assert vault.token(result.stdout.strip()) == vault.token(PAN)
    assert "revealed by " in result.stderr and PAN not in result.stderr


def test_no_audit_no_reveal(config: Path, tmp_path: Path) -> None:
    (tmp_path / "var" / "switch.log").mkdir()  # the log cannot be written
    line = _refused(_reveal(config, TXN), 1)
    assert "cannot write the audit line" in line


def test_the_clear_pan_is_nowhere_on_disk_after_a_reveal(config: Path, tmp_path: Path) -> None:
    assert _reveal(config, TXN).exit_code == 0
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert PAN.encode() not in path.read_bytes(), f"clear PAN in {path.name}"
