"""Card security with real processes: keys set up only through ``switch keys``, then
``switch sim all`` and ``switch run`` verify PINs, sign every message on the Visa
link and exchange a new zone PIN key, as an operator would run them."""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from switch.cli import main
from switch.client import AcquirerClient, build_request
from switch.config import parse_config
from switch.keys import KeyStore
from switch.launch import start, wait_for_links, wait_for_port
from switch.pin import encode_pin_block
from tests.integration.test_daemon_processes import _to_toml, _write_config

pytestmark = pytest.mark.e2e

MASTER = secrets.token_hex(32)
PAN = "4111111111111111"


def _keys(config: Path, *args: str) -> Result:
    result = CliRunner().invoke(main, ["keys", *args, "--config", str(config)])
    assert result.exit_code == 0, result.output
    return result


def _secure_config(tmp_path: Path) -> tuple[Path, int]:
    path, port = _write_config(tmp_path, timeout=3.0)
    raw = tomllib.loads(path.read_text())
    raw["listeners"][0]["pin_key"] = "acquirer-zpk"
    link = {"pin_key": "visa-zpk", "mac_key": "visa-zak", "kek_key": "visa-kek"}
    raw["issuers"]["visa"].update(link)
    raw["simulators"]["visa"].update(link)
    path.write_text(_to_toml(raw))
    parse_config(tomllib.loads(path.read_text()), tmp_path)
    return path, port


def test_pin_mac_and_key_exchange_between_real_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCH_MASTER_KEY", MASTER)  # the commands and the child processes
    config, port = _secure_config(tmp_path)
    # The key ceremony: each side's store gets the same clear values (as from components).
    _keys(config, "init")
    _keys(config, "--simulator", "visa", "init")
    _keys(config, "generate", "acquirer-zpk", "--type", "zpk")
    shared = (("visa-zpk", "zpk", 16), ("visa-zak", "zak", 16), ("visa-kek", "kek", 32))
    for name, kind, length in shared:
        value = secrets.token_hex(length)
        for side in ((), ("--simulator", "visa")):
            _keys(config, *side, "import", name, "--type", kind, "--value", value)
    switch_store = KeyStore.open(tmp_path / "var" / "keys.json", bytes.fromhex(MASTER))
    acquirer_zpk = switch_store.get("acquirer-zpk")

    sims = start("sims", ["sim", "all", "--config", str(config)], log_dir=tmp_path)
    switch = start("switch", ["run", "--config", str(config)], log_dir=tmp_path)
    try:
        wait_for_port("127.0.0.1", port, proc=switch.popen)
        wait_for_links(tmp_path / "var" / "switch.sock")

        async def pin(client: AcquirerClient, digits: str) -> str:
            block = encode_pin_block(digits, PAN, acquirer_zpk)
            answer = await client.request(build_request(pan=PAN, amount=100, extra={"52": block}))
            assert answer is not None
            return answer["39"]

        async def traffic() -> list[str]:
            with trio.fail_after(30):
                client = await AcquirerClient.connect("127.0.0.1", port)
                async with trio.open_nursery() as nursery:
                    await nursery.start(client.run)
                    codes = [await pin(client, "1234"), await pin(client, "4321")]
                    await client.aclose()
                return codes

        assert trio.run(traffic) == ["00", "55"]  # MAC'd both ways, PIN checked by the issuer
        exchanged = _keys(config, "exchange", "visa")
        sim_store = KeyStore.open(tmp_path / "var" / "sim-visa-keys.json", bytes.fromhex(MASTER))
        assert sim_store.entry("visa-zpk").kcv in exchanged.output
        assert sim_store.entry("visa-zpk").version == 2
        assert trio.run(traffic) == ["00", "55"]  # under the new key
        assert switch.stop() == 0 and sims.stop() == 0
        logs = switch.log_text() + sims.log_text()
        assert PAN not in logs and "key exchange" in logs
    finally:
        switch.kill()
        sims.kill()
