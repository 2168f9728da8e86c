"""``switch decode`` and ``switch encode``: the wire layer at a tester's fingertips.

Parsing only: the bytes are made and read by :mod:`switch.codec` and
:mod:`switch.framing`, masking is :func:`switch.codec.masked`. ``encode``
writes one line of hex to stdout and nothing else there, so scripts can pipe
it (``switch encode ... | switch decode --spec visa -``).

Exit codes: 0 done; 1 the frame does not decode; 2 a usage error (unknown
spec, bad hex, a field the spec cannot carry).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

import specs
from switch import codec
from switch.cards import mask_text
from switch.cli_common import UsageError, echo_json, json_option
from switch.errors import CodecError, FramingError
from switch.framing import FRAMINGS, FrameDecoder, Framing, encode_frame

__all__ = ["COMMANDS", "decode", "encode"]

F = TypeVar("F", bound=Callable[..., Any])
_FIELD_NUMBERS = range(2, 129)


def _spec_options(func: F) -> F:
    func = click.option(
        "--spec-dir",
        "spec_dirs",
        multiple=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Also look for spec files here (before the shipped ones). Repeatable.",
    )(func)
    return click.option(
        "--spec",
        "spec_name",
        required=True,
        metavar="NAME",
        help="Network dialect: iso87ascii, visa, mastercard, belkart, or a file in --spec-dir.",
    )(func)


def _frame_option(help_text: str) -> Callable[[F], F]:
    return click.option("--frame", type=click.Choice(FRAMINGS), default=None, help=help_text)


def _load_spec(name: str, spec_dirs: Sequence[Path]) -> specs.Spec:
    try:
        return specs.load(name, spec_dirs)
    except specs.SpecError as exc:
        raise UsageError(str(exc)) from None


def _read_hex(parts: Sequence[str]) -> bytes:
    text = "".join("".join(parts).split())
    if text in ("", "-"):
        text = "".join(sys.stdin.read().split())
    if text[:2].lower() == "0x":
        text = text[2:]
    bad = next((i for i, ch in enumerate(text) if ch not in "0123456789abcdefABCDEF"), None)
    if bad is not None:
        raise UsageError(f"HEX: {text[bad]!r} at hex digit {bad + 1} is not a hex digit")
    if not text:
        raise UsageError("HEX: no hex digits given")
    if len(text) % 2:
        raise UsageError(f"HEX: {len(text)} hex digits is not a whole number of bytes")
    return bytes.fromhex(text)


def _unframe(data: bytes, kind: str) -> bytes:
    decoder = FrameDecoder(Framing(kind=kind, max_frame=len(data)))
    try:
        frames = decoder.feed(data)
    except FramingError as exc:
        raise UsageError(f"--frame {kind}: {exc}") from None
    if len(frames) != 1 or decoder.pending:
        raise UsageError(
            f"--frame {kind}: expected exactly one whole frame, found {len(frames)} "
            f"and {decoder.pending} byte(s) left over"
        )
    return frames[0]


def _field_order(key: str) -> tuple[int, int]:
    return (0, 0) if key in ("t", "h") else (1, int(key))


@click.command("decode")
@_spec_options
@_frame_option("Strip this length prefix first.")
@click.option("--show-pan", is_flag=True, help="Show PAN, track, PIN, ICC and CVV2 in clear.")
@json_option
@click.argument("hex_digits", metavar="[HEX]...", nargs=-1)
def decode(
    spec_name: str,
    spec_dirs: tuple[Path, ...],
    frame: str | None,
    show_pan: bool,
    as_json: bool,
    hex_digits: tuple[str, ...],
) -> None:
    """Decode one message given as HEX (spaces allowed; '-' or none reads stdin).

    Prints each field with its name. Card data is masked (PAN as first 6 and
    last 4, track data, PIN block, ICC data and CVV2 hidden) unless
    --show-pan. Exit 1 when the bytes do not decode.

    \b
    Example:
        switch decode --spec visa 0800 8020000000000000 0400000000000000 000001 0301
        switch encode --spec visa --mti 0800 11=000001 70=301 | switch decode --spec visa
    """
    spec = _load_spec(spec_name, spec_dirs)
    data = _read_hex(hex_digits)
    if frame:
        data = _unframe(data, frame)
    try:
        message = codec.decode(data, spec)
    except CodecError as exc:
        raise click.ClickException(str(exc)) from None
    shown = message if show_pan else codec.masked(message, spec)
    ordered = {key: shown[key] for key in sorted(shown, key=_field_order)}
    if as_json:
        echo_json(ordered)
        return
    names = {key: spec.field_name(key) for key in ordered}
    width = max(map(len, names.values()))
    for key, value in ordered.items():
        click.echo(f"{key:>4}  {names[key]:<{width}}  {value}")


def _parse_field(arg: str) -> tuple[str, str]:
    key, sep, value = arg.partition("=")
    arg = mask_text(arg)  # a PAN typed in the wrong place is not echoed in clear
    if not sep or not key.isascii() or not key.isdigit():
        raise UsageError(f"{arg!r}: expected FIELD=VALUE with FIELD a number, e.g. 3=000000")
    if int(key) not in _FIELD_NUMBERS:
        raise UsageError(f"{arg!r}: field {int(key)} is not a data element (2-128)")
    return str(int(key)), value


@click.command("encode")
@_spec_options
@click.option("--mti", required=True, help="Message type, 4 digits, e.g. 0100.")
@_frame_option("Add this length prefix.")
@click.argument("fields", metavar="FIELD=VALUE...", nargs=-1)
def encode(
    spec_name: str,
    spec_dirs: tuple[Path, ...],
    mti: str,
    frame: str | None,
    fields: tuple[str, ...],
) -> None:
    """Encode a message; print it as one line of hex on stdout.

    Values are as a decoded message holds them: numeric and text fields as
    written, fixed-length fields at their full length, binary fields (52, 55,
    64...) as hex. Bitmaps are worked out for you.

    \b
    Example:
        switch encode --spec visa --mti 0100 2=4111111111111111 3=000000 \\
            4=000000001000 11=000001 41=TERM0001 49=933
        switch encode --spec belkart --frame 4a --mti 0800 11=000001 70=301
    """
    spec = _load_spec(spec_name, spec_dirs)
    if len(mti) != 4 or not mti.isascii() or not mti.isdigit():
        raise UsageError(f"--mti {mti!r}: expected 4 digits, e.g. 0100")
    message = {"t": mti}
    for arg in fields:
        key, value = _parse_field(arg)
        if key in message:
            raise UsageError(f"field {key} given twice")
        message[key] = value
    try:
        data = codec.encode(message, spec, strict=True)
        if frame:
            data = encode_frame(data, Framing(kind=frame))
    except (CodecError, FramingError) as exc:
        raise UsageError(str(exc)) from None
    click.echo(data.hex().upper())


COMMANDS = [decode, encode]
