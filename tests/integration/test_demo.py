"""``switch demo`` end to end: real simulator and switch processes, a real verdict."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from switch.cli import main
from switch.config import load_config
from switch.journal import Journal
from switch.launch import free_port
from tests.integration.test_cli_ops import defaults_with

pytestmark = pytest.mark.e2e


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_sends_the_sample_gets_the_card_book_answers_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    port = free_port()
    sim_ports = {name: free_port() for name in ("visa", "mastercard", "belkart")}
    # The shipped defaults, on free ports, with a 1 s issuer timeout to keep the test short.
    config_path = defaults_with(tmp_path, listener_port=port, sim_ports=sim_ports, timeout=1.0)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["demo", "--config", str(config_path)])
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    out = result.output
    assert "every answer is the one the card book predicts" in out
    assert "MISMATCH" not in out
    assert "→ timed_out_reversed" in out and "→ reversed" in out
    assert re.search(r"^visa +51 +Insufficient funds +1$", out, flags=re.M)
    assert re.search(r"^\(switch\) +15 ", out, flags=re.M)
    assert re.search(r"latency p50 [\d.]+ ms, p99 [\d.]+ ms", out)
    assert "411111******1111" in out
    assert not re.search(r"\d{13,19}", out), "a clear PAN in the demo output"
    # everything stopped: nothing listens on the switch's port any more
    assert not _listening(port)
    assert elapsed < 30
    config = load_config(config_path)
    journal = Journal.open(config.switch.journal)
    try:
        states = journal.stats()["by_state"]
    finally:
        journal.close()
    assert states.get("timed_out_reversed") == 1 and states.get("in_flight", 0) == 0
