"""Acquirer traffic generator: a realistic mix sent to the switch, every answer checked.

Speaks the acquirer dialect (``iso87ascii``, 2-byte length framing by default)
over N connections, each an :class:`switch.client.AcquirerClient` with its
own terminal id (``LOAD0001``...), so (F41, F11) identifies a request.

The mix (weights by kind, ``--mix approve=60,decline=20,...``):

    approve    an approval card of each network (Visa, MasterCard, Maestro,
               BELKART), card-present or e-commerce with CVV2 123 → 00
    decline    each decline card of the card book with the request that
               triggers it (balance 0 → 51, expired → 54, CVV2 999 → N7,
               e-commerce on a banned card → 57, 150.00 on the 100.00 daily
               limit → 61, lost → 41, a card not in the book → 14)
    refund     0200 with processing code 200000 on an approval card → 00
    reversal   0400 of an earlier approval on the same connection, with F90
               (original MTI, STAN, F7) → 00; an approval if none is left
    echo       0800 with F70 301 → 0810 00
    timeout    the 12-second and the never-answering card → 91 from the switch
               (off by default: each costs the switch's issuer timeout)

Every answer must match its request: the response MTI of the request's, the
same F11, F41 and F37, and the response code the card book predicts. A
request without an answer within ``timeout`` is a timeout. The run *passes*
when nothing timed out and nothing mismatched (``LoadResult.ok``).

Open loop: ``rate`` requests per second in total, spread over the
connections, whatever the answers do. Closed loop (``rate=None``):
``inflight`` requests outstanding at all times, the next sent as soon as one
is answered (the benchmark's saturation mode).
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import secrets
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from switch.client import AcquirerClient, build_request
from switch.messages import F_RRN, F_STAN, F_TERMINAL, response_mti
from switch.translate import format_original_data, transmission_time

__all__ = [
    "DEFAULT_MIX",
    "KINDS",
    "SCENARIOS",
    "LoadResult",
    "Scenario",
    "parse_mix",
    "run_load",
]

KINDS = ("approve", "decline", "refund", "reversal", "echo", "timeout")
DEFAULT_MIX: Mapping[str, int] = {
    "approve": 60,
    "decline": 20,
    "refund": 5,
    "reversal": 10,
    "echo": 5,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One kind of request and the response code(s) the card book predicts for it."""

    name: str
    kind: str
    pan: str = ""
    amount: int = 1000
    expect: frozenset[str] = frozenset({"00"})
    options: Mapping[str, Any] = field(default_factory=dict)


def _s(name: str, kind: str, pan: str, expect: str, amount: int = 1000, **options: Any) -> Scenario:
    return Scenario(
        name=name, kind=kind, pan=pan, amount=amount, expect=frozenset({expect}), options=options
    )


SCENARIOS: tuple[Scenario, ...] = (
    _s("visa approval", "approve", "4111111111111111", "00"),
    _s("visa e-commerce approval", "approve", "4111111111111111", "00", cvv2="123", ecommerce=True),
    _s("mastercard approval", "approve", "5555555555554444", "00"),
    _s("maestro approval", "approve", "6759649826438453", "00"),
    _s("belkart approval", "approve", "9112000000000006", "00"),
    _s(
        "belkart e-commerce approval",
        "approve",
        "9112000000000006",
        "00",
        cvv2="123",
        ecommerce=True,
    ),
    _s("visa no funds", "decline", "4000000000000002", "51"),
    _s("visa expired", "decline", "4000000000000069", "54"),
    _s("visa CVV2 mismatch", "decline", "4000000000000127", "N7", cvv2="999", ecommerce=True),
    _s("visa online banned", "decline", "4000000000000101", "57", ecommerce=True),
    _s("visa daily limit", "decline", "4000000000000119", "61", amount=15000),
    _s("visa lost card", "decline", "4000000000000036", "41"),
    _s("visa card not in book", "decline", "4000000000000010", "14"),
    _s("mastercard no funds", "decline", "5105105105105100", "51"),
    _s("belkart no funds", "decline", "9112000000000014", "51"),
    _s("visa refund", "refund", "4111111111111111", "00", processing_code="200000"),
    _s("mastercard refund", "refund", "5555555555554444", "00", processing_code="200000"),
    _s("belkart refund", "refund", "9112000000000006", "00", processing_code="200000"),
    _s("reversal", "reversal", "", "00"),
    _s("echo", "echo", "", "00"),
    _s("visa 12-second issuer", "timeout", "4000000000000259", "91"),
    _s("visa silent issuer", "timeout", "4000000000000994", "91"),
)


def parse_mix(text: str | None) -> dict[str, int]:
    """``"approve=60,decline=20"`` → weights; ValueError naming a bad part."""
    if not text:
        return dict(DEFAULT_MIX)
    mix: dict[str, int] = {}
    for part in text.split(","):
        kind, _, weight = part.strip().partition("=")
        if kind not in KINDS:
            raise ValueError(f"mix: unknown kind {kind!r} (known: {', '.join(KINDS)})")
        if not weight.isdigit():
            raise ValueError(f"mix: {kind}: expected a whole-number weight, got {weight!r}")
        mix[kind] = int(weight)
    if not any(mix.values()):
        raise ValueError("mix: every weight is 0")
    return mix


@dataclass(slots=True)
class LoadResult:
    sent: int = 0
    answered: int = 0
    timeouts: int = 0
    by_code: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.timeouts == 0 and not self.mismatches

    def percentile(self, p: float) -> float | None:
        """Latency percentile in seconds (nearest rank), None when nothing was answered."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank]

    def summary(self) -> dict[str, Any]:
        def ms(p: float) -> float | None:
            value = self.percentile(p)
            return None if value is None else round(value * 1000, 3)

        return {
            "ok": self.ok,
            "sent": self.sent,
            "answered": self.answered,
            "timeouts": self.timeouts,
            "mismatches": len(self.mismatches),
            "elapsed_s": round(self.elapsed, 3),
            "rate_per_s": round(self.answered / self.elapsed, 1) if self.elapsed else None,
            "by_response_code": dict(sorted(self.by_code.items())),
            "by_kind": dict(sorted(self.by_kind.items())),
            "latency_ms": {"p50": ms(50), "p95": ms(95), "p99": ms(99)},
            "first_mismatches": self.mismatches[:10],
        }


class _Connection:
    """One acquirer connection with its terminal, STANs and unreversed approvals."""

    def __init__(self, client: AcquirerClient, terminal: str) -> None:
        self.client = client
        self.terminal = terminal
        self.stans = itertools.count(1)
        self.approvals: deque[dict[str, str]] = deque(maxlen=1000)

    def stan(self) -> str:
        return f"{next(self.stans) % 1_000_000 or 1:06d}"


class _Generator:
    def __init__(self, mix: Mapping[str, int], timeout: float, rng: random.Random) -> None:
        self.rng = rng
        self.timeout = timeout
        self.kinds = [k for k in KINDS if mix.get(k)]
        self.weights = [mix[k] for k in self.kinds]
        self.by_kind = {k: [s for s in SCENARIOS if s.kind == k] for k in KINDS}
        self.result = LoadResult()
        self.rrn_base = secrets.randbelow(900_000) + 100_000
        self.rrns = itertools.count(1)

    def next_request(self, conn: _Connection) -> tuple[Scenario, dict[str, str]]:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        if kind == "reversal" and not conn.approvals:
            kind = "approve"
        scenario = self.rng.choice(self.by_kind[kind])
        now = dt.datetime.now(dt.UTC)
        rrn = f"{self.rrn_base:06d}{next(self.rrns) % 1_000_000:06d}"
        if kind == "echo":
            return scenario, {
                "t": "0800",
                "7": transmission_time(now),
                "11": conn.stan(),
                "70": "301",
            }
        if kind == "reversal":
            original = conn.approvals.popleft()
            request = build_request(
                mti="0400",
                pan=original["2"],
                amount=int(original["4"]),
                terminal=conn.terminal,
                stan=conn.stan(),
                expiry=None,
                extra={
                    "37": rrn,
                    "90": format_original_data(original["t"], original["11"], original["7"]),
                },
            )
            return scenario, request
        request = build_request(
            pan=scenario.pan,
            amount=scenario.amount,
            terminal=conn.terminal,
            stan=conn.stan(),
            mti="0200" if kind == "refund" else "0100",
            extra={"37": rrn},
            **scenario.options,
        )
        return scenario, request

    async def exchange(self, conn: _Connection) -> None:
        scenario, request = self.next_request(conn)
        result = self.result
        result.sent += 1
        result.by_kind[scenario.kind] += 1
        start = trio.current_time()
        try:
            answer = await conn.client.request(request, timeout=self.timeout)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            answer = None
        if answer is None:
            result.timeouts += 1
            return
        result.latencies.append(trio.current_time() - start)
        result.answered += 1
        code = answer.get("39", "")
        result.by_code[code] += 1
        problem = _mismatch(request, answer, scenario)
        if problem:
            result.mismatches.append(f"{scenario.name}: {problem}")
        elif scenario.kind == "approve" and code == "00":
            conn.approvals.append(request)


def _mismatch(request: Mapping[str, str], answer: Mapping[str, str], scenario: Scenario) -> str:
    expected_mti = response_mti(request["t"])
    if answer.get("t") != expected_mti:
        return f"MTI {answer.get('t')} answers {request['t']} (expected {expected_mti})"
    for key in (F_STAN, F_TERMINAL, F_RRN):
        if key in request and answer.get(key) != request[key]:
            return f"F{key} {answer.get(key)!r} != request's {request[key]!r}"
    code = answer.get("39", "")
    if code not in scenario.expect:
        return f"response {code}, the card book predicts {'/'.join(sorted(scenario.expect))}"
    return ""


async def run_load(
    host: str,
    port: int,
    *,
    rate: float | None,
    duration: float,
    connections: int = 1,
    mix: Mapping[str, int] | None = None,
    inflight: int | None = None,
    timeout: float = 10.0,
    spec: str = "iso87ascii",
    framing: str = "2b",
    seed: int | None = None,
) -> LoadResult:
    """Send the mix for ``duration`` seconds; every request answered or timed out on return.

    Open loop at ``rate`` requests/s in total; closed loop with ``rate=None``
    and ``inflight`` requests outstanding (default: 2 per connection).
    """
    gen = _Generator(mix or DEFAULT_MIX, timeout, random.Random(seed))
    conns: list[_Connection] = []
    async with trio.open_nursery() as readers:
        try:
            for i in range(max(1, connections)):
                client = await AcquirerClient.connect(host, port, spec=spec, framing=framing)
                await readers.start(client.run)
                conns.append(_Connection(client, f"LOAD{i + 1:04d}"))
            start = trio.current_time()
            async with trio.open_nursery() as senders:
                if rate is None:
                    k = inflight or 2 * len(conns)
                    for w in range(k):
                        senders.start_soon(
                            _closed_loop, gen, conns[w % len(conns)], start + duration
                        )
                else:
                    await _open_loop(gen, conns, senders, rate, start + duration)
            gen.result.elapsed = trio.current_time() - start
        finally:
            for conn in conns:
                await conn.client.aclose()
            readers.cancel_scope.cancel()
    return gen.result


async def _closed_loop(gen: _Generator, conn: _Connection, deadline: float) -> None:
    while trio.current_time() < deadline:
        await gen.exchange(conn)


async def _open_loop(
    gen: _Generator,
    conns: list[_Connection],
    senders: trio.Nursery,
    rate: float,
    deadline: float,
) -> None:
    if rate <= 0:
        raise ValueError("rate must be positive (or None for closed loop)")
    start = trio.current_time()
    for n in itertools.count():
        due = start + n / rate
        if due >= deadline:
            return
        await trio.sleep_until(due)
        senders.start_soon(gen.exchange, conns[n % len(conns)])
