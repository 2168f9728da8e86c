"""``switch sim ...`` as an operator runs it: settlement files, and real processes."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import specs
from simulators.issuer import Issuer
from simulators.security import CAVV_LENGTH, verify_cavv
from switch import codec, launch
from switch.cli import main
from switch.config import load_config
from switch.framing import FrameDecoder, Framing, encode_frame
from switch.keys import KeyStore
from switch.vault import Vault

NETWORKS = {"visa": "2b", "mastercard": "2b", "belkart": "4a"}


def _write_config(tmp_path: Path, ports: dict[str, int]) -> Path:
    lines = ['[switch]\ntoken_key_file = "var/token.key"\nlog_level = "warning"\n']
    for name, port in ports.items():
        spec = "iso87ascii" if name == "gateway" else name
        framing = NETWORKS.get(name, "2b")
        lines.append(
            f'[simulators.{name}]\nspec = "{spec}"\nport = {port}\nframing = "{framing}"\n'
            f'ledger = "var/sim-{name}.db"\n'
        )
        if name == "gateway":
            lines.append('cardbook = "gateway-cards.toml"\n')
    (tmp_path / "gateway-cards.toml").write_text(
        '[[cards]]\npan = "4111111111111111"\nnetwork = "visa"\nexpiry = "3012"\n'
    )
    path = tmp_path / "switch.toml"
    path.write_text("\n".join(lines))
    return path


def test_settlement_command_writes_the_days_csv(tmp_path: Path) -> None:
    config_path = _write_config(tmp_path, {"visa": 0})
    config = load_config(config_path)
    issuer = Issuer(
        config.simulators["visa"], vault=Vault.load_or_create(config.switch.token_key_file)
    )
    when = dt.datetime(2025, 3, 1, 23, 59, 59, tzinfo=dt.UTC)
    for stan, at in (("000001", when), ("000002", when + dt.timedelta(seconds=2))):
        issuer.on_request(
            {
                "t": "0100",
                "2": "4111111111111111",
                "3": "000000",
                "4": "000000001000",
                "7": "0301235959",
                "11": stan,
                "37": "506023" + stan,
                "41": "TERM0001",
                "49": "933",
            },
            at,
        )
    issuer.close()
    out = tmp_path / "visa-2025-03-01.csv"
    args = ["sim", "settlement", "-n", "visa", "--date", "2025-03-01", "-c", str(config_path)]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["stan"] for r in rows] == ["000001"]  # the second is the next business day
    assert rows[0]["pan_masked"] == "411111******1111"
    assert "4111111111111111" not in out.read_text()
    to_stdout = CliRunner().invoke(main, args)
    assert to_stdout.exit_code == 0 and to_stdout.output == out.read_text()
    nowhere = tmp_path / "nowhere" / "visa.csv"
    unwritable = CliRunner().invoke(main, [*args, "--out", str(nowhere)])
    assert unwritable.exit_code == 2
    assert f"Error: cannot write {nowhere}: No such file or directory" in unwritable.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "amex", "--date", "2025-03-01"], "no simulator named 'amex'"),
        (["-n", "visa", "--date", "2025-03-01"], "no ledger yet"),
    ],
)
def test_settlement_command_usage_errors_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    config_path = _write_config(tmp_path, {"visa": 0})
    result = CliRunner().invoke(main, ["sim", "settlement", *args, "-c", str(config_path)])
    assert result.exit_code == 2 and message in result.output


def _exchange(port: int, network: str, message: dict[str, str]) -> dict[str, str]:
    spec, framing = specs.load(network), Framing(kind=NETWORKS[network])
    decoder = FrameDecoder(framing)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode_frame(codec.encode(message, spec), framing))
        while True:
            data = sock.recv(65536)
            assert data
            frames = decoder.feed(data)
            if frames:
                return codec.decode(frames[0], spec)


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switch.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.e2e
def test_sim_all_serves_every_network_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    ports = {name: launch.free_port() for name in (*NETWORKS, "gateway")}
    config_path = _write_config(tmp_path, ports)
    proc = launch.start("sims", ["sim", "all", "-c", str(config_path)], log_dir=tmp_path)
    try:
        for port in ports.values():
            launch.wait_for_port("127.0.0.1", port, proc=proc.popen)
        for network in NETWORKS:
            echo = {"t": "0800", "7": "0301100000", "11": "000001", "70": "301"}
            assert _exchange(ports[network], network, echo)["39"] == "00"
        acquirer = ["sim", "acquirer", "--host", "127.0.0.1", "--port", str(ports["gateway"])]
        passing = _run_cli([*acquirer, "--mix", "echo=1", "--duration", "0.3"], tmp_path)
        assert passing.returncode == 0, passing.stdout + passing.stderr
        assert "PASS" in passing.stdout and "p99" in passing.stdout
        # The gateway simulator holds one Visa card: the other approvals come back 14.
        failing = _run_cli(
            [*acquirer, "--mix", "approve=1", "--duration", "0.3", "--seed", "1", "--json"],
            tmp_path,
        )
        assert failing.returncode == 1
        assert '"mismatches": 0' not in failing.stdout
    finally:
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(15) == 0, proc.log_text()
    assert "Traceback" not in proc.log_text()


def test_sim_cavv_prints_the_cavv_the_simulators_accept() -> None:

    result = CliRunner().invoke(
        main, ["sim", "cavv", "--pan", "4000000000000200", "--amount", "2500"]
    )
    assert result.exit_code == 0, result.output
    cavv = result.output.strip()
    assert len(cavv) == CAVV_LENGTH
    assert verify_cavv(cavv, "4000000000000200", "000000002500")
    assert not verify_cavv(cavv, "4000000000000200", "000000002501")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pan", "4000x", "--amount", "1"], "--pan: expected 12 to 19 digits"),
        (["--pan", "4000000000000200", "--amount", "12.50"], "--amount"),
    ],
)
def test_sim_cavv_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["sim", "cavv", *args])
    assert result.exit_code == 2 and message in result.output


def test_a_simulator_naming_a_key_its_store_lacks_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = bytes(range(32))
    monkeypatch.setenv("SWITCH_MASTER_KEY", master.hex())
    KeyStore.create(tmp_path / "var" / "sim-visa-keys.json", master)
    config_path = _write_config(tmp_path, {"visa": 0})
    config_path.write_text(
        config_path.read_text().replace(
            'ledger = "var/sim-visa.db"\n', 'ledger = "var/sim-visa.db"\npin_key = "visa-zpk"\n'
        )
    )
    result = CliRunner().invoke(main, ["sim", "issuer", "-n", "visa", "-c", str(config_path)])
    assert result.exit_code == 2
    assert "no key named visa-zpk" in result.output
    assert "Traceback" not in result.output


def test_a_simulator_tls_file_that_cannot_be_loaded_is_named_exit_2(tmp_path: Path) -> None:
    config_path = _write_config(tmp_path, {"visa": 0})
    config_path.write_text(
        config_path.read_text().replace(
            'ledger = "var/sim-visa.db"\n',
            'ledger = "var/sim-visa.db"\ntls_cert = "no.pem"\ntls_key = "no.key"\n',
        )
    )
    result = CliRunner().invoke(main, ["sim", "issuer", "-n", "visa", "-c", str(config_path)])
    assert result.exit_code == 2, result.output
    assert re.search(
        r"simulator visa: cannot load tls_cert .*no\.pem and tls_key .*no\.key: No such file",
        result.output,
    ), result.output
    assert "Traceback" not in result.output
