"""``switch demo``: the whole network on the embedded defaults, a sample mix, a verdict.

The demo starts ``switch sim all`` and ``switch run`` as child processes
(switch.launch; readiness is a port that accepts and links that report
``up``, never a sleep), sends :data:`SAMPLE` — an approval per network, each
decline card of the card book, a 3-D Secure payment with and without its CAVV,
a refund, an acquirer reversal of an approval
and one issuer timeout — and then waits until the journal shows the timed-out
transaction ``timed_out_reversed`` (the SAF delivered the automatic reversal).
It stops the switch, then the simulators, with SIGTERM and checks both exit 0.

The verdict is :func:`check`: every case must get the response code the card
book predicts (:attr:`Case.expect`), the reversal must leave its original
``reversed`` and the timeout must end ``timed_out_reversed``. The summary
table never shows a clear PAN.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from switch import launch
from switch.admin import AdminError, call
from switch.cards import luhn_valid, mask_pan
from switch.client import AcquirerClient, build_request, next_stan
from switch.config import Config
from switch.errors import RoutingError
from switch.journal import Journal
from switch.messages import response_code_meaning
from switch.report import percentile
from switch.routing import RouteTable

__all__ = [
    "SAMPLE",
    "Case",
    "DemoError",
    "Outcome",
    "answer_timeout",
    "check",
    "run_demo",
    "summary",
]

TERMINAL = "DEMO0001"
MERCHANT = "DEMOSHOP0000001"
TIMEOUT_CARD = "4000000000000994"
THREE_DS_CARD = "4000000000000200"
# The CAVV the simulators' ACS issues for THREE_DS_CARD and 25.00, as printed by
# `switch sim cavv --pan 4000000000000200 --amount 2500` (the switch does not
# import the simulators; a test keeps this value honest).
THREE_DS_CAVV = "ugiYcOpoBWapPxXVMT1MBuIrg/c="


class DemoError(Exception):
    """The demo could not run (a port in use, a process that would not start)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    name: str
    pan: str
    amount: int  # minor units
    expect: str  # the response code the card book (or the switch) predicts
    mti: str = "0100"
    processing_code: str = "000000"
    cvv2: str | None = None
    ecommerce: bool = False
    cavv: str | None = None  # 3-D Secure: sent with ECI 05 in F48 tags EC and AV
    reverse: bool = False  # follow an approval with an acquirer reversal (0400)
    timeout: bool = False  # the issuer never answers: 91, then an automatic reversal


SAMPLE: tuple[Case, ...] = (
    Case(name="Visa approval", pan="4111111111111111", amount=1250, expect="00"),
    Case(name="MasterCard approval", pan="5555555555554444", amount=4999, expect="00"),
    Case(name="Maestro approval", pan="6759649826438453", amount=700, expect="00"),
    Case(name="BELKART approval", pan="9112000000000006", amount=2500, expect="00"),
    Case(name="Visa insufficient funds", pan="4000000000000002", amount=1000, expect="51"),
    Case(name="Visa expired card", pan="4000000000000069", amount=1000, expect="54"),
    Case(name="CVV2 right", pan="4000000000000127", amount=1000, cvv2="123", expect="00"),
    Case(name="CVV2 wrong", pan="4000000000000127", amount=1000, cvv2="999", expect="N7"),
    Case(
        name="E-commerce not permitted",
        pan="4000000000000101",
        amount=1000,
        ecommerce=True,
        expect="57",
    ),
    Case(
        name="3-D Secure authenticated",
        pan=THREE_DS_CARD,
        amount=2500,
        ecommerce=True,
        cavv=THREE_DS_CAVV,
        expect="00",
    ),
    Case(
        name="3-D Secure CAVV missing", pan=THREE_DS_CARD, amount=2500, ecommerce=True, expect="05"
    ),
    # Over the 100.00 daily limit in one go: 61 whatever happened earlier today.
    Case(name="Daily limit exceeded", pan="4000000000000119", amount=15000, expect="61"),
    Case(name="Lost card", pan="4000000000000036", amount=1000, expect="41"),
    Case(name="MasterCard insufficient funds", pan="5105105105105100", amount=1000, expect="51"),
    Case(name="BELKART insufficient funds", pan="9112000000000014", amount=1000, expect="51"),
    Case(name="Card not in the book", pan="4000000000000010", amount=1000, expect="14"),
    Case(name="Unknown BIN (switch)", pan="3530111333300000", amount=1000, expect="15"),
    Case(name="Luhn failure (switch)", pan="4111111111111112", amount=1000, expect="14"),
    Case(
        name="Refund",
        pan="4111111111111111",
        amount=500,
        mti="0200",
        processing_code="200000",
        expect="00",
    ),
    Case(
        name="Approval, then reversed",
        pan="5555555555554444",
        amount=3000,
        expect="00",
        reverse=True,
    ),
    Case(name="Issuer timeout", pan=TIMEOUT_CARD, amount=1000, expect="91", timeout=True),
)


@dataclass(slots=True, kw_only=True)
class Outcome:
    case: Case
    network: str
    request: dict[str, str]
    answer: dict[str, str] | None = None
    latency_ms: float | None = None
    final_state: str | None = None  # from the journal, for reversal and timeout cases
    reversal_answer: dict[str, str] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def response_code(self) -> str | None:
        return None if self.answer is None else self.answer.get("39")


def answer_timeout(config: Config) -> float:
    """How long an acquirer waits: past the longest issuer timeout, so a 91 still arrives."""
    return max((i.timeout for i in config.issuers.values()), default=5.0) + 5.0


def network_of(pan: str, routes: RouteTable) -> str:
    if not luhn_valid(pan):
        return "(switch)"
    try:
        return routes.route(pan)
    except RoutingError:
        return "(switch)"


def original_data(request: dict[str, str]) -> str:
    """F90 for a reversal: original MTI, F11, F7, then acquirer and forwarder ids as zeros."""
    return request["t"] + request["11"] + request["7"] + "0" * 22


def check(outcomes: Sequence[Outcome]) -> list[str]:
    """Every way the run differs from the card book (empty: the demo passed)."""
    problems = []
    for o in outcomes:
        label = f"{o.case.name} ({mask_pan(o.case.pan)})"
        if o.answer is None:
            problems.append(f"{label}: no answer")
        elif o.response_code != o.case.expect:
            problems.append(
                f"{label}: expected {o.case.expect}, got {o.response_code} "
                f"({response_code_meaning(o.response_code or '')})"
            )
        if o.case.reverse:
            rc = None if o.reversal_answer is None else o.reversal_answer.get("39")
            if rc != "00":
                problems.append(f"{label}: the reversal was answered {rc or 'nothing'}")
            if o.final_state != "reversed":
                problems.append(f"{label}: journal state {o.final_state}, expected reversed")
        if o.case.timeout and o.final_state != "timed_out_reversed":
            problems.append(f"{label}: journal state {o.final_state}, expected timed_out_reversed")
        problems += [f"{label}: {p}" for p in o.problems]
    return problems


def summary(outcomes: Sequence[Outcome], elapsed_s: float) -> str:
    """The per-case table, then counts by network and response code, rate and latency."""
    lines = [
        f"{'case':<30} {'card':<17} {'network':<11} {'mti':<5} {'want':<5} {'got':<5} "
        f"{'latency':>9}  result"
    ]
    for o in outcomes:
        latency = "-" if o.latency_ms is None else f"{o.latency_ms:.1f} ms"
        ok = o.response_code == o.case.expect
        extra = f" → {o.final_state}" if o.final_state else ""
        lines.append(
            f"{o.case.name:<30} {mask_pan(o.case.pan):<17} {o.network:<11} {o.case.mti:<5} "
            f"{o.case.expect:<5} {o.response_code or '-':<5} {latency:>9}  "
            f"{'ok' if ok else 'MISMATCH'}{extra}"
        )
    counts: dict[tuple[str, str], int] = {}
    for o in outcomes:
        key = (o.network, o.response_code or "--")
        counts[key] = counts.get(key, 0) + 1
    lines += ["", f"{'network':<11} {'rc':<4} {'meaning':<40} {'count':>5}"]
    for (net, rc), n in sorted(counts.items()):
        lines.append(f"{net:<11} {rc:<4} {response_code_meaning(rc):<40} {n:>5}")
    approved = sum(1 for o in outcomes if o.response_code == "00")
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    lines += [
        "",
        f"{len(outcomes)} transactions, {approved} approved "
        f"({approved / len(outcomes) * 100:.0f}%); latency p50 "
        f"{'-' if p50 is None else f'{p50:.1f} ms'}, p99 "
        f"{'-' if p99 is None else f'{p99:.1f} ms'}; run time {elapsed_s:.1f} s",
    ]
    return "\n".join(lines)


# -- sending --------------------------------------------------------------------


async def _poll_state(
    journal_path: Path, request: dict[str, str], want: str, deadline: float
) -> str | None:
    """The journal state of ``request``'s transaction once it is ``want`` (or at the deadline)."""
    journal = Journal.open(journal_path)
    try:
        state = None
        while True:
            rows = journal.find_transactions(
                terminal=request["41"], stan=request["11"], f7=request["7"], mti=request["t"]
            )
            state = rows[0]["state"] if rows else None
            if state == want or trio.current_time() > deadline:
                return state
            await trio.sleep(0.1)  # another process writes the journal: poll it
    finally:
        journal.close()


async def send_sample(
    config: Config, cases: Sequence[Case] = SAMPLE, *, settle: float = 30.0
) -> list[Outcome]:
    """Send ``cases`` to the first listener, all at once, then the reversals; wait for SAF."""
    listener = config.listeners[0]
    routes = RouteTable(config.routes)
    client = await AcquirerClient.connect(
        listener.host, listener.port, spec=listener.spec, framing=listener.framing
    )
    timeout = answer_timeout(config)
    outcomes = [
        Outcome(
            case=c,
            network=network_of(c.pan, routes),
            request=build_request(
                mti=c.mti,
                pan=c.pan,
                amount=c.amount,
                processing_code=c.processing_code,
                cvv2=c.cvv2,
                ecommerce=c.ecommerce,
                eci="05" if c.cavv else None,
                cavv=c.cavv,
                terminal=TERMINAL,
                merchant=MERCHANT,
            ),
        )
        for c in cases
    ]

    async def one(o: Outcome) -> None:
        exchange = await client.submit(o.request)
        with trio.move_on_after(timeout):
            await exchange.done.wait()
        o.answer = exchange.answer
        if o.answer is not None and exchange.latency is not None:
            o.latency_ms = exchange.latency * 1000
        if o.case.reverse and o.response_code == "00":
            reversal = dict(o.request, t="0400", **{"11": next_stan()})
            reversal["90"] = original_data(o.request)
            o.reversal_answer = await client.request(reversal, timeout=timeout)
        if o.case.reverse or o.case.timeout:
            want = "reversed" if o.case.reverse else "timed_out_reversed"
            o.final_state = await _poll_state(
                config.switch.journal, o.request, want, trio.current_time() + settle
            )

    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        async with trio.open_nursery() as senders:
            for o in outcomes:
                senders.start_soon(one, o)
        await client.aclose()
    return outcomes


# -- processes ------------------------------------------------------------------


def _ports(config: Config) -> list[tuple[str, str, int]]:
    ports = [(f"listener {li.name}", li.host, li.port) for li in config.listeners]
    ports += [(f"simulator {s.name}", s.host, s.port) for s in config.simulators.values()]
    return ports


def _check_free(config: Config) -> None:
    for what, host, port in _ports(config):
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                raise DemoError(
                    f"{host}:{port} ({what}) is already in use: is a switch or simulator "
                    "already running? Stop it, or change the port in the config"
                )


def _wait_links_up(config: Config, proc: launch.Process, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise DemoError(f"the switch exited with {proc.popen.returncode}; see {proc.log_path}")
        try:
            links = call(config.switch.admin_socket, {"cmd": "status"})["status"]["links"]
        except AdminError as exc:
            last = str(exc)
        else:
            down = [lk["name"] for lk in links if lk["state"] != "up"]
            if not down:
                return
            last = f"links not up: {', '.join(down)}"
        time.sleep(0.05)  # another process: poll its admin socket
    raise DemoError(f"the switch did not come up in {timeout:.0f}s ({last}); see {proc.log_path}")


def run_demo(
    config: Config,
    config_path: Path,
    *,
    keep_running: bool = False,
    echo: Callable[[str], None] = print,
    wait_forever: Callable[[], bool] | None = None,
) -> tuple[list[Outcome], list[str]]:
    """Start everything, send the sample, stop everything; returns outcomes and problems.

    With ``keep_running``, ``wait_forever`` blocks until the operator is done
    and says whether the children got the signal too (Ctrl-C reaches the
    whole process group): they are then given time to stop by themselves.
    """
    _check_free(config)
    log_dir = config.switch.journal.parent / "log"
    started = time.monotonic()
    processes: list[launch.Process] = []
    problems: list[str] = []
    outcomes: list[Outcome] = []
    children_signalled = False
    try:
        sims = launch.start(
            "simulators", ["sim", "all", "--config", str(config_path)], log_dir=log_dir
        )
        processes.append(sims)
        for sim in config.simulators.values():
            launch.wait_for_port(sim.host, sim.port, proc=sims.popen)
        switch = launch.start("switch", ["run", "--config", str(config_path)], log_dir=log_dir)
        processes.append(switch)
        listener = config.listeners[0]
        launch.wait_for_port(listener.host, listener.port, proc=switch.popen)
        _wait_links_up(config, switch)
        echo(
            f"simulators and switch up in {time.monotonic() - started:.1f} s "
            f"(logs in {log_dir}); sending {len(SAMPLE)} transactions to "
            f"{listener.host}:{listener.port}\n"
        )
        outcomes = trio.run(send_sample, config)
        problems = check(outcomes)
        echo(summary(outcomes, time.monotonic() - started))
        if keep_running:
            echo(
                f"\nstill running: switch on {listener.host}:{listener.port}, "
                "try `switch status`, `switch journal`, `switch report`; Ctrl-C stops"
            )
            if wait_forever is not None:
                children_signalled = wait_forever()
    except (RuntimeError, TimeoutError, OSError) as exc:
        raise DemoError(str(exc)) from None
    finally:
        # The switch first: it finishes in-flight work while its issuers are still there.
        for proc in reversed(processes):
            if children_signalled:
                # Already stopping on the operator's Ctrl-C: a SIGTERM now would cut it short.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(config.switch.shutdown_grace + 5)
            code = proc.stop()
            if code != 0:
                problems.append(f"{proc.name} exited with {code} on SIGTERM (see {proc.log_path})")
    return outcomes, problems
