"""The switch's exception tree: one root, and the response code an acquirer hears.

    SwitchError
    ├── ConfigError            bad switch.toml / spec file; names the key path
    ├── ProtocolError          bytes that are not a message we accept        → 30
    │   ├── FramingError       length prefix / frame size problems
    │   └── CodecError         pyiso8583 decode/encode failure, validation
    ├── RoutingError           no issuer for this PAN                        → 15
    ├── CardError              PAN fails Luhn                                → 14
    ├── LinkError              the issuer link cannot carry the request      → 91
    │   ├── LinkDown
    │   └── IssuerTimeout
    ├── SecurityError          MAC / PIN / key problems                      → 63
    └── JournalError           the journal cannot record a leg              → 96

Like h11's ``error_status_hint``, an error that reaches an acquirer carries
the ISO 8583 response code (field 39) to answer with, so the shell never has
to decide which code a failure deserves.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "CardError",
    "CodecError",
    "ConfigError",
    "FramingError",
    "IssuerTimeout",
    "JournalError",
    "LinkDown",
    "LinkError",
    "ProtocolError",
    "RoutingError",
    "SecurityError",
    "SwitchError",
    "reason_of",
]


class SwitchError(Exception):
    """Root of every error the switch raises on purpose."""

    response_code: str = "96"


class ConfigError(SwitchError):
    """A configuration or spec file is wrong; the message names the key path."""


class ProtocolError(SwitchError):
    """Bytes that are not a message we accept."""

    response_code = "30"


class FramingError(ProtocolError):
    """The length prefix or frame size is wrong; the stream cannot be trusted."""


class CodecError(ProtocolError):
    """A frame that does not decode or validate against its spec.

    ``partial`` holds what could be read (MTI, F11, F41...) so the switch can
    still answer a format error the sender can match.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        position: int | None = None,
        partial: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.position = position
        self.partial: dict[str, str] = dict(partial or {})

    @property
    def mti(self) -> str | None:
        return self.partial.get("t")

    @property
    def stan(self) -> str | None:
        return self.partial.get("11")


class RoutingError(SwitchError):
    """No issuer link serves this PAN."""

    response_code = "15"


class CardError(SwitchError):
    """The PAN itself is invalid (Luhn, length)."""

    response_code = "14"


class LinkError(SwitchError):
    """The issuer link cannot carry this request."""

    response_code = "91"


class LinkDown(LinkError):
    """The issuer link is not connected.

    ``sent`` tells whether the request's bytes may have reached the issuer
    (the connection died while waiting): then it must be reversed.
    """

    def __init__(self, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


class IssuerTimeout(LinkError):
    """The issuer did not answer within the link's timeout."""


class SecurityError(SwitchError):
    """MAC verification, PIN translation or key handling failed."""

    response_code = "63"


class JournalError(SwitchError):
    """The journal could not record a leg; nothing may go to an issuer unjournaled."""


def reason_of(exc: BaseException) -> str:
    """What went wrong, in words: trio's BrokenResourceError around a failed TLS
    handshake has no text of its own, the SSLError it wraps (its cause) does."""
    return str(exc) or str(exc.__cause__ or "") or type(exc).__name__
