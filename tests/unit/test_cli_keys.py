"""``switch keys init|list|generate|import|rotate`` through click's CliRunner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from switch.cli import main
from switch.keys import KeyStore

KEY = "0123456789ABCDEFFEDCBA9876543210"
MASTER = "ab" * 32


def _run(config: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner(env={"SWITCH_MASTER_KEY": None, "SWITCH_CONFIG": None, **(env or {})})
    return runner.invoke(main, ["keys", *args[:1], "--config", str(config), *args[1:]])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "switch.toml"
    path.write_text("")
    return path


@pytest.fixture
def initialized(config: Path) -> Path:
    result = _run(config, "init")
    assert result.exit_code == 0, result.output
    return config


def test_init_makes_a_private_master_key_and_an_empty_store(config: Path) -> None:
    result = _run(config, "init")
    assert result.exit_code == 0, result.output
    master = config.parent / "var" / "master.key"
    assert master.stat().st_mode & 0o777 == 0o600
    assert (config.parent / "var" / "keys.json").exists()
    assert "back it up" in result.output
    assert master.read_text().strip() not in result.output
    again = _run(config, "init")
    assert again.exit_code == 2
    assert "already exists" in again.output and "Traceback" not in again.output


def test_init_uses_the_environment_master_key_when_set(config: Path) -> None:
    result = _run(config, "init", env={"SWITCH_MASTER_KEY": MASTER})
    assert result.exit_code == 0, result.output
    assert not (config.parent / "var" / "master.key").exists()
    KeyStore.open(config.parent / "var" / "keys.json", bytes.fromhex(MASTER))


def test_the_store_path_comes_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "switch.toml"
    config.write_text('[security]\nkeystore = "secrets/store.json"\n')
    assert _run(config, "init").exit_code == 0
    assert (tmp_path / "secrets" / "store.json").exists()
    assert (tmp_path / "secrets" / "master.key").exists()


def test_generate_then_list_shows_kcvs_never_values(initialized: Path) -> None:
    for args in (
        ("generate", "visa.zpk", "--type", "ZPK"),
        ("generate", "visa.zak", "--type", "mac"),
        ("generate", "visa.kek", "--type", "KEK", "--algorithm", "tdes3"),
    ):
        result = _run(initialized, *args)
        assert result.exit_code == 0, result.output
        assert "KCV" in result.output
    listed = _run(initialized, "list")
    assert listed.exit_code == 0
    assert "visa.zak" in listed.output and "ZAK" in listed.output
    as_json = json.loads(_run(initialized, "list", "--json").output)
    assert [e["name"] for e in as_json] == ["visa.kek", "visa.zak", "visa.zpk"]
    assert {e["algorithm"] for e in as_json} == {"tdes3", "tdes2"}
    master = (initialized.parent / "var" / "master.key").read_text().strip()
    store = KeyStore.open(initialized.parent / "var" / "keys.json", bytes.fromhex(master))
    for entry in as_json:
        value = store.get(entry["name"]).hex()
        assert value not in listed.output.lower() and value not in json.dumps(as_json)
        assert entry["kcv"] in listed.output


def test_import_checks_the_kcv(initialized: Path) -> None:
    bad = _run(initialized, "import", "acq.zpk", "--type", "ZPK", "--value", KEY, "--kcv", "FFFF")
    assert bad.exit_code == 2
    assert "check value" in bad.output and KEY not in bad.output
    good = _run(
        initialized, "import", "acq.zpk", "--type", "ZPK", "--value", KEY, "--kcv", "08D7B4"
    )
    assert good.exit_code == 0, good.output
    assert "imported acq.zpk: ZPK tdes2 v1 KCV 08D7B4" in good.output
    assert KEY not in good.output


def test_import_prompts_for_a_hidden_value(initialized: Path) -> None:
    runner = CliRunner(env={"SWITCH_MASTER_KEY": None, "SWITCH_CONFIG": None})
    args = ["keys", "import", "z", "--type", "ZPK", "--config", str(initialized)]
    result = runner.invoke(main, args, input=KEY + "\n")
    assert result.exit_code == 0, result.output
    assert KEY not in result.output


def test_rotate_shows_the_new_version_and_the_previous_kcv(initialized: Path) -> None:
    assert _run(initialized, "generate", "z", "--type", "ZAK").exit_code == 0
    result = _run(initialized, "rotate", "z", "--grace", "2")
    assert result.exit_code == 0, result.output
    assert "rotated z: ZAK tdes2 v2" in result.output
    listed = _run(initialized, "list").output
    assert "(v1 " in listed and "accepted until" in listed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rotate", "nope"), "no key named 'nope'"),
        (("generate", "z", "--type", "ZAK", "--algorithm", "aes256"), "ZAK key is tdes2"),
        (("import", "z", "--type", "ZPK", "--value", "zz"), "hex digits"),
    ],
)
def test_errors_are_one_line_and_exit_2(
    initialized: Path, args: tuple[str, ...], message: str
) -> None:
    result = _run(initialized, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_loose_master_key_file_is_refused(initialized: Path) -> None:
    os.chmod(initialized.parent / "var" / "master.key", 0o644)
    result = _run(initialized, "list")
    assert result.exit_code == 2
    assert "must be 0600" in result.output


def test_a_wrong_master_key_is_refused(initialized: Path) -> None:
    result = _run(initialized, "list", env={"SWITCH_MASTER_KEY": MASTER})
    assert result.exit_code == 2
    assert "does not open under this master key" in result.output


def test_without_a_store(config: Path) -> None:
    result = _run(config, "list", env={"SWITCH_MASTER_KEY": MASTER})
    assert result.exit_code == 2
    assert "switch keys init" in result.output


def test_without_a_simulators_store_the_hint_names_its_own_init(config: Path) -> None:
    config.write_text('[simulators.visa]\nspec = "visa"\n')
    result = CliRunner(env={"SWITCH_MASTER_KEY": MASTER, "SWITCH_CONFIG": None}).invoke(
        main, ["keys", "--simulator", "visa", "list", "--config", str(config)]
    )
    assert result.exit_code == 2, result.output
    assert "create one with `switch keys --simulator visa init`" in result.output


def test_every_command_has_help() -> None:
    for command in ("init", "list", "generate", "import", "rotate"):
        result = CliRunner().invoke(main, ["keys", command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_a_simulators_own_store_shares_key_values_not_files(config: Path) -> None:
    config.write_text('[simulators.visa]\nspec = "visa"\n')
    env = {"SWITCH_MASTER_KEY": MASTER}
    runner = CliRunner(env={"SWITCH_CONFIG": None, **env})

    def run(*args: str) -> Result:
        return runner.invoke(main, ["keys", *args, "--config", str(config)])

    assert run("init").exit_code == 0
    created = run("--simulator", "visa", "init")
    assert created.exit_code == 0, created.output
    assert str(config.parent / "var" / "sim-visa-keys.json") in created.output
    for prefix in ((), ("-s", "visa")):
        result = run(*prefix, "import", "visa-zpk", "--type", "zpk", "--value", KEY)
        assert result.exit_code == 0, result.output
    switch_side = json.loads(run("list", "--json").output)
    issuer_side = json.loads(run("-s", "visa", "list", "--json").output)
    assert [k["kcv"] for k in switch_side] == [k["kcv"] for k in issuer_side]
    unknown = run("-s", "amex", "list")
    assert unknown.exit_code == 2 and "no simulator named 'amex'" in unknown.output
    exchange = run("-s", "visa", "exchange", "visa")
    assert exchange.exit_code == 2 and "not a simulator" in exchange.output
