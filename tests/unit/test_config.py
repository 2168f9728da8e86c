"""switch.toml: frozen dataclasses, and errors that name the key path and the problem."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from switch.config import Config, Endpoint, load_config, parse_config
from switch.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
VISA = {"spec": "visa", "endpoints": ["127.0.0.1:9101"]}


def _parse(raw: dict[str, Any], base: Path = Path("/srv/switch")) -> Config:
    return parse_config(raw, base)


def test_the_shipped_switch_toml_loads() -> None:
    config = load_config(REPO / "switch.toml")
    assert set(config.issuers) == {"visa", "mastercard", "belkart"}
    assert config.issuers["belkart"].framing == "4a"
    assert config.listeners[0].spec == "iso87ascii"
    assert ("9112", "belkart") in config.routes
    assert config.switch.journal == REPO / "var" / "journal.db"


def test_an_empty_config_is_one_default_listener() -> None:
    config = _parse({})
    assert [listener.spec for listener in config.listeners] == ["iso87ascii"]
    assert config.issuers == {} and config.routes == ()


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _parse({}).switch.log_level = "debug"  # type: ignore[misc]


def test_relative_paths_are_relative_to_the_config_file() -> None:
    config = _parse({"switch": {"journal": "data/j.db", "log_file": "/var/log/s.log"}})
    assert config.switch.journal == Path("/srv/switch/data/j.db")
    assert config.switch.log_file == Path("/var/log/s.log")


def test_issuer_framing_defaults_to_its_specs_framing() -> None:
    config = _parse({"issuers": {"belkart": {"spec": "belkart", "endpoints": ["h:1"]}}})
    assert config.issuers["belkart"].framing == "4a"
    assert config.issuers["belkart"].endpoints == (Endpoint(host="h", port=1),)


def test_listener_header_is_hex() -> None:
    config = _parse({"listeners": [{"header": "6000010000", "port": 0}]})
    assert config.listeners[0].header == bytes.fromhex("6000010000")


def test_spec_dirs_let_an_operator_add_a_network(tmp_path: Path) -> None:
    (tmp_path / "networks").mkdir()
    (tmp_path / "networks" / "acme.toml").write_text(
        'base = "iso8583-1987"\n[encoding]\nmti = "ascii"\n'
    )
    raw = {
        "switch": {"spec_dirs": ["networks"]},
        "issuers": {"acme": {"spec": "acme", "endpoints": ["h:1"]}},
    }
    config = _parse(raw, base=tmp_path)
    assert config.switch.spec_dirs == (tmp_path / "networks",)
    assert config.issuers["acme"].spec == "acme"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"switch": {"colour": "red"}}, "switch.colour: unknown key"),
        ({"colour": "red"}, "colour: unknown key"),
        ({"switch": {"institution_id": "40000A"}}, "switch.institution_id: expected 1-11 digits"),
        ({"switch": {"institution_id": "²"}}, "switch.institution_id: expected 1-11 digits"),
        ({"switch": {"log_level": "loud"}}, "switch.log_level: expected debug"),
        ({"switch": {"spec_dirs": "specs"}}, "switch.spec_dirs: expected a list"),
        ({"listeners": {}}, "listeners: expected one or more [[listeners]]"),
        ({"listeners": [{"port": 70000}]}, "listeners[0].port: expected an integer 0-65535"),
        ({"listeners": [{"port": True}]}, "listeners[0].port: expected an integer"),
        ({"listeners": [{"spec": "amex"}]}, "listeners[0].spec: unknown spec 'amex'"),
        ({"listeners": [{"framing": "3x"}]}, "listeners[0].framing: expected one of 2b"),
        ({"listeners": [{"header": "zz"}]}, "listeners[0].header: expected hex digits"),
        ({"listeners": [{"tls_cert": "c.pem"}]}, "tls_cert and tls_key go together"),
        ({"issuers": {"visa": {"endpoints": ["h:1"]}}}, "issuers.visa.spec: missing"),
        ({"issuers": {"visa": {"spec": "visa"}}}, "issuers.visa.endpoints: missing"),
        ({"issuers": {"visa": VISA | {"endpoints": []}}}, "issuers.visa.endpoints: expected"),
        (
            {"issuers": {"visa": VISA | {"endpoints": ["nohost"]}}},
            "issuers.visa.endpoints[0]: expected \"host:port\", got 'nohost'",
        ),
        (
            {"issuers": {"visa": VISA | {"endpoints": ["h:²"]}}},
            'issuers.visa.endpoints[0]: expected "host:port"',
        ),
        ({"issuers": {"visa": VISA | {"timeout": 0}}}, "issuers.visa.timeout: expected a positive"),
        ({"issuers": {"visa": VISA | {"sign_on": "yes"}}}, "issuers.visa.sign_on: expected true"),
        ({"issuers": {"visa": VISA}, "routes": {"4x": "visa"}}, 'routes."4x": expected BIN digits'),
        ({"issuers": {"visa": VISA}, "routes": {"²": "visa"}}, 'routes."²": expected BIN digits'),
        ({"issuers": {"visa": VISA}, "routes": {"55-51": "visa"}}, 'routes."55-51"'),
        ({"issuers": {"visa": VISA}, "routes": {"4": "amex"}}, "no issuer named 'amex'"),
        ({"issuers": {"visa": VISA}, "routes": {"4": ["visa"]}}, 'routes."4": expected a string'),
        (
            {"issuers": {"visa": VISA | {"timeout": float("nan")}}},
            "issuers.visa.timeout: expected a positive number of seconds, got nan",
        ),
        ({"saf": {"expire_after": float("inf")}}, "saf.expire_after: expected a positive"),
        (
            {"simulators": {"visa": {"faults": [{"kind": "latency", "seconds": float("nan")}]}}},
            "simulators.visa.faults[0].seconds: expected a number of seconds",
        ),
        (
            {"listeners": [{"name": "gw", "port": 0}, {"name": "gw", "port": 0}]},
            "listeners[1].name: 'gw' is already the name of listeners[0]",
        ),
        (
            {"listeners": [{"name": "a", "port": 18583}, {"name": "b", "port": 18583}]},
            "listeners[1].port: 127.0.0.1:18583 is already the address of listeners[0]",
        ),
        ({"saf": {"retry_max": -1}}, "saf.retry_max: expected a positive"),
        ({"switch": {"recent_window": 0}}, "switch.recent_window: expected a positive"),
        ({"switch": {"recent_limit": 5}}, "switch.recent_limit: expected"),
        (
            {"simulators": {"visa": {"tls_client_ca": "ca.pem"}}},
            "simulators.visa.tls_client_ca: needs tls_cert and tls_key",
        ),
        ({"simulators": {"visa": {"faults": [{}]}}}, "simulators.visa.faults[0].kind: missing"),
        (
            {"simulators": {"visa": {"faults": [{"kind": "boom"}]}}},
            "simulators.visa.faults[0].kind: expected one of",
        ),
        (
            {"simulators": {"visa": {"faults": [{"kind": "latency", "fraction": 2}]}}},
            "simulators.visa.faults[0].fraction: expected a fraction 0-1",
        ),
    ],
)
def test_config_error_names_the_key_path_and_the_problem(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(raw)
    assert message in str(caught.value)


def test_a_malformed_spec_file_named_by_a_config_reports_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "acme.toml").write_text('base = "iso8583-1987"\n[encoding]\nmti = "utf8"\n')
    raw = {"switch": {"spec_dirs": [str(tmp_path)]}, "listeners": [{"spec": "acme"}]}
    with pytest.raises(ConfigError, match=r"listeners\[0\]\.spec: acme\.toml: encoding\.mti"):
        _parse(raw)


def test_missing_or_broken_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "switch.toml"
    broken.write_text("[switch\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
    broken.write_bytes(b"\xff\xfe[switch]\n")
    with pytest.raises(ConfigError, match="not valid TOML: not UTF-8 text"):
        load_config(broken)
    with pytest.raises(ConfigError, match="cannot read the config file: Is a directory"):
        load_config(tmp_path)


def test_listeners_on_other_hosts_or_on_port_0_may_share_a_port() -> None:
    config = _parse(
        {
            "listeners": [
                {"name": "a", "port": 0},
                {"name": "b", "port": 0},
                {"name": "c", "host": "127.0.0.1", "port": 18583},
                {"name": "d", "host": "127.0.0.2", "port": 18583},
            ]
        }
    )
    assert [listener.name for listener in config.listeners] == ["a", "b", "c", "d"]
