"""Replaying testers' message traces against a running switch (``switch replay``).

A trace is JSON Lines, one request per line::

    {"request": {"t": "0100", "2": "4111111111111111", "3": "000000", "4": "000000001000",
                 "41": "TERM0001", "42": "SHOP00000000001", "49": "933"},
     "expect": {"t": "0110", "39": "00", "38": "*present", "11": "*echo", "44": "*absent"},
     "delay_ms": 50}

- ``request`` holds acquirer-dialect fields by number (``"t"`` or ``"mti"`` is
  the MTI); ``hex`` may replace it with a whole encoded message (no length
  prefix). Fields 7, 11, 12 and 13 are filled in when absent, so a trace can
  be replayed again and again without the switch taking it for a duplicate.
- A request value ``"*from:N:F"`` is field F of the request sent on line N;
  ``"*original:N"`` is original data elements (F90) for line N: its MTI, F11,
  F7 and zeros for the institution ids. That is how a reversal in a trace
  names the request it reverses.
- ``expect`` maps answer fields to matchers: a literal value (equal),
  ``"*present"``, ``"*absent"``, ``"*echo"`` (equal to the request's value).
- ``delay_ms`` (wait after the previous line was sent) or ``ts`` (ISO time
  or epoch seconds of the original send) drive ``--timing original``.

The parsing, scheduling, matching and golden-trace building here are pure;
:func:`run_trace` is the trio shell that sends and collects.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

import specs
from switch import codec
from switch.cards import mask_pan, mask_text
from switch.client import AcquirerClient, next_stan
from switch.ecommerce import mask_secrets
from switch.errors import CodecError, reason_of
from switch.messages import response_code_meaning
from switch.translate import transmission_time

__all__ = [
    "MATCHERS",
    "FieldDiff",
    "LineResult",
    "TraceError",
    "TraceLine",
    "compare",
    "describe",
    "display_value",
    "golden_line",
    "parse_trace",
    "prepare_request",
    "read_trace",
    "run_trace",
    "schedule",
]

PRESENT, ABSENT, ECHO = "*present", "*absent", "*echo"
MATCHERS = (PRESENT, ABSENT, ECHO)
_FIELD_KEY = re.compile(r"^(t|[1-9][0-9]{0,2})$")
_FROM = re.compile(r"^\*from:(\d+):(t|\d{1,3})$")
_ORIGINAL = re.compile(r"^\*original:(\d+)$")
# Answer fields that change on every run: a golden trace checks they are there.
_VOLATILE = frozenset({"7", "12", "13", "37", "38"})
# Never shown in clear: track data, PIN block, ICC data, MAC.
_SECRET_FIELDS = frozenset({"35", "36", "45", "52", "55", "64", "128"})


class TraceError(ValueError):
    """A trace line is malformed; the message names the line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceLine:
    number: int
    request: Mapping[str, str] | None
    hex: str | None
    expect: Mapping[str, str]
    delay_ms: float | None = None
    ts: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FieldDiff:
    field: str
    expected: str
    got: str | None
    reason: str


@dataclass(slots=True, kw_only=True)
class LineResult:
    number: int
    request: dict[str, str]
    answer: dict[str, str] | None = None
    diffs: list[FieldDiff] = field(default_factory=list)
    latency_ms: float | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not self.diffs


# -- parsing ----------------------------------------------------------------------


def _json_kind(value: Any) -> str:
    """What a JSON value is, for an error message that must not echo it (it may be a PAN)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return {type(None): "null", list: "an array", dict: "an object"}.get(type(value), "a value")


def _finite(value: Any) -> bool:
    """A JSON number other than NaN and the infinities (which json.loads accepts)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _timestamp(number: int, value: Any) -> float:
    if _finite(value):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.timestamp()
    raise TraceError(f"line {number}: ts must be an ISO time or epoch seconds, got {value!r}")


def _fields(number: int, name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TraceError(f"line {number}: {name} must be an object of field: value")
    out: dict[str, str] = {}
    for key, val in value.items():
        key = "t" if key == "mti" else str(key)
        if not _FIELD_KEY.match(key):
            raise TraceError(f"line {number}: {name}: {key!r} is not a field number")
        if not isinstance(val, str):
            raise TraceError(
                f"line {number}: {name}.{key}: expected a string, got {_json_kind(val)}"
            )
        out[key] = val
    return out


def _check_references(number: int, request: Mapping[str, str]) -> None:
    for key, value in request.items():
        if not value.startswith("*"):
            continue
        ref = _FROM.match(value) or _ORIGINAL.match(value)
        if ref is None:
            raise TraceError(
                f"line {number}: request.{key}: {value!r} is not *from:N:F or *original:N"
            )
        if not 1 <= int(ref.group(1)) < number:
            raise TraceError(f"line {number}: request.{key}: {value!r} must name an earlier line")


def _line(number: int, obj: Any) -> TraceLine:
    if not isinstance(obj, dict):
        raise TraceError(f"line {number}: expected a JSON object")
    unknown = set(obj) - {"request", "hex", "expect", "delay_ms", "ts", "note"}
    if unknown:
        raise TraceError(f"line {number}: unknown key(s) {', '.join(sorted(unknown))}")
    if ("request" in obj) == ("hex" in obj):
        raise TraceError(f"line {number}: give exactly one of request or hex")
    request = _fields(number, "request", obj["request"]) if "request" in obj else None
    if request is not None:
        if "t" not in request:
            raise TraceError(f"line {number}: request has no MTI (t)")
        _check_references(number, request)
    hex_value = obj.get("hex")
    if hex_value is not None:
        if not isinstance(hex_value, str):
            raise TraceError(f"line {number}: hex must be a string")
        try:
            bytes.fromhex(hex_value)
        except ValueError:
            raise TraceError(f"line {number}: hex is not hexadecimal") from None
    expect = _fields(number, "expect", obj.get("expect", {}))
    for key, matcher in expect.items():
        if matcher.startswith("*") and matcher not in MATCHERS:
            raise TraceError(
                f"line {number}: expect.{key}: unknown matcher {matcher!r} "
                f"(use a value, {', '.join(MATCHERS)})"
            )
    delay = obj.get("delay_ms")
    if delay is not None and (not _finite(delay) or delay < 0):
        raise TraceError(f"line {number}: delay_ms must be a number >= 0")
    ts = _timestamp(number, obj["ts"]) if "ts" in obj else None
    return TraceLine(
        number=number,
        request=request,
        hex=hex_value,
        expect=expect,
        delay_ms=None if delay is None else float(delay),
        ts=ts,
        raw=obj,
    )


def parse_trace(text: str) -> list[TraceLine]:
    """Every non-blank line that is not a ``#`` comment is one request."""
    lines = []
    for number, text_line in enumerate(text.splitlines(), start=1):
        stripped = text_line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise TraceError(f"line {number}: not JSON: {exc.msg}") from None
        lines.append(_line(number, obj))
    return lines


def read_trace(path: str | Path) -> list[TraceLine]:
    return parse_trace(Path(path).read_text(encoding="utf-8"))


# -- scheduling and requests ------------------------------------------------------


def schedule(lines: Sequence[TraceLine], timing: str) -> list[float]:
    """Seconds after the start at which each line is sent.

    ``fast``: all at 0 (the concurrency limit paces them). ``original``:
    ``ts`` relative to the first line with one, else the running sum of
    ``delay_ms``; never earlier than the line before.
    """
    if timing == "fast":
        return [0.0] * len(lines)
    if timing != "original":
        raise ValueError(f"timing must be original or fast, got {timing!r}")
    first_ts = next((line.ts for line in lines if line.ts is not None), None)
    offsets: list[float] = []
    at = 0.0
    for line in lines:
        if line.ts is not None and first_ts is not None:
            at = max(at, line.ts - first_ts)
        elif line.delay_ms is not None:
            at += line.delay_ms / 1000
        offsets.append(at)
    return offsets


def _resolve(value: str, sent: Mapping[int, Mapping[str, str]]) -> str:
    if m := _FROM.match(value):
        return sent.get(int(m.group(1)), {}).get(m.group(2), "")
    if m := _ORIGINAL.match(value):
        orig = sent.get(int(m.group(1)), {})
        return f"{orig.get('t', '0000')}{orig.get('11', '0' * 6)}{orig.get('7', '0' * 10)}" + (
            "0" * 22
        )
    return value


def prepare_request(
    line: TraceLine,
    spec: specs.Spec,
    *,
    now: dt.datetime,
    sent: Mapping[int, Mapping[str, str]],
    stan: Callable[[], str] = next_stan,
) -> dict[str, str]:
    """The request as it goes on the wire: references resolved, 7/11/12/13 filled."""
    if line.hex is not None:
        try:
            return codec.decode(bytes.fromhex(line.hex), spec)
        except CodecError as exc:
            raise TraceError(f"line {line.number}: hex does not decode: {exc}") from None
    assert line.request is not None
    request = {k: _resolve(v, sent) for k, v in line.request.items()}
    request.setdefault("7", transmission_time(now))
    request.setdefault("11", stan())
    request.setdefault("12", now.strftime("%H%M%S"))
    request.setdefault("13", now.strftime("%m%d"))
    return request


# -- matching ---------------------------------------------------------------------


def display_value(number: str, value: str | None, spec: specs.Spec | None = None) -> str | None:
    """A field value safe to print: PAN masked, CVV2, CAVV and secrets hidden.

    With the dialect known, its e-commerce field shows everything but the
    CVV2 and CAVV; without it, that field is hidden whole.
    """
    if value is None:
        return None
    if number == "2":
        return mask_pan(value)
    if number in _SECRET_FIELDS:
        return "*" * min(len(value), 8)
    eco_field = spec.ecommerce.field if spec is not None and spec.ecommerce else "48"
    if number == eco_field:
        if spec is None or spec.ecommerce is None:
            return "*" * min(len(value), 8)
        return mask_text(mask_secrets(spec, value))
    return mask_text(value)


def compare(
    expect: Mapping[str, str], request: Mapping[str, str], answer: Mapping[str, str]
) -> list[FieldDiff]:
    """Every expectation the answer does not meet, in field order."""
    diffs = []
    for key in sorted(expect, key=lambda k: -1 if k == "t" else int(k)):
        matcher, got = expect[key], answer.get(key)
        if matcher == PRESENT:
            if got is None:
                diffs.append(FieldDiff(key, matcher, None, "expected present, absent"))
        elif matcher == ABSENT:
            if got is not None:
                diffs.append(FieldDiff(key, matcher, got, "expected absent, present"))
        elif matcher == ECHO:
            want = request.get(key)
            if got != want:
                diffs.append(FieldDiff(key, matcher, got, f"expected the request's {want!r}"))
        elif got != matcher:
            diffs.append(FieldDiff(key, matcher, got, f"expected {matcher!r}"))
    return diffs


def describe(diff: FieldDiff, spec: specs.Spec | None = None) -> str:
    """One line of a field-level diff, safe to print."""
    name = f" ({spec.field_name(diff.field)})" if spec is not None else ""
    got = display_value(diff.field, diff.got, spec)
    reason = diff.reason
    if diff.expected not in MATCHERS:
        reason = f"expected {display_value(diff.field, diff.expected, spec)!r}"
    elif diff.expected == ECHO:
        reason = "expected the request's value"
    text = f"{diff.field}{name}: {reason}, got {'(absent)' if got is None else repr(got)}"
    if diff.field == "39" and diff.got is not None:
        text += f" — {response_code_meaning(diff.got)}"
    return text


def golden_line(
    line: TraceLine, request: Mapping[str, str], answer: Mapping[str, str] | None
) -> dict[str, Any]:
    """The trace line again, its ``expect`` rewritten from the answer received.

    Fields that change on every run (F7, F37 assigned by the switch, F38...)
    become ``*present``; fields equal to the request's become ``*echo``; an
    approval code missing from a decline becomes ``*absent``.
    """
    out = {k: v for k, v in line.raw.items() if k != "expect"}
    if answer is None:
        out["expect"] = {}
        out["note"] = "no answer when recorded"
        return out
    expect: dict[str, str] = {}
    for key in sorted(answer, key=lambda k: -1 if k == "t" else int(k) if k.isdigit() else 999):
        if not _FIELD_KEY.match(key):
            continue
        value = answer[key]
        if request.get(key) == value:
            expect[key] = ECHO
        elif key in _VOLATILE or key == "2":
            expect[key] = PRESENT
        else:
            expect[key] = value
    if "38" not in answer:
        expect["38"] = ABSENT
    out["expect"] = expect
    return out


# -- the shell --------------------------------------------------------------------


async def run_trace(
    lines: Sequence[TraceLine],
    *,
    host: str,
    port: int,
    spec: specs.Spec,
    framing: str,
    concurrency: int = 1,
    timing: str = "original",
    timeout: float = 10.0,
    on_done: Callable[[LineResult], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> list[LineResult]:
    """Send every line in order, at most ``concurrency`` in flight; collect results.

    With ``ssl_context``, over TLS: a handshake that fails raises
    trio.BrokenResourceError before any line is sent."""
    offsets = schedule(lines, timing)
    results: list[LineResult | None] = [None] * len(lines)
    sent: dict[int, dict[str, str]] = {}
    limiter = trio.CapacityLimiter(max(1, concurrency))
    client = await AcquirerClient.connect(
        host, port, spec=spec.name, framing=framing, ssl_context=ssl_context
    )

    async def one(index: int, line: TraceLine, request: dict[str, str], token: object) -> None:
        result = LineResult(number=line.number, request=request)
        try:
            started = trio.current_time()
            exchange = await client.submit(request)
            with trio.move_on_after(timeout):
                await exchange.done.wait()
            if exchange.answer is None:
                if not client.closed.is_set():
                    result.error = f"no answer within {timeout:g}s"
                else:  # with why, when the read broke (a TLS alert, a reset)
                    why = f": {client.close_reason}" if client.close_reason else ""
                    result.error = f"connection closed before the answer{why}"
            else:
                result.answer = exchange.answer
                result.latency_ms = (trio.current_time() - started) * 1000
                result.diffs = compare(line.expect, request, exchange.answer)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, CodecError) as exc:
            # A TLS stream broken by a read raises here without a cause: the read's is why.
            result.error = f"cannot send: {client.close_reason or reason_of(exc)}"
        finally:
            limiter.release_on_behalf_of(token)
        results[index] = result
        if on_done is not None:
            on_done(result)

    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        start = trio.current_time()
        async with trio.open_nursery() as senders:
            for index, line in enumerate(lines):
                await trio.sleep_until(start + offsets[index])
                token = object()
                await limiter.acquire_on_behalf_of(token)
                try:
                    request = prepare_request(line, spec, now=dt.datetime.now(dt.UTC), sent=sent)
                except TraceError as exc:
                    limiter.release_on_behalf_of(token)
                    results[index] = LineResult(number=line.number, request={}, error=str(exc))
                    if on_done is not None:
                        on_done(results[index])  # type: ignore[arg-type]
                    continue
                sent[line.number] = request
                senders.start_soon(one, index, line, request, token)
        await client.aclose()
    return [r for r in results if r is not None]
