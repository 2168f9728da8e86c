"""The benchmark's load driver: closed loop (K in flight) and open loop (a rate).

Run as its own process (``python -m bench.load ... --json``) so its CPU is
not the switch's. It speaks either the acquirer dialect (to the switch) or an
issuer dialect (straight to a simulator, or through the frame relay), using
the same request the switch would send there (switch.translate.to_issuer),
so the three targets do the same work per transaction.

Why not switch.client.AcquirerClient: it encodes every request and wakes an
Event per answer -- right for tools, but on a 2-core machine the driver's
CPU is taken from the system under test. Here each connection encodes one
template request and later frames only patch F11 (and F37) in place; the
patch is checked once by decoding it (:func:`_patcher`), and falls back to a
full encode when a dialect's layout does not allow it. Answers are decoded
and checked (MTI class, F11, F41 where sent, F39 = 00): anything else is an
error, and a valid run has none.

Latency: closed loop from the moment a request is queued; open loop from the
moment it was *due* (so a stalled driver or target shows as latency, not as
a lower rate -- no coordinated omission). Samples, TPS and percentiles come
from requests due in the measurement window after ``warmup``; errors and
timeouts count over the whole run.

When open-loop requests fall due is the ``arrivals`` schedule
(:func:`arrival_times`): ``even``, one every 1/rate seconds, or ``poisson``,
independent exponential gaps of mean 1/rate from a seeded generator -- how
requests from many independent shops arrive, bursts and lulls included, and
the same schedule run after run for a seed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

import specs
from switch import codec
from switch.cards import luhn_valid
from switch.client import build_request
from switch.errors import CodecError, FramingError
from switch.framing import FrameDecoder, Framing, encode_frame
from switch.outbox import Outbox
from switch.translate import to_issuer

__all__ = [
    "ARRIVALS",
    "LoadResult",
    "LoadSpec",
    "arrival_times",
    "bench_pans",
    "main",
    "percentile",
    "run_load",
]

_ACQUIRER_SPEC = "iso87ascii"
_INSTITUTION_ID = "400001"
_TICK = 0.0005  # open loop: the pacer's finest step (s)
ARRIVALS = ("even", "poisson")  # open loop: see arrival_times


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    host: str = "127.0.0.1"
    port: int
    spec: str = _ACQUIRER_SPEC
    framing: str = "2b"
    dialect: str = "acquirer"  # "acquirer": to the switch; "issuer": to a simulator or relay
    mode: str = "closed"  # "closed": K in flight; "open": a fixed rate
    connections: int = 10
    inflight: int = 64
    rate: float = 1000.0
    arrivals: str = "even"  # open loop: ARRIVALS, see arrival_times
    seed: int = 1  # the poisson schedule's generator
    duration: float = 10.0
    warmup: float = 1.0
    timeout: float = 5.0
    cards: int = 1000  # requests cycle over bench_pans(cards): see bench_pans
    amount: int = 1  # minor units: a long run must not exhaust the card
    samples: bool = False  # include every latency sample (ms) in the result
    # Say HANDSHAKE_CONNECTED on stderr once connected and wait for a line on
    # stdin before the first request; once drained, say HANDSHAKE_DRAINED and
    # wait again before closing: the parent's window holds exactly this run's
    # requests and answers, no connecting or closing (bench.instructions).
    handshake: bool = False


@dataclass(slots=True, kw_only=True)
class LoadResult:
    mode: str
    connections: int
    inflight: int | None
    rate: float | None
    arrivals: str | None
    duration: float
    sent: int = 0
    answered: int = 0
    timeouts: int = 0
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    measured: int = 0
    tps: float = 0.0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    driver_cpu_s: float = 0.0
    # ms of each second the driver's event loop was runnable but had no core
    driver_runq_wait_ms_per_s: float | None = None
    samples_ms: list[float] | None = None

    @property
    def valid(self) -> bool:
        return self.errors == 0 and self.timeouts == 0 and self.answered == self.sent > 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["valid"] = self.valid
        if out["samples_ms"] is None:
            del out["samples_ms"]
        return out


def arrival_times(rate: float, arrivals: str = "even", seed: int = 1) -> Iterator[float]:
    """When each request of an open loop at ``rate`` is due, in seconds from the start.

    ``even``: request i at i/rate. ``poisson``: exponential gaps of mean
    1/rate, from ``random.Random(seed)``, the first request at 0.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if arrivals == "even":
        i = 0
        while True:
            yield i / rate
            i += 1
    elif arrivals == "poisson":
        gap = random.Random(seed).expovariate
        at = 0.0
        while True:
            yield at
            at += gap(rate)
    else:
        raise ValueError(f"arrivals must be one of {', '.join(ARRIVALS)}, got {arrivals!r}")


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of sorted ``values`` (``pct`` in 0..100)."""
    if not values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


# -- frames -----------------------------------------------------------------------


def bench_pans(count: int) -> list[str]:
    """``count`` Luhn-valid Visa PANs (BIN 499) for the bench's own card book.

    Load spreads over many cards because an issuer checks a card's daily
    spend: one card carrying a whole run makes that check grow with the run.
    """
    pans = []
    for i in range(count):
        body = f"499{i:012d}"
        pans.append(next(body + d for d in "0123456789" if luhn_valid(body + d)))
    return pans


def _request(spec: LoadSpec, terminal: str) -> dict[str, str]:
    pan = bench_pans(1)[0]
    request = build_request(pan=pan, amount=spec.amount, terminal=terminal, stan="000001")
    if spec.dialect == "acquirer":
        return request
    return to_issuer(
        request,
        acquirer_spec=specs.load(_ACQUIRER_SPEC),
        issuer_spec=specs.load(spec.spec),
        stan="000001",
        rrn="000000000001",
        now=dt.datetime.now(dt.UTC),
        institution_id=_INSTITUTION_ID,
    )


_Encoder = Callable[[str], bytes]
_ENCODERS: dict[str, _Encoder] = {
    "ascii": lambda digits: digits.encode("ascii"),
    "cp500": lambda digits: digits.encode("cp500"),
    "bcd": bytes.fromhex,
}


def _patcher(
    message: dict[str, str], spec: specs.Spec, framing: Framing, keys: Sequence[str]
) -> Callable[[dict[str, str]], bytes]:
    """``frame(values)``: the frame of ``message`` with ``values`` for ``keys``.

    Each key must be a fixed-width digits field; its bytes are found by
    encoding twice with different digits, and the result is proven by a
    decode. Anything unexpected falls back to a full encode.
    """

    def full(values: dict[str, str]) -> bytes:
        return encode_frame(codec.encode({**message, **values}, spec), framing)

    slots: list[tuple[str, int, int, _Encoder]] = []
    for key in keys:
        width = len(message[key])
        zeros = full({key: "0" * width})
        ones = full({key: "1" * width})
        diff = [i for i, (a, b) in enumerate(zip(zeros, ones, strict=True)) if a != b]
        if not diff or len(zeros) != len(ones):
            return full
        start, end = diff[0], diff[-1] + 1
        encoder = next((e for e in _ENCODERS.values() if e("1" * width) == ones[start:end]), None)
        if encoder is None or encoder("0" * width) != zeros[start:end]:
            return full
        slots.append((key, start, end, encoder))
    template = bytearray(full({}))

    def patched(values: dict[str, str]) -> bytes:
        for key, start, end, encoder in slots:
            template[start:end] = encoder(values[key])
        return bytes(template)

    probe = {key: str(7 + i).zfill(len(message[key])) for i, key in enumerate(keys)}
    body = FrameDecoder(framing).feed(patched(probe))
    if len(body) != 1 or codec.decode(body[0], spec) != {
        **codec.decode(FrameDecoder(framing).feed(full({}))[0], spec),
        **probe,
    }:
        return full
    return patched


# -- the driver ---------------------------------------------------------------------


class _Conn:
    """One connection: its template, what is waiting for an answer, a writer."""

    def __init__(self, stream: trio.SocketStream, spec: LoadSpec, terminal: str) -> None:
        self.stream = stream
        self.terminal = terminal
        self.decoder = FrameDecoder(Framing(kind=spec.framing))
        self.waiting: dict[str, float] = {}  # stan -> the time its latency counts from
        self.outbox = Outbox(stream, gather=False)  # the pacer queues a tick's requests itself
        self.quota = 0  # closed loop: requests this connection keeps in flight


class _Driver:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.codec_spec = specs.load(spec.spec)
        self.framing = Framing(kind=spec.framing)
        self.keys = ("2", "11") if spec.dialect == "acquirer" else ("2", "11", "37")
        self.pans = bench_pans(spec.cards)
        self.frames: dict[str, Callable[[dict[str, str]], bytes]] = {}
        self.result = LoadResult(
            mode=spec.mode,
            connections=spec.connections,
            inflight=spec.inflight if spec.mode == "closed" else None,
            rate=spec.rate if spec.mode == "open" else None,
            arrivals=spec.arrivals if spec.mode == "open" else None,
            duration=spec.duration,
        )
        self.samples: list[float] = []
        self.seq = 0
        self.t0 = 0.0
        self.window = (0.0, 0.0)
        self.sending = True
        self.outstanding = 0
        self.drained = trio.Event()

    # -- requests and answers --

    def _frame(self, conn: _Conn) -> tuple[str, bytes]:
        self.seq += 1
        stan = f"{self.seq % 1_000_000 or 1:06d}"  # unique over a run of < 1M requests
        values = {
            "2": self.pans[self.seq % len(self.pans)],
            "11": stan,
            "37": f"{self.seq % 1_000_000_000_000:012d}",
        }
        return stan, self.frames[conn.terminal](values)

    def _queue(self, conn: _Conn, since: float) -> None:
        stan, frame = self._frame(conn)
        conn.waiting[stan] = since
        conn.outbox.put(frame)
        self.result.sent += 1
        self.outstanding += 1

    def _error(self, text: str) -> None:
        self.result.errors += 1
        if len(self.result.error_examples) < 5:
            self.result.error_examples.append(text)

    def _answered(self, conn: _Conn, frame: bytes, now: float) -> None:
        try:
            answer = codec.decode(frame, self.codec_spec)
        except CodecError as exc:
            self._error(f"undecodable answer: {exc}")
            return
        since = conn.waiting.pop(answer.get("11", ""), None)
        if since is None:
            self._error(f"unmatched answer {answer.get('t')} F11 {answer.get('11')}")
            return
        self.outstanding -= 1
        self.result.answered += 1
        if answer.get("t") != "0110" or answer.get("41", conn.terminal) != conn.terminal:
            self._error(f"mismatched answer {answer.get('t')} F41 {answer.get('41')}")
        elif answer.get("39") != "00":
            self._error(f"response code {answer.get('39')}")
        start, end = self.window
        if start <= since < end:
            self.samples.append((now - since) * 1000.0)
        if start <= now < end:
            self.result.measured += 1
        if self.spec.mode == "closed" and self.sending:
            self._queue(conn, now)
        if not self.sending and self.outstanding == 0:
            self.drained.set()

    # -- tasks --

    async def _reader(self, conn: _Conn) -> None:
        try:
            while data := await conn.stream.receive_some(65536):
                now = time.perf_counter()
                for frame in conn.decoder.feed(bytes(data)):
                    self._answered(conn, frame, now)
                if conn.outbox:
                    await conn.outbox.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError, FramingError) as exc:
            self._error(f"connection {conn.terminal}: {exc}")
            return
        if self.sending or conn.waiting:
            self._error(f"connection {conn.terminal} closed by the target")

    async def _pace(self, conns: list[_Conn]) -> None:
        """Open loop: request i is due at t0 + its arrival time, sent round-robin."""
        end, t0 = self.window[1], self.t0
        schedule = arrival_times(self.spec.rate, self.spec.arrivals, self.spec.seed)
        due, at = 0, t0 + next(schedule)
        while at < end:  # every request due before the end goes out, however late
            now = time.perf_counter()
            touched = set()
            while at <= now and at < end:
                conn = conns[due % len(conns)]
                self._queue(conn, at)
                touched.add(conn)
                due += 1
                at = t0 + next(schedule)
            for conn in touched:
                await conn.outbox.flush()
            if at >= end:
                return
            # Wake at most every _TICK: requests due within it go out together.
            next_due = at - time.perf_counter()
            await trio.sleep(max(_TICK, next_due))

    async def _sweep(self, conns: list[_Conn]) -> None:
        """Count requests older than the timeout; a closed loop refills their slot."""
        while True:
            await trio.sleep(min(1.0, self.spec.timeout / 2))
            limit = time.perf_counter() - self.spec.timeout
            for conn in conns:
                for stan in [s for s, since in conn.waiting.items() if since < limit]:
                    del conn.waiting[stan]
                    self.result.timeouts += 1
                    self.outstanding -= 1
                    if self.spec.mode == "closed" and self.sending:
                        self._queue(conn, time.perf_counter())
                await conn.outbox.flush()
            if not self.sending and self.outstanding == 0:
                self.drained.set()

    async def run(self) -> LoadResult:
        spec = self.spec
        conns = []
        for i in range(spec.connections):
            stream = await trio.open_tcp_stream(spec.host, spec.port)
            terminal = f"BN{i:06d}"
            conn = _Conn(stream, spec, terminal)
            self.frames[terminal] = _patcher(
                _request(spec, terminal), self.codec_spec, self.framing, self.keys
            )
            conn.quota = spec.inflight // spec.connections + (
                1 if i < spec.inflight % spec.connections else 0
            )
            conns.append(conn)
        if spec.handshake:
            await _handshake(HANDSHAKE_CONNECTED)
        cpu0 = _cpu_seconds()
        wait0, wall0 = runq_wait_s(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(self._reader, conn)
            nursery.start_soon(self._sweep, conns)
            self.t0 = time.perf_counter()
            self.window = (self.t0 + spec.warmup, self.t0 + spec.warmup + spec.duration)
            if spec.mode == "closed":
                for conn in conns:
                    for _ in range(conn.quota):
                        self._queue(conn, self.t0)
                    await conn.outbox.flush()
                await trio.sleep_until(_trio_time(self.window[1]))
            else:
                await self._pace(conns)
            self.sending = False
            if self.outstanding == 0:
                self.drained.set()
            with trio.move_on_after(spec.timeout + 1):
                await self.drained.wait()
            nursery.cancel_scope.cancel()
        if spec.handshake:
            await _handshake(HANDSHAKE_DRAINED)
        for conn in conns:
            self.result.timeouts += len(conn.waiting)
            await conn.stream.aclose()
        self.result.driver_cpu_s = round(_cpu_seconds() - cpu0, 3)
        self.result.driver_runq_wait_ms_per_s = runq_wait_ms_per_s(
            wait0, runq_wait_s(), time.perf_counter() - wall0
        )
        self._summarise()
        return self.result

    def _summarise(self) -> None:
        samples = sorted(self.samples)
        result = self.result
        result.tps = round(result.measured / self.spec.duration, 1)
        result.latency_ms = {
            name: None if value is None else round(value, 3)
            for name, value in (
                ("p50", percentile(samples, 50)),
                ("p95", percentile(samples, 95)),
                ("p99", percentile(samples, 99)),
                ("max", samples[-1] if samples else None),
            )
        }
        if self.spec.samples:
            result.samples_ms = [round(s, 3) for s in self.samples]


HANDSHAKE_CONNECTED = "bench.load: connected"
HANDSHAKE_DRAINED = "bench.load: drained"


async def _handshake(line: str) -> None:
    """Tell the parent where the run is (stderr) and wait for its go (a line on stdin)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    await trio.to_thread.run_sync(sys.stdin.readline)


def _trio_time(perf: float) -> float:
    """A ``time.perf_counter`` instant on trio's clock."""
    return trio.current_time() + (perf - time.perf_counter())


def runq_wait_s(pid: int | str = "self", proc: Path = Path("/proc")) -> float | None:
    """Seconds the main thread of ``pid`` has been runnable but waiting for a core.

    The kernel's scheduler account (``/proc/<pid>/schedstat``, second field,
    nanoseconds): for an event loop, time it was due to run and did not, which
    open-loop latency counts in full. None where there is no such account.
    The main thread alone: it runs the event loop, and its account never
    vanishes with a thread that ended mid-phase.
    """
    try:
        return int((proc / str(pid) / "schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def runq_wait_ms_per_s(start: float | None, end: float | None, wall_s: float) -> float | None:
    """Run-queue wait between two :func:`runq_wait_s` readings, per second of ``wall_s``."""
    if start is None or end is None or wall_s <= 0:
        return None
    return round((end - start) / wall_s * 1000, 1)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_load(spec: LoadSpec) -> LoadResult:
    """Drive ``spec`` against its target and return what happened."""
    return await _Driver(spec).run()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench.load", description="Closed- or open-loop ISO 8583 load; JSON result."
    )
    defaults = LoadSpec(port=0)
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--spec", default=defaults.spec, help="dialect spec of the target")
    parser.add_argument("--framing", default=defaults.framing)
    parser.add_argument("--dialect", choices=("acquirer", "issuer"), default=defaults.dialect)
    parser.add_argument("--mode", choices=("closed", "open"), default=defaults.mode)
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--inflight", type=int, default=defaults.inflight)
    parser.add_argument("--rate", type=float, default=defaults.rate)
    parser.add_argument("--arrivals", choices=ARRIVALS, default=defaults.arrivals)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--duration", type=float, default=defaults.duration)
    parser.add_argument("--warmup", type=float, default=defaults.warmup)
    parser.add_argument("--timeout", type=float, default=defaults.timeout)
    parser.add_argument("--cards", type=int, default=defaults.cards)
    parser.add_argument("--amount", type=int, default=defaults.amount)
    parser.add_argument("--samples", action="store_true", help="include every latency sample")
    parser.add_argument(
        "--handshake",
        action="store_true",
        help="wait for a line on stdin once connected and again once drained (see LoadSpec)",
    )
    parser.add_argument(
        "--cpus", type=_cpu_list, help="run on these CPUs only, e.g. 1 or 1,2 (switch bench --pin)"
    )
    return parser


def _cpu_list(text: str) -> set[int]:
    try:
        cpus = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPU numbers like 1,2, got {text!r}") from None
    if not cpus or min(cpus) < 0:
        raise argparse.ArgumentTypeError(f"expected CPU numbers like 1,2, got {text!r}")
    return cpus


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bench.load --port P [...]``: prints one JSON object."""
    args = vars(_parser().parse_args(argv))
    cpus = args.pop("cpus")
    if cpus is not None:  # before trio starts a thread: they inherit it
        os.sched_setaffinity(0, cpus)
    spec = LoadSpec(**args)
    if spec.mode == "closed" and spec.inflight < spec.connections:
        spec = LoadSpec(**{**args, "inflight": spec.connections})
    result = trio.run(run_load, spec)
    json.dump(result.to_dict(), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
