"""Message security on one stream: MAC sign/verify and PIN block translation.

A :class:`Guard` belongs to one acquirer listener or one issuer link and holds
the names of its keys in the key store. It is pure (no I/O but the key store
already in memory): ``encode`` signs when the stream has a MAC key, ``check``
verifies an incoming frame's MAC (SecurityError, response 63, on a bad or
missing one), and :func:`translate_pin` re-encrypts a PIN block from the
acquirer's zone PIN key to the issuer's, in memory only. Receiving accepts the
current key and, during a rotation's grace time, the previous one.
"""

from __future__ import annotations

from collections.abc import Mapping

from specs import Spec
from switch import codec, mac
from switch.errors import SecurityError
from switch.keys import KeyStore
from switch.pin import translate_pin_block

__all__ = ["Guard", "translate_pin"]


class Guard:
    __slots__ = ("keys", "mac_key", "pin_key", "spec")

    def __init__(
        self, spec: Spec, keys: KeyStore | None, *, mac_key: str | None, pin_key: str | None
    ) -> None:
        if (mac_key or pin_key) and keys is None:
            raise SecurityError("a MAC or PIN key is configured but no key store is open")
        self.spec = spec
        self.keys = keys
        self.mac_key = mac_key
        self.pin_key = pin_key

    def encode(self, message: Mapping[str, str]) -> bytes:
        """The message's bytes, with its MAC when this stream is MAC'd."""
        if self.mac_key is None or self.keys is None:
            return codec.encode(message, self.spec)
        return mac.sign(message, self.spec, self.keys.get(self.mac_key))

    def check(self, frame: bytes, message: Mapping[str, str]) -> None:
        """SecurityError unless the frame carries a good MAC (when this stream is MAC'd)."""
        if self.mac_key is None or self.keys is None:
            return
        mac.check(frame, message, self.spec, self.keys.candidates(self.mac_key))


def translate_pin(block_hex: str, pan: str, source: Guard, target: Guard) -> str:
    """The PIN block re-encrypted from ``source``'s zone PIN key to ``target``'s."""
    if (
        source.pin_key is None
        or target.pin_key is None
        or source.keys is None
        or target.keys is None
    ):
        raise SecurityError("a PIN block arrived but PIN translation is not configured here")
    return translate_pin_block(
        block_hex, pan, source.keys.candidates(source.pin_key), target.keys.get(target.pin_key)
    )
