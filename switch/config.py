"""``switch.toml`` → frozen, slotted, keyword-only dataclasses.

Every value is checked where it is read and an error names its key path and
the problem (``issuers.visa.endpoints[0]: expected "host:port", got "x"``);
unknown keys are rejected, so a typo never silently becomes a default.
Relative paths (journal, ledgers, card book) are resolved against the folder
of the config file. Config is passed, never global; tests build it in code
(with port 0) through the same dataclasses.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import specs
from switch.errors import ConfigError
from switch.framing import FRAMINGS

__all__ = [
    "Config",
    "Endpoint",
    "FaultRule",
    "IssuerConfig",
    "ListenerConfig",
    "SafConfig",
    "SecurityConfig",
    "SimulatorConfig",
    "SwitchSettings",
    "load_config",
    "parse_config",
]

FAULT_KINDS = ("latency", "no_answer", "close", "garble", "late", "duplicate")
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchSettings:
    institution_id: str = "400001"
    journal: Path = Path("var/journal.db")
    spec_dirs: tuple[Path, ...] = ()
    admin_socket: Path = Path("var/switch.sock")
    token_key_file: Path = Path("var/token.key")
    log_file: Path | None = None
    log_level: str = "info"
    shutdown_grace: float = 10.0
    journal_batch: int = 256
    # Duplicates and reversals are matched in memory for this long (at most this
    # many transactions); older originals are looked up in the journal.
    recent_window: float = 300.0
    recent_limit: int = 50_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerConfig:
    name: str = "gateway"
    host: str = "127.0.0.1"
    port: int = 8583
    spec: str = "iso87ascii"
    framing: str = "2b"
    header: bytes = b""
    max_frame: int = 8192
    max_connections: int = 1000
    idle_timeout: float = 300.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    pin_key: str | None = None  # key-store name of this acquirer's zone PIN key
    mac_key: str | None = None  # key-store name of the MAC key; None = no MAC


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuerConfig:
    name: str
    spec: str
    endpoints: tuple[Endpoint, ...]
    framing: str = "2b"
    header: bytes = b""
    max_frame: int = 8192
    timeout: float = 5.0
    connections: int = 1
    echo_interval: float = 30.0
    reconnect_min: float = 0.2
    reconnect_max: float = 10.0
    sign_on: bool = True
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    pin_key: str | None = None  # key-store name of the issuer zone PIN key
    mac_key: str | None = None  # key-store name of the MAC key; None = no MAC
    kek_key: str | None = None  # key-store name of the key-exchange KEK (0800/161)


@dataclass(frozen=True, slots=True, kw_only=True)
class SafConfig:
    retry_initial: float = 1.0
    retry_max: float = 60.0
    expire_after: float = 86400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityConfig:
    keystore: Path | None = None
    master_key_env: str = "SWITCH_MASTER_KEY"
    master_key_file: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRule:
    """One fault a simulator injects: what triggers it and what it does.

    Triggers combine with AND; a rule with no trigger applies to all traffic.
    """

    kind: str
    pan: str | None = None
    amount: str | None = None
    fraction: float | None = None
    seconds: float = 0.0
    jitter: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig:
    name: str
    spec: str
    host: str = "127.0.0.1"
    port: int = 0
    framing: str = "2b"
    header: bytes = b""
    ledger: Path = Path("var/sim.db")
    cardbook: Path | None = None
    faults: tuple[FaultRule, ...] = ()
    keystore: Path | None = None  # the issuer's own key store (same master key)
    pin_key: str | None = None  # issuer zone PIN key: PIN blocks arrive under it
    mac_key: str | None = None  # MAC key of the link to the switch; None = no MAC
    kek_key: str | None = None  # KEK for key exchange (0800/161)
    tls_cert: Path | None = None  # serve TLS with this certificate chain (PEM)...
    tls_key: Path | None = None  # ...and its private key
    tls_client_ca: Path | None = None  # require client certificates from this CA


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    switch: SwitchSettings = field(default_factory=SwitchSettings)
    listeners: tuple[ListenerConfig, ...] = (ListenerConfig(),)
    issuers: Mapping[str, IssuerConfig] = field(default_factory=dict)
    routes: tuple[tuple[str, str], ...] = ()
    saf: SafConfig = field(default_factory=SafConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    simulators: Mapping[str, SimulatorConfig] = field(default_factory=dict)
    source: Path | None = None


class _Table:
    """Reads one TOML table, remembering which keys were used."""

    def __init__(self, raw: Any, path: str, base: Path) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"{path or 'config'}: expected a table, got {type(raw).__name__}")
        self.raw = raw
        self.path = path
        self.base = base
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, default: T, check: Callable[[str, Any], T]) -> T:
        self.used.add(name)
        if name not in self.raw:
            return default
        return check(self.key(name), self.raw[name])

    def sub(self, name: str) -> _Table:
        self.used.add(name)
        return _Table(self.raw.get(name, {}), self.key(name), self.base)

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])}: unknown key")


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _int_range(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(f"{key}: expected an integer {lo}-{hi}, got {value!r}")
        return value

    return check


_port = _int_range(0, 65535)


def _seconds(value: Any) -> bool:
    """A number of seconds: TOML's nan and inf are floats too, and no timeout."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive(key: str, value: Any) -> float:
    if not _seconds(value) or value <= 0:
        raise ConfigError(f"{key}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _fraction(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(f"{key}: expected a fraction 0-1, got {value!r}")
    return float(value)


def _non_negative(key: str, value: Any) -> float:
    if not _seconds(value) or value < 0:
        raise ConfigError(f"{key}: expected a number of seconds ≥ 0, got {value!r}")
    return float(value)


def _framing(key: str, value: Any) -> str:
    if value not in FRAMINGS:
        raise ConfigError(f"{key}: expected one of {', '.join(FRAMINGS)}, got {value!r}")
    return str(value)


def _hex(key: str, value: Any) -> bytes:
    try:
        return bytes.fromhex(_str(key, value))
    except ValueError:
        raise ConfigError(f"{key}: expected hex digits, got {value!r}") from None


def _path_in(base: Path) -> Callable[[str, Any], Path]:
    def check(key: str, value: Any) -> Path:
        path = Path(_str(key, value)).expanduser()
        return path if path.is_absolute() else base / path

    return check


def _endpoint(key: str, value: Any) -> Endpoint:
    text = _str(key, value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not _digits(port) or not 0 <= int(port) <= 65535:
        raise ConfigError(f'{key}: expected "host:port", got {value!r}')
    return Endpoint(host=host, port=int(port))


def _spec_name(spec_dirs: tuple[Path, ...]) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        name = _str(key, value)
        try:
            specs.load(name, spec_dirs)
        except specs.SpecError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        return name

    return check


def _settings(t: _Table) -> SwitchSettings:
    d = SwitchSettings()
    path = _path_in(t.base)

    def dirs(key: str, value: Any) -> tuple[Path, ...]:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of folders, got {value!r}")
        return tuple(path(f"{key}[{i}]", v) for i, v in enumerate(value))

    def level(key: str, value: Any) -> str:
        if value not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"{key}: expected debug, info, warning or error, got {value!r}")
        return str(value)

    def institution(key: str, value: Any) -> str:
        text = _str(key, value)
        if not _digits(text) or not 1 <= len(text) <= 11:
            raise ConfigError(f"{key}: expected 1-11 digits (field 32), got {value!r}")
        return text

    s = SwitchSettings(
        institution_id=t.get("institution_id", d.institution_id, institution),
        journal=t.get("journal", t.base / d.journal, path),
        spec_dirs=t.get("spec_dirs", (), dirs),
        admin_socket=t.get("admin_socket", t.base / d.admin_socket, path),
        token_key_file=t.get("token_key_file", t.base / d.token_key_file, path),
        log_file=t.get("log_file", None, path),
        log_level=t.get("log_level", d.log_level, level),
        shutdown_grace=t.get("shutdown_grace", d.shutdown_grace, _positive),
        journal_batch=t.get("journal_batch", d.journal_batch, _int_range(1, 100_000)),
        recent_window=t.get("recent_window", d.recent_window, _positive),
        recent_limit=t.get("recent_limit", d.recent_limit, _int_range(100, 10_000_000)),
    )
    t.done()
    return s


def _listener(t: _Table, spec_dirs: tuple[Path, ...], index: int) -> ListenerConfig:
    d = ListenerConfig()
    path = _path_in(t.base)
    c = ListenerConfig(
        name=t.get("name", f"listener{index}", _str),
        host=t.get("host", d.host, _str),
        port=t.get("port", d.port, _port),
        spec=t.get("spec", d.spec, _spec_name(spec_dirs)),
        framing=t.get("framing", d.framing, _framing),
        header=t.get("header", b"", _hex),
        max_frame=t.get("max_frame", d.max_frame, _int_range(64, 1 << 20)),
        max_connections=t.get("max_connections", d.max_connections, _int_range(1, 100_000)),
        idle_timeout=t.get("idle_timeout", d.idle_timeout, _positive),
        tls_cert=t.get("tls_cert", None, path),
        tls_key=t.get("tls_key", None, path),
        tls_client_ca=t.get("tls_client_ca", None, path),
        pin_key=t.get("pin_key", None, _str),
        mac_key=t.get("mac_key", None, _str),
    )
    _check_tls(t, c.tls_cert, c.tls_key, c.tls_client_ca)
    t.done()
    return c


def _check_tls(t: _Table, cert: Path | None, key: Path | None, client_ca: Path | None) -> None:
    """A TLS server needs both its certificate and key; client certificates need TLS."""
    if (cert is None) != (key is None):
        raise ConfigError(f"{t.key('tls_cert')}: tls_cert and tls_key go together")
    if client_ca is not None and cert is None:
        raise ConfigError(f"{t.key('tls_client_ca')}: needs tls_cert and tls_key")


def _check_listeners_apart(listeners: tuple[ListenerConfig, ...]) -> None:
    """Names pick a listener (``switch send --listener``); one address cannot be bound twice."""
    names: dict[str, int] = {}
    addresses: dict[tuple[str, int], int] = {}
    for i, c in enumerate(listeners):
        if c.name in names:
            raise ConfigError(
                f"listeners[{i}].name: {c.name!r} is already the name of listeners[{names[c.name]}]"
            )
        names[c.name] = i
        if c.port == 0:  # any free port: never the same one twice
            continue
        address = (c.host, c.port)
        if address in addresses:
            raise ConfigError(
                f"listeners[{i}].port: {c.host}:{c.port} is already the address of "
                f"listeners[{addresses[address]}]"
            )
        addresses[address] = i


def _issuer(t: _Table, name: str, spec_dirs: tuple[Path, ...]) -> IssuerConfig:
    d = IssuerConfig(name=name, spec="", endpoints=())
    path = _path_in(t.base)

    def endpoints(key: str, value: Any) -> tuple[Endpoint, ...]:
        if not isinstance(value, list) or not value:
            raise ConfigError(f'{key}: expected a list of "host:port", primary first')
        return tuple(_endpoint(f"{key}[{i}]", v) for i, v in enumerate(value))

    if "spec" not in t.raw:
        raise ConfigError(f"{t.key('spec')}: missing (the issuer network's dialect)")
    if "endpoints" not in t.raw:
        raise ConfigError(f"{t.key('endpoints')}: missing (primary endpoint first)")
    spec_name = t.get("spec", "", _spec_name(spec_dirs))
    c = IssuerConfig(
        name=name,
        spec=spec_name,
        endpoints=t.get("endpoints", (), endpoints),
        framing=t.get("framing", specs.load(spec_name, spec_dirs).framing, _framing),
        header=t.get("header", b"", _hex),
        max_frame=t.get("max_frame", d.max_frame, _int_range(64, 1 << 20)),
        timeout=t.get("timeout", d.timeout, _positive),
        connections=t.get("connections", d.connections, _int_range(1, 64)),
        echo_interval=t.get("echo_interval", d.echo_interval, _positive),
        reconnect_min=t.get("reconnect_min", d.reconnect_min, _positive),
        reconnect_max=t.get("reconnect_max", d.reconnect_max, _positive),
        sign_on=t.get("sign_on", d.sign_on, _bool),
        tls_ca=t.get("tls_ca", None, path),
        tls_cert=t.get("tls_cert", None, path),
        tls_key=t.get("tls_key", None, path),
        pin_key=t.get("pin_key", None, _str),
        mac_key=t.get("mac_key", None, _str),
        kek_key=t.get("kek_key", None, _str),
    )
    t.done()
    return c


def check_route_prefix(key: str, prefix: str) -> str:
    """A route key is digits ("4", "9112") or a range of equal-width digits ("51-55")."""
    lo, sep, hi = prefix.partition("-")
    ok = _digits(lo) and (not sep or (_digits(hi) and len(hi) == len(lo) and lo <= hi))
    if not ok or len(lo) > 11:
        raise ConfigError(f'{key}: expected BIN digits like "4" or a range like "51-55"')
    return prefix


def _routes(t: _Table, issuers: Mapping[str, IssuerConfig]) -> tuple[tuple[str, str], ...]:
    out = []
    for prefix, issuer in t.raw.items():
        key = t.key(f'"{prefix}"')
        check_route_prefix(key, prefix)
        _str(key, issuer)
        if issuer not in issuers:
            raise ConfigError(f"{key}: no issuer named {issuer!r} (known: {', '.join(issuers)})")
        out.append((prefix, issuer))
        t.used.add(prefix)
    return tuple(out)


def _fault(t: _Table) -> FaultRule:
    def kind(key: str, value: Any) -> str:
        if value not in FAULT_KINDS:
            raise ConfigError(f"{key}: expected one of {', '.join(FAULT_KINDS)}, got {value!r}")
        return str(value)

    if "kind" not in t.raw:
        raise ConfigError(f"{t.key('kind')}: missing")
    rule = FaultRule(
        kind=t.get("kind", "", kind),
        pan=t.get("pan", None, _str),
        amount=t.get("amount", None, _str),
        fraction=t.get("fraction", None, _fraction),
        seconds=t.get("seconds", 0.0, _non_negative),
        jitter=t.get("jitter", 0.0, _non_negative),
    )
    t.done()
    return rule


def _simulator(t: _Table, name: str, spec_dirs: tuple[Path, ...]) -> SimulatorConfig:
    path = _path_in(t.base)
    spec_name = t.get("spec", name, _spec_name(spec_dirs))

    def faults(key: str, value: Any) -> tuple[FaultRule, ...]:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of tables")
        return tuple(_fault(_Table(v, f"{key}[{i}]", t.base)) for i, v in enumerate(value))

    c = SimulatorConfig(
        name=name,
        spec=spec_name,
        host=t.get("host", "127.0.0.1", _str),
        port=t.get("port", 0, _port),
        framing=t.get("framing", specs.load(spec_name, spec_dirs).framing, _framing),
        header=t.get("header", b"", _hex),
        ledger=t.get("ledger", t.base / f"var/sim-{name}.db", path),
        cardbook=t.get("cardbook", None, path),
        faults=t.get("faults", (), faults),
        keystore=t.get("keystore", t.base / f"var/sim-{name}-keys.json", path),
        pin_key=t.get("pin_key", None, _str),
        mac_key=t.get("mac_key", None, _str),
        kek_key=t.get("kek_key", None, _str),
        tls_cert=t.get("tls_cert", None, path),
        tls_key=t.get("tls_key", None, path),
        tls_client_ca=t.get("tls_client_ca", None, path),
    )
    _check_tls(t, c.tls_cert, c.tls_key, c.tls_client_ca)
    t.done()
    return c


def parse_config(raw: Mapping[str, Any], base: Path, source: Path | None = None) -> Config:
    """Build a Config from already-parsed TOML; ``base`` anchors relative paths."""
    top = _Table(dict(raw), "", base)
    settings = _settings(top.sub("switch"))
    top.used.add("listeners")
    listeners_raw = raw.get("listeners", [{}])
    if not isinstance(listeners_raw, list) or not listeners_raw:
        raise ConfigError("listeners: expected one or more [[listeners]] tables")
    listeners = tuple(
        _listener(_Table(v, f"listeners[{i}]", base), settings.spec_dirs, i)
        for i, v in enumerate(listeners_raw)
    )
    _check_listeners_apart(listeners)
    issuers_t = top.sub("issuers")
    issuers = {
        name: _issuer(issuers_t.sub(name), name, settings.spec_dirs) for name in issuers_t.raw
    }
    routes_t = top.sub("routes")
    routes = _routes(routes_t, issuers)
    routes_t.done()
    saf_t = top.sub("saf")
    saf = SafConfig(
        retry_initial=saf_t.get("retry_initial", 1.0, _positive),
        retry_max=saf_t.get("retry_max", 60.0, _positive),
        expire_after=saf_t.get("expire_after", 86400.0, _positive),
    )
    saf_t.done()
    sec_t = top.sub("security")
    path = _path_in(base)
    security = SecurityConfig(
        keystore=sec_t.get("keystore", base / "var" / "keys.json", path),
        master_key_env=sec_t.get("master_key_env", "SWITCH_MASTER_KEY", _str),
        master_key_file=sec_t.get("master_key_file", None, path),
    )
    sec_t.done()
    sims_t = top.sub("simulators")
    simulators = {
        name: _simulator(sims_t.sub(name), name, settings.spec_dirs) for name in sims_t.raw
    }
    top.done()
    return Config(
        switch=settings,
        listeners=listeners,
        issuers=issuers,
        routes=routes,
        saf=saf,
        security=security,
        simulators=simulators,
        source=source,
    )


def load_config(path: str | Path) -> Config:
    """Read and check ``switch.toml``; ConfigError names the key and the problem."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not valid TOML: not UTF-8 text") from None
    return parse_config(raw, p.resolve().parent, source=p.resolve())
