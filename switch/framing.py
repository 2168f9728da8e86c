"""Length-prefixed framing, sans I/O: bytes in, whole frames out.

A :class:`FrameDecoder` owns the bytes of one stream that have not yet made a
whole frame. ``feed(data)`` appends and returns every frame now complete, in
order; the same frames come out however the stream is chunked. A frame is the
message bytes *after* the length prefix and the optional fixed header (e.g. a
5-byte TPDU); the header of the last frame is kept in ``last_header`` so a
shell can echo it back.

Framings (``kind``):
    2b    2-byte binary big-endian length (the default)
    4a    4 ASCII digits
    2bcd  2 bytes packed BCD (0000-9999)
    4b    4-byte binary big-endian length

The length counts the header plus the message. A zero length is a keep-alive
(:func:`keep_alive` writes one) and yields nothing. A length over
``max_frame``, or a prefix that is not a length, raises :class:`FramingError`
showing the prefix that arrived (never the bytes after it, which may be card
data): the stream cannot be re-synchronised, so the shell closes that
connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from switch.errors import FramingError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "FRAMINGS",
    "FrameDecoder",
    "Framing",
    "encode_frame",
    "keep_alive",
]

DEFAULT_MAX_FRAME = 8192
FRAMINGS = ("2b", "4a", "2bcd", "4b")
_PREFIX_SIZE = {"2b": 2, "4a": 4, "2bcd": 2, "4b": 4}
_LIMIT = {"2b": 0xFFFF, "4a": 9999, "2bcd": 9999, "4b": 0xFFFFFFFF}


@dataclass(frozen=True, slots=True, kw_only=True)
class Framing:
    """How one stream frames its messages."""

    kind: str = "2b"
    header: bytes = b""
    max_frame: int = DEFAULT_MAX_FRAME

    def __post_init__(self) -> None:
        if self.kind not in _PREFIX_SIZE:
            raise ValueError(
                f"unknown framing {self.kind!r}; expected one of {', '.join(FRAMINGS)}"
            )

    @property
    def prefix_size(self) -> int:
        return _PREFIX_SIZE[self.kind]


def _decode_length(kind: str, prefix: bytes) -> int:
    if kind in ("2b", "4b"):
        return int.from_bytes(prefix, "big")
    if kind == "4a":
        if not prefix.isdigit():
            raise FramingError(f"length prefix {prefix!r} is not 4 ASCII digits")
        return int(prefix)
    text = prefix.hex()
    if not text.isdigit():
        raise FramingError(f"length prefix 0x{text} is not packed BCD")
    return int(text)


def _encode_length(kind: str, length: int) -> bytes:
    if length > _LIMIT[kind]:
        raise FramingError(f"frame of {length} bytes does not fit a {kind} length prefix")
    if kind == "2b":
        return length.to_bytes(2, "big")
    if kind == "4b":
        return length.to_bytes(4, "big")
    if kind == "4a":
        return b"%04d" % length
    return bytes.fromhex(f"{length:04d}")


def keep_alive(framing: Framing | None = None) -> bytes:
    """A zero-length frame: the peer's decoder yields nothing for it."""
    return _encode_length((framing or _DEFAULT).kind, 0)


def encode_frame(
    message: bytes, framing: Framing | None = None, header: bytes | None = None
) -> bytes:
    """Prefix ``message`` (and the framing's header, or ``header``) with its length."""
    framing = framing or _DEFAULT
    head = framing.header if header is None else header
    size = len(head) + len(message)
    if size > framing.max_frame:
        raise FramingError(f"frame of {size} bytes exceeds the maximum of {framing.max_frame}")
    return _encode_length(framing.kind, size) + head + message


_DEFAULT = Framing()


class FrameDecoder:
    """Accumulates stream bytes and returns the whole frames they contain.

    A bad length prefix breaks the stream for good. The frames that arrived
    whole before it are still returned (so their answers are not lost, and
    the frames do not depend on how the stream was chunked); the
    :class:`FramingError` is raised by that call when it found no frame
    before the bad prefix, else by the next call to ``feed``.
    """

    __slots__ = ("_broken", "_buffer", "framing", "last_header")

    def __init__(self, framing: Framing | None = None) -> None:
        self.framing = framing or _DEFAULT
        self._buffer = bytearray()
        self._broken: FramingError | None = None
        self.last_header = b""

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a whole frame."""
        return len(self._buffer)

    @property
    def error(self) -> FramingError | None:
        """What broke the stream, once a bad prefix has arrived (even if ``feed``
        returned the frames before it instead of raising): nothing more will come."""
        return self._broken

    def feed(self, data: bytes) -> list[bytes]:
        if self._broken is not None:
            raise self._broken
        if data:
            self._buffer += data
        frames: list[bytes] = []
        buf = self._buffer
        prefix = self.framing.prefix_size
        header = len(self.framing.header)
        start = 0
        try:
            while len(buf) - start >= prefix:
                length = self._length(bytes(buf[start : start + prefix]))
                if length == 0:  # keep-alive
                    start += prefix
                    continue
                end = start + prefix + length
                if len(buf) < end:
                    break
                body = start + prefix
                if header:
                    self.last_header = bytes(buf[body : body + header])
                frames.append(bytes(buf[body + header : end]))
                start = end
        except FramingError as exc:
            self._broken = exc
            if not frames:
                raise
        finally:
            del buf[:start]
        return frames

    def _length(self, prefix: bytes) -> int:
        """The length ``prefix`` announces, checked."""
        framing = self.framing
        try:
            length = _decode_length(framing.kind, prefix)
            if length > framing.max_frame:
                raise FramingError(
                    f"frame length {length} exceeds the maximum of {framing.max_frame}"
                )
            if 0 < length < len(framing.header):
                raise FramingError(
                    f"frame length {length} is shorter than the {len(framing.header)}-byte header"
                )
        except FramingError as exc:
            # Only the prefix: the bytes after it are message bytes, and after a
            # miscounted length they are the middle of a message (a PAN, track 2).
            raise FramingError(
                f"{exc} ({framing.kind} framing; arrived: {prefix.hex(' ')})"
            ) from None
        return length
