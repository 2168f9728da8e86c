"""The vault's key file: created whole, once, private; the same keys for every reader."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from switch.errors import ConfigError, SecurityError
from switch.vault import Vault

PAN = "4111111111111111"


def test_processes_starting_together_all_get_the_same_whole_key_file(tmp_path: Path) -> None:
    path = tmp_path / "var" / "token.key"
    barrier = threading.Barrier(16)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            tokens.append(Vault.load_or_create(path).token(PAN))
        except BaseException as exc:  # a half-written file would show here
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(tokens) == 16 and len(set(tokens)) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["token.key"]  # no temporary left


def test_the_data_key_round_trips_a_pan_and_refuses_another_key(tmp_path: Path) -> None:
    vault = Vault.load_or_create(tmp_path / "token.key")
    blob = vault.encrypt_pan(PAN)
    assert PAN.encode() not in blob
    assert Vault.load_or_create(tmp_path / "token.key").decrypt_pan(blob) == PAN
    with pytest.raises(SecurityError):
        Vault.ephemeral().decrypt_pan(blob)
    assert "hidden" in repr(vault)


def test_a_damaged_key_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    path.write_text("not hex\n")
    with pytest.raises(ConfigError, match="two lines of 64 hex digits"):
        Vault.load_or_create(path)
