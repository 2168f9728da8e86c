"""The keys that protect card numbers at rest: PAN tokens and PAN encryption.

One key file (``switch.token_key_file``, created 0600 on first use) holds two
independent 32-byte keys, hex-encoded on two lines:
- the **token key**: HMAC-SHA256 of the PAN (cards.pan_token), so the journal,
  the simulators' ledgers and settlement files join on a card without holding it;
- the **data key**: AES-256-GCM encryption of the PAN where the switch must be
  able to rebuild a message later (a reversal after a crash, SAF) or an
  operator must reveal it for a chargeback (``switch journal reveal``).

The switch and the simulators read the same file, so their tokens agree.
Key values never appear in ``repr``, logs or errors.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from switch.cards import pan_token
from switch.errors import ConfigError, SecurityError

__all__ = ["Vault"]

_NONCE = 12


class Vault:
    __slots__ = ("_aead", "_token_key")

    def __init__(self, token_key: bytes, data_key: bytes) -> None:
        if len(token_key) != 32 or len(data_key) != 32:
            raise SecurityError("vault keys must be 32 bytes each")
        self._token_key = token_key
        self._aead = AESGCM(data_key)

    def __repr__(self) -> str:
        return "Vault(<keys hidden>)"

    @classmethod
    def ephemeral(cls) -> Vault:
        """Fresh random keys (tests, one-off tools)."""
        return cls(secrets.token_bytes(32), secrets.token_bytes(32))

    @classmethod
    def load_or_create(cls, path: Path) -> Vault:
        """Read the key file, creating it (mode 0600) with random keys if absent."""
        if not path.exists():
            _create(path, f"{secrets.token_hex(32)}\n{secrets.token_hex(32)}\n")
        lines = path.read_text().split()
        try:
            token_key, data_key = (bytes.fromhex(line) for line in lines[:2])
        except ValueError:
            raise ConfigError(
                f"{path}: expected two lines of 64 hex digits (token and data keys)"
            ) from None
        if len(lines) < 2 or len(token_key) != 32 or len(data_key) != 32:
            raise ConfigError(f"{path}: expected two lines of 64 hex digits (token and data keys)")
        return cls(token_key, data_key)

    def token(self, pan: str) -> str:
        return pan_token(pan, self._token_key)

    def encrypt_pan(self, pan: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, pan.encode("ascii"), b"pan")

    def decrypt_pan(self, blob: bytes) -> str:
        try:
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], b"pan").decode("ascii")
        except (InvalidTag, ValueError):
            raise SecurityError("encrypted PAN does not open under this data key") from None


def _create(path: Path, text: str) -> None:
    """Write the key file whole, or not at all: the switch and the simulators may
    start together, and none may ever read it half-written.

    The keys go to a private temporary file first, which is then hard-linked
    to ``path`` -- an atomic step that fails if the name exists, so the first
    process to finish wins and the others read its keys.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process was first: use theirs
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
