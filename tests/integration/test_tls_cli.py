"""``switch send`` and ``switch replay`` against a listener that speaks TLS.

As in test_cli_ops: a whole network in this trio loop (the listener with
``tls_cert``/``tls_key``, and ``tls_client_ca`` for mutual TLS, as
test_tls_listener_e2e builds it), the command in a worker thread through
click's CliRunner, with the shipped switch.toml given the same TLS keys. The
refusals must come back at once as one line naming the TLS reason (exit 1),
and a missing --tls-ca or a file that will not load as a usage error (exit 2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import trio
from click.testing import Result

from tests.integration.netfixture import Network, network
from tests.integration.pki import module_pki
from tests.integration.test_cli_ops import TRACES, _cli, defaults_with
from tests.integration.test_tls_listener_e2e import _tls_listener

pki = module_pki()
other_pki = module_pki("rogue")

SEND = ("send", "--pan", "4111111111111111", "--amount", "10.00")


def _tls_config(
    folder: Path, pki: dict[str, Path], *, port: int, sim_ports: dict[str, int], mutual: bool
) -> Path:
    """The shipped switch.toml with the network's ports and its listener's TLS keys."""
    path = defaults_with(folder, listener_port=port, sim_ports=sim_ports)
    text = path.read_text()
    assert text.count(f"port = {port}\n") == 1
    keys = f'tls_cert = "{pki["server_cert"]}"\ntls_key = "{pki["server_key"]}"\n'
    if mutual:
        keys += f'tls_client_ca = "{pki["ca_cert"]}"\n'
    path.write_text(text.replace(f"port = {port}\n", f"port = {port}\n{keys}"))
    return path


def _config(net: Network, folder: Path, pki: dict[str, Path], *, mutual: bool = False) -> Path:
    return _tls_config(folder, pki, port=net.port, sim_ports=net.sim_ports, mutual=mutual)


def _one_line_error(result: Result) -> str:
    [line] = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("Error: "), result.output
    return line


async def test_send_and_replay_over_tls_get_their_answers(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    trace = tmp_path / "small.jsonl"
    trace.write_text("".join(TRACES.joinpath("demo.jsonl").read_text().splitlines(True)[:3]))
    with trio.fail_after(30):
        async with network(tmp_path, tweak=_tls_listener(pki)) as net:
            config = _config(net, tmp_path, pki)
            ca = str(pki["ca_cert"])
            sent = await _cli(config, *SEND, "--tls-ca", ca, "--json")
            replayed = await _cli(config, "replay", str(trace), "--timing", "fast", "--tls-ca", ca)
            assert net.server.status()["listeners"][0]["tls"] is True
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.output)["response_code"] == "00"
    assert replayed.exit_code == 0, replayed.output
    assert "3 lines: 3 passed, 0 failed" in replayed.output


async def test_mutual_tls_answers_with_the_client_certificate_and_says_why_without(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    with trio.fail_after(30):
        async with network(tmp_path, tweak=_tls_listener(pki, client_ca=True)) as net:
            config = _config(net, tmp_path, pki, mutual=True)
            ca = ("--tls-ca", str(pki["ca_cert"]))
            mine = ("--tls-cert", str(pki["client_cert"]), "--tls-key", str(pki["client_key"]))
            with_cert = await _cli(config, *SEND, *ca, *mine, "--expect", "00")
            without = await _cli(config, *SEND, *ca)
            replay_without = await _cli(
                config, "replay", str(TRACES / "demo.jsonl"), "--timing", "fast", *ca
            )
    assert with_cert.exit_code == 0, with_cert.output
    assert re.search(r"^39 +Response Code +00 +Approved", with_cert.output, flags=re.M)
    # TLS 1.3 refuses after the handshake (an alert on the first read), TLS 1.2 in it.
    assert without.exit_code == 1, without.output
    line = _one_line_error(without)
    assert re.search(r"(?i)certificate|handshake", line), line
    assert "no answer within" not in without.output
    assert replay_without.exit_code == 1, replay_without.output
    assert "18 lines: 0 passed, 18 failed" in replay_without.output
    assert "listener gateway requires a client certificate" in replay_without.output


async def test_a_switch_certificate_from_another_ca_fails_the_handshake(
    tmp_path: Path, pki: dict[str, Path], other_pki: dict[str, Path]
) -> None:
    with trio.fail_after(30):
        async with network(tmp_path, tweak=_tls_listener(pki)) as net:
            config = _config(net, tmp_path, pki)
            result = await _cli(config, *SEND, "--tls-ca", str(other_pki["ca_cert"]))
    assert result.exit_code == 1, result.output
    line = _one_line_error(result)
    assert f"TLS handshake with the switch at 127.0.0.1:{net.port} failed" in line
    assert "CERTIFICATE_VERIFY_FAILED" in line


# -- usage errors: no switch needed, the command stops before it connects -------------


def _offline_config(tmp_path: Path, pki: dict[str, Path], *, mutual: bool = False) -> Path:
    sims = {"visa": 1, "mastercard": 2, "belkart": 3}
    return _tls_config(tmp_path, pki, port=9, sim_ports=sims, mutual=mutual)


async def test_a_tls_listener_without_tls_ca_is_a_usage_error(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    config = _offline_config(tmp_path, pki, mutual=True)
    with trio.fail_after(10):
        sent = await _cli(config, *SEND)
        replayed = await _cli(config, "replay", str(TRACES / "demo.jsonl"))
    for result in (sent, replayed):
        assert result.exit_code == 2, result.output
        line = _one_line_error(result)
        assert line.startswith("Error: listener gateway uses TLS: give --tls-ca FILE"), line
        assert "--tls-cert/--tls-key" in line


async def test_tls_files_that_will_not_load_are_named(tmp_path: Path, pki: dict[str, Path]) -> None:
    config = _offline_config(tmp_path, pki)
    missing = tmp_path / "missing-ca.pem"
    ca = ("--tls-ca", str(pki["ca_cert"]))
    with trio.fail_after(10):
        no_ca = await _cli(config, *SEND, "--tls-ca", str(missing))
        no_replay_ca = await _cli(
            config, "replay", str(TRACES / "demo.jsonl"), "--tls-ca", str(missing)
        )
        not_a_key = await _cli(
            config,
            *SEND,
            *ca,
            "--tls-cert",
            str(pki["client_cert"]),
            "--tls-key",
            str(pki["ca_cert"]),
        )
        half = await _cli(config, *SEND, *ca, "--tls-cert", str(pki["client_cert"]))
    for result in (no_ca, no_replay_ca):
        assert result.exit_code == 2, result.output
        assert f"cannot load --tls-ca {missing}: No such file or directory" in _one_line_error(
            result
        )
    assert not_a_key.exit_code == 2, not_a_key.output
    assert f"cannot load --tls-cert {pki['client_cert']} and --tls-key {pki['ca_cert']}" in (
        _one_line_error(not_a_key)
    )
    assert half.exit_code == 2
    assert _one_line_error(half) == "Error: --tls-cert and --tls-key go together"
