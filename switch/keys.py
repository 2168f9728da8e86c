"""The key store: working keys encrypted at rest under a master key, with check values.

One JSON file (``security.keystore``) holds every key the switch uses on its
links: zone PIN keys (ZPK), MAC keys (ZAK), key-encrypting keys (KEK, also
called ZMK) and data keys (DEK). Each key has a name, a type, an algorithm, a
version and a key check value (KCV); its *value* is stored only as
AES-256-GCM ciphertext under the master key, with the name, type, algorithm
and version as associated data, so an entry copied under another name or
version in the file does not open.

Invariants:
- a key value never appears in ``repr``, errors, ``entries()`` or the CLI;
  only its KCV does (TDES: the first 3 bytes of the key encrypting 8 zero
  bytes, ANSI X9.24-1; AES: the first 5 bytes of AES-CMAC over 16 zero bytes,
  X9.24-1:2017 Annex A);
- ``rotate`` keeps the version it replaces as *previous* until a grace time
  ends, so messages already on the wire under it still verify
  (:meth:`KeyStore.candidates`); anything sent uses the current version;
- the master key (32 bytes) comes from an environment variable (hex) or a file
  readable by its owner only (:func:`load_master_key`).

TripleDES is built here and only here, from ``cryptography``'s ``decrepit``
module with 24-byte keys: the primitives path (which psec 1.3 uses) warns and
is going away, and two-key 16-byte TDES keys warn too. :func:`tdes_encrypt`
and :func:`tdes_decrypt` serve :mod:`switch.pin` and :mod:`switch.mac`.

TR-31 key blocks (dynamic key exchange, 0800 with F70 = 161) are made and
opened with psec, the maintained implementation of ANSI X9.143/TR-31: version
D under an AES KEK, version B under a TDES KEK.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import secrets
import stat
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.utils import CryptographyDeprecationWarning

from switch.config import SecurityConfig
from switch.errors import SecurityError

__all__ = [
    "ALGORITHMS",
    "DEFAULT_GRACE",
    "KEY_TYPES",
    "KeyEntry",
    "KeyStore",
    "Keys",
    "check_value",
    "key_list",
    "load_master_key",
    "master_key_path",
    "open_store",
    "random_key",
    "tdes_decrypt",
    "tdes_encrypt",
]

# Type -> the algorithms it may use. PIN blocks (ISO 9564 format 0) and the
# retail MAC (ISO 9797-1 algorithm 3) are TDES constructions.
KEY_TYPES: Mapping[str, tuple[str, ...]] = {
    "ZPK": ("tdes2", "tdes3"),
    "ZAK": ("tdes2",),
    "KEK": ("aes256", "tdes2", "tdes3"),
    "DEK": ("aes256", "tdes2", "tdes3"),
}
_ALIASES = {"MAC": "ZAK", "ZMK": "KEK"}
ALGORITHMS: Mapping[str, int] = {"tdes2": 16, "tdes3": 24, "aes256": 32}
DEFAULT_GRACE = dt.timedelta(hours=24)
_FORMAT = 1
_NONCE = 12
_CHECK_PLAINTEXT = b"switch key store"
_INIT = "switch keys init"  # what creates the switch's store; a simulator's is passed in
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# TR-31 key usage per type (ANSI X9.143 table 6) and its mode of use.
_TR31_USAGE = {"ZPK": ("P0", "B"), "ZAK": ("M3", "C"), "KEK": ("K0", "B"), "DEK": ("D0", "B")}
_TR31_TYPE = {usage: key_type for key_type, (usage, _) in _TR31_USAGE.items()}


# One key, or the keys to try on something received: current first, then previous.
Keys = bytes | Sequence[bytes]


def key_list(keys: Keys, lengths: tuple[int, ...], what: str) -> list[bytes]:
    """``keys`` as a non-empty list, each of one of ``lengths`` bytes; else SecurityError."""
    found = [keys] if isinstance(keys, bytes) else list(keys)
    if not found:
        raise SecurityError(f"{what}: none given")
    for key in found:
        if len(key) not in lengths:
            sizes = " or ".join(str(n) for n in lengths)
            raise SecurityError(f"{what}: expected a TDES key of {sizes} bytes")
    return found


def _tdes_key(key: bytes) -> bytes:
    if len(key) == 16:
        return key + key[:8]
    if len(key) in (8, 24):
        return key * 3 if len(key) == 8 else key
    raise SecurityError("a TDES key must be 8, 16 or 24 bytes")


def tdes_encrypt(key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
    """TDES encryption, ECB (or CBC from ``iv``); an 8-byte key is single DES."""
    mode = modes.ECB() if iv is None else modes.CBC(iv)
    enc = Cipher(TripleDES(_tdes_key(key)), mode).encryptor()
    return enc.update(data) + enc.finalize()


def tdes_decrypt(key: bytes, data: bytes) -> bytes:
    """TDES decryption, ECB."""
    dec = Cipher(TripleDES(_tdes_key(key)), modes.ECB()).decryptor()
    return dec.update(data) + dec.finalize()


def check_value(key: bytes, algorithm: str) -> str:
    """The key check value, hex upper case (TDES 6 digits, AES 10)."""
    if algorithm.startswith("tdes"):
        return tdes_encrypt(key, bytes(8))[:3].hex().upper()
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(bytes(16))
    return mac.finalize()[:5].hex().upper()


@contextmanager
def _psec_tdes() -> Iterator[None]:
    """psec reaches TripleDES through cryptography's deprecated path: quiet that warning.

    Only around TR-31 version B, which is rare (key exchange), never per message.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyEntry:
    """What may be shown about a key: everything but its value."""

    name: str
    type: str
    algorithm: str
    version: int
    kcv: str
    created: str
    previous_version: int | None = None
    previous_kcv: str | None = None
    previous_until: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


class KeyStore:
    """The key file, opened under its master key; every change is written at once."""

    __slots__ = ("_aead", "_doc", "path")

    def __init__(self, path: Path, master_key: bytes, doc: dict[str, Any]) -> None:
        if len(master_key) != 32:
            raise SecurityError("the master key must be 32 bytes (64 hex digits)")
        self.path = path
        self._aead = AESGCM(master_key)
        self._doc = doc

    def __repr__(self) -> str:
        return f"KeyStore({str(self.path)!r}, {len(self._doc['keys'])} keys)"

    # -- opening -------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, master_key: bytes) -> KeyStore:
        """A new, empty store at ``path`` (which must not exist)."""
        if path.exists():
            raise SecurityError(f"{path}: a key store already exists")
        store = cls(path, master_key, {"format": _FORMAT, "check": "", "keys": {}})
        store._doc["check"] = store._seal(_CHECK_PLAINTEXT, b"check")
        path.parent.mkdir(parents=True, exist_ok=True)
        store._save()
        return store

    @classmethod
    def open(cls, path: Path, master_key: bytes, *, init: str = _INIT) -> KeyStore:
        """Read the store; SecurityError if it is missing, malformed or not this master key's.

        ``init`` is the command that creates this store, for the error when it is missing.
        """
        store = cls(path, master_key, {"keys": {}})
        store.reload(init=init)
        return store

    def reload(self, *, init: str = _INIT) -> None:
        """(Re-)read the file: also how a running switch sees a rotation made by the CLI."""
        path = self.path
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise SecurityError(f"{path}: no key store (create one with `{init}`)") from None
        except (OSError, ValueError) as exc:
            raise SecurityError(f"{path}: unreadable key store: {type(exc).__name__}") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT or "keys" not in doc:
            raise SecurityError(f"{path}: not a key store of format {_FORMAT}")
        if self._open(str(doc.get("check", "")), b"check") != _CHECK_PLAINTEXT:
            raise SecurityError(f"{path}: the store does not open under this master key")
        self._doc = doc

    # -- reading -------------------------------------------------------------

    def entries(self) -> list[KeyEntry]:
        """Metadata of every key, by name."""
        return [self.entry(name) for name in sorted(self._doc["keys"])]

    def entry(self, name: str) -> KeyEntry:
        record = self._record(name)
        current, previous = record["current"], record.get("previous")
        return KeyEntry(
            name=name,
            type=record["type"],
            algorithm=record["algorithm"],
            version=current["version"],
            kcv=current["kcv"],
            created=current["created"],
            previous_version=previous["version"] if previous else None,
            previous_kcv=previous["kcv"] if previous else None,
            previous_until=previous["until"] if previous else None,
        )

    def __contains__(self, name: object) -> bool:
        return name in self._doc["keys"]

    def get(self, name: str) -> bytes:
        """The current value of key ``name``: what anything sent is protected with."""
        return self._value(name, self._record(name)["current"])

    def candidates(self, name: str, now: dt.datetime | None = None) -> list[bytes]:
        """Values to try on what is received: the current, then the previous in its grace time."""
        record = self._record(name)
        values = [self._value(name, record["current"])]
        previous = record.get("previous")
        if previous and _now(now) < dt.datetime.fromisoformat(previous["until"]):
            values.append(self._value(name, previous))
        return values

    # -- changing ------------------------------------------------------------

    def generate(
        self,
        name: str,
        key_type: str,
        algorithm: str | None = None,
        *,
        now: dt.datetime | None = None,
    ) -> KeyEntry:
        """A new random key ``name`` (which must not exist)."""
        key_type, algorithm = _kind(key_type, algorithm)
        self._new_name(name)
        return self._put(name, key_type, algorithm, _random_key(algorithm), _now(now))

    def import_key(
        self,
        name: str,
        key_type: str,
        value_hex: str,
        kcv: str | None = None,
        *,
        algorithm: str | None = None,
        now: dt.datetime | None = None,
    ) -> KeyEntry:
        """Store a key received in clear (e.g. from key components), checking its KCV if given."""
        try:
            value = bytes.fromhex(value_hex)
        except ValueError:
            raise SecurityError("the key value must be hex digits") from None
        if algorithm is None:
            algorithm = {16: "tdes2", 24: "tdes3", 32: "aes256"}.get(len(value))
            if algorithm is None:
                raise SecurityError(f"a key of {len(value)} bytes fits no known algorithm")
        key_type, algorithm = _kind(key_type, algorithm)
        _check_length(value, algorithm)
        if kcv is not None:
            _verify_kcv(value, algorithm, kcv)
        self._new_name(name)
        return self._put(name, key_type, algorithm, value, _now(now))

    def rotate(
        self,
        name: str,
        *,
        value: bytes | None = None,
        grace: dt.timedelta = DEFAULT_GRACE,
        now: dt.datetime | None = None,
    ) -> KeyEntry:
        """Make a new version of ``name`` (random, or ``value``); keep the old one for ``grace``."""
        record = self._record(name)
        when = _now(now)
        if value is None:
            value = _random_key(record["algorithm"])
        _check_length(value, record["algorithm"])
        old = record["current"]
        record["previous"] = {**old, "until": _stamp(when + grace)}
        record["current"] = self._version(
            name, record["type"], record["algorithm"], old["version"] + 1, value, when
        )
        self._save()
        return self.entry(name)

    # -- TR-31 key exchange ----------------------------------------------------

    def export_tr31(self, name: str, kek_name: str) -> str:
        """Key ``name`` in a TR-31 key block under KEK ``kek_name`` (psec)."""
        record, kek = self._record(name), self._record(kek_name)
        if kek["type"] != "KEK":
            raise SecurityError(f"key {kek_name!r} is a {kek['type']}, not a KEK")
        usage, mode = _TR31_USAGE[record["type"]]
        aes_kek = kek["algorithm"] == "aes256"
        header = psec.tr31.Header(
            version_id="D" if aes_kek else "B",
            key_usage=usage,
            algorithm="A" if record["algorithm"] == "aes256" else "T",
            mode_of_use=mode,
            version_num=f"{record['current']['version'] % 100:02d}",
            exportability="E",
        )
        try:
            with _psec_tdes():
                return str(psec.tr31.wrap(self.get(kek_name), header, self.get(name)))
        except ValueError as exc:
            raise SecurityError(f"cannot wrap {name!r} under {kek_name!r}: {exc}") from None

    def import_tr31(
        self,
        name: str,
        block: str,
        kek_name: str,
        *,
        grace: dt.timedelta = DEFAULT_GRACE,
        now: dt.datetime | None = None,
    ) -> KeyEntry:
        """Open a TR-31 block under KEK ``kek_name``; the key becomes ``name``'s new version.

        A new name is created with the block's key type; an existing one is
        rotated to the received value (its previous version kept for ``grace``),
        and must be of the same type.
        """
        if self._record(kek_name)["type"] != "KEK":
            raise SecurityError(f"key {kek_name!r} is not a KEK")
        try:
            with _psec_tdes():
                header, value = psec.tr31.unwrap(self.get(kek_name), block)
        except ValueError:
            # psec's message may quote parts of the block: say only what failed.
            raise SecurityError(f"the TR-31 block does not open under {kek_name!r}") from None
        key_type = _TR31_TYPE.get(header.key_usage)
        if key_type is None:
            raise SecurityError(f"TR-31 key usage {header.key_usage!r} is not one we store")
        if name not in self:
            algorithm = "aes256" if header.algorithm == "A" else f"tdes{len(value) // 8}"
            return self.import_key(name, key_type, value.hex(), algorithm=algorithm, now=now)
        if self._record(name)["type"] != key_type:
            raise SecurityError(f"key {name!r} is a {self._record(name)['type']}, not {key_type}")
        return self.rotate(name, value=value, grace=grace, now=now)

    # -- inside ----------------------------------------------------------------

    def _record(self, name: str) -> dict[str, Any]:
        record: dict[str, Any] | None = self._doc["keys"].get(name)
        if record is None:
            raise SecurityError(f"no key named {name!r} in the key store")
        return record

    def _new_name(self, name: str) -> None:
        if not _NAME.match(name):
            raise SecurityError(f"bad key name {name!r}: letters, digits, '_', '.', '-' (max 64)")
        if name in self:
            raise SecurityError(f"a key named {name!r} exists; use rotate for a new version")

    def _put(
        self, name: str, key_type: str, algorithm: str, value: bytes, when: dt.datetime
    ) -> KeyEntry:
        self._doc["keys"][name] = {
            "type": key_type,
            "algorithm": algorithm,
            "current": self._version(name, key_type, algorithm, 1, value, when),
        }
        self._save()
        return self.entry(name)

    def _version(
        self,
        name: str,
        key_type: str,
        algorithm: str,
        version: int,
        value: bytes,
        when: dt.datetime,
    ) -> dict[str, Any]:
        aad = _aad(name, key_type, algorithm, version)
        return {
            "version": version,
            "kcv": check_value(value, algorithm),
            "created": _stamp(when),
            "value": self._seal(value, aad),
        }

    def _value(self, name: str, version: Mapping[str, Any]) -> bytes:
        record = self._record(name)
        aad = _aad(name, record["type"], record["algorithm"], version["version"])
        value = self._open(str(version["value"]), aad)
        if value is None:
            raise SecurityError(f"key {name!r} v{version['version']} does not open: file tampered")
        return value

    def _seal(self, value: bytes, aad: bytes) -> str:
        nonce = secrets.token_bytes(_NONCE)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, value, aad)).decode("ascii")

    def _open(self, sealed: str, aad: bytes) -> bytes | None:
        try:
            blob = base64.b64decode(sealed, validate=True)
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except (InvalidTag, ValueError):
            return None

    def _save(self) -> None:
        """Write a temporary file (0600) and rename it over the store: never half a store."""
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self._doc, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def _aad(name: str, key_type: str, algorithm: str, version: int) -> bytes:
    return f"{name}\x00{key_type}\x00{algorithm}\x00{version}".encode()


def _kind(key_type: str, algorithm: str | None) -> tuple[str, str]:
    key_type = _ALIASES.get(key_type.upper(), key_type.upper())
    allowed = KEY_TYPES.get(key_type)
    if allowed is None:
        raise SecurityError(
            f"unknown key type {key_type!r}; expected one of {', '.join(KEY_TYPES)}"
        )
    algorithm = (algorithm or allowed[0]).lower()
    if algorithm not in allowed:
        raise SecurityError(f"a {key_type} key is {' or '.join(allowed)}, not {algorithm!r}")
    return key_type, algorithm


def _check_length(value: bytes, algorithm: str) -> None:
    if len(value) != ALGORITHMS[algorithm]:
        raise SecurityError(
            f"an {algorithm} key is {ALGORITHMS[algorithm]} bytes, not {len(value)}"
        )
    if algorithm.startswith("tdes") and value[:8] == value[8:16]:
        raise SecurityError("a TDES key whose halves are equal is single DES: refused")


def _verify_kcv(value: bytes, algorithm: str, kcv: str) -> None:
    expected = check_value(value, algorithm)
    given = kcv.strip().upper()
    if len(given) < 4 or not secrets.compare_digest(given, expected[: len(given)]):
        raise SecurityError(f"the key does not match check value {given!r}")


def _random_key(algorithm: str) -> bytes:
    value = secrets.token_bytes(ALGORITHMS[algorithm])
    if algorithm.startswith("tdes"):
        # DES keys carry odd parity in each byte's low bit (FIPS 46-3); psec does it.
        value = bytes(psec.des.adjust_key_parity(value))
        if value[:8] == value[8:16]:  # pragma: no cover - 2^-56
            return _random_key(algorithm)
    return value


def master_key_path(security: SecurityConfig) -> Path | None:
    """The master key file: ``security.master_key_file``, else ``master.key`` beside the store."""
    if security.master_key_file is not None:
        return security.master_key_file
    if security.keystore is not None:
        return security.keystore.parent / "master.key"
    return None


def open_store(
    path: Path | None,
    security: SecurityConfig,
    names: Iterable[str | None],
    *,
    init: str = _INIT,
) -> KeyStore | None:
    """The key store at ``path`` when any of ``names`` is set, checked to hold them all.

    None when no key is named (nothing to open, no master key needed); a
    SecurityError naming the store and the missing keys otherwise (and
    ``init``, the command that creates the store, when there is none).
    """
    wanted = sorted({name for name in names if name})
    if not wanted:
        return None
    if path is None:
        raise SecurityError(f"keys {', '.join(wanted)} are named but no key store is set")
    store = KeyStore.open(path, load_master_key(security), init=init)
    missing = [name for name in wanted if name not in store]
    if missing:
        raise SecurityError(f"{path}: no key named {', '.join(missing)}")
    return store


def load_master_key(security: SecurityConfig, *, environ: Mapping[str, str] | None = None) -> bytes:
    """The master key: the environment variable (hex) first, then the 0600 file."""
    env = os.environ if environ is None else environ
    text = env.get(security.master_key_env)
    where = f"environment variable {security.master_key_env}"
    if not text:
        path = master_key_path(security)
        if path is None or not path.exists():
            raise SecurityError(
                f"no master key: set {security.master_key_env} (64 hex digits) "
                "or security.master_key_file"
            )
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SecurityError(f"{path}: master key file is mode {mode:04o}; it must be 0600")
        text, where = path.read_text(), str(path)
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise SecurityError(f"{where}: the master key must be 64 hex digits") from None
    if len(key) != 32:
        raise SecurityError(f"{where}: the master key must be 64 hex digits")
    return key


def random_key(algorithm: str) -> bytes:
    """A fresh key value for ``algorithm`` (tdes2, tdes3, aes256), e.g. for key exchange."""
    return _random_key(algorithm)
