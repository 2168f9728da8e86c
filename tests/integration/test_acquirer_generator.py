"""The acquirer traffic generator as a library: against the switch, and against liars."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from simulators.acquirer import DEFAULT_MIX, parse_mix, run_load
from simulators.issuer import serve
from switch.config import FaultRule, SimulatorConfig, parse_config
from switch.server import Server
from switch.vault import Vault

NETWORKS = {"visa": "2b", "mastercard": "2b", "belkart": "4a"}


def _config(sim_ports: dict[str, int]) -> dict[str, object]:
    return {
        "switch": {
            "journal": "var/journal.db",
            "admin_socket": "var/switch.sock",
            "token_key_file": "var/token.key",
            "shutdown_grace": 2.0,
        },
        "listeners": [{"name": "gateway", "port": 0, "spec": "iso87ascii", "framing": "2b"}],
        "issuers": {
            name: {
                "spec": name,
                "framing": framing,
                "endpoints": [f"127.0.0.1:{sim_ports.get(name, 1)}"],
                "timeout": 2.0,
            }
            for name, framing in NETWORKS.items()
        },
        "routes": {"4": "visa", "51-55": "mastercard", "56-69": "mastercard", "9112": "belkart"},
        "simulators": {
            name: {"spec": name, "framing": framing, "port": 0, "ledger": f"var/sim-{name}.db"}
            for name, framing in NETWORKS.items()
        },
    }


@asynccontextmanager
async def switch_and_simulators(tmp_path: Path) -> AsyncIterator[int]:
    """The three simulators and the switch in this trio run; yields the switch's port."""
    base = parse_config(_config({}), tmp_path)
    vault = Vault.load_or_create(base.switch.token_key_file)
    async with trio.open_nursery() as nursery:
        ports = {}
        for name, sim in base.simulators.items():
            ports[name] = await nursery.start(functools.partial(serve, sim, vault=vault))
        server = Server(parse_config(_config(ports), tmp_path))
        [port] = await nursery.start(server.serve)
        for link in server.links.values():
            await link.up_event.wait()
        try:
            yield port
        finally:
            server.shutdown()
            with trio.move_on_after(5):
                await server.stopped.wait()
            nursery.cancel_scope.cancel()


async def test_open_loop_mix_through_the_switch_passes(tmp_path: Path) -> None:
    mix = dict(DEFAULT_MIX, reversal=30)
    with trio.fail_after(30):
        async with switch_and_simulators(tmp_path) as port:
            result = await run_load(
                "127.0.0.1", port, rate=200, duration=1.0, connections=3, mix=mix, seed=7
            )
    assert result.mismatches == [] and result.timeouts == 0, result.summary()
    assert result.ok and result.sent == result.answered == 200
    assert set(result.by_kind) == {"approve", "decline", "refund", "reversal", "echo"}
    assert {"00", "51", "14"} <= set(result.by_code)
    p50, p99 = result.percentile(50), result.percentile(99)
    assert p50 is not None and p99 is not None and 0 < p50 <= p99


async def test_closed_loop_keeps_k_in_flight(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with switch_and_simulators(tmp_path) as port:
            result = await run_load(
                "127.0.0.1", port, rate=None, inflight=4, duration=0.5, connections=2, seed=1
            )
    assert result.ok, result.summary()
    assert result.sent > 4


def _gateway(tmp_path: Path, faults: tuple[FaultRule, ...] = ()) -> SimulatorConfig:
    """A Visa issuer simulator that speaks the acquirer dialect: a switch that never routes."""
    return SimulatorConfig(name="visa", spec="iso87ascii", ledger=tmp_path / "gw.db", faults=faults)


async def test_wrong_response_codes_are_mismatches(tmp_path: Path) -> None:
    # The Visa issuer does not know MasterCard or BELKART cards: 14 where 00 is predicted.
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                functools.partial(serve, _gateway(tmp_path), vault=Vault.ephemeral())
            )
            result = await run_load(
                "127.0.0.1", port, rate=None, duration=0.3, mix=parse_mix("approve=1"), seed=3
            )
            nursery.cancel_scope.cancel()
    assert not result.ok
    assert result.mismatches and all("predicts 00" in m for m in result.mismatches)
    assert "14" in result.by_code


async def test_missing_answers_are_timeouts(tmp_path: Path) -> None:
    rule = FaultRule(kind="no_answer", fraction=1.0)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                functools.partial(serve, _gateway(tmp_path, (rule,)), vault=Vault.ephemeral())
            )
            result = await run_load(
                "127.0.0.1",
                port,
                rate=50,
                duration=0.1,
                mix=parse_mix("approve=1"),
                timeout=0.3,
            )
            nursery.cancel_scope.cancel()
    assert not result.ok and result.timeouts == result.sent == 5
    assert result.percentile(50) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [("approve=x", "whole-number"), ("bogus=1", "unknown kind"), ("approve=0", "every weight")],
)
def test_bad_mix_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_mix(text)


def test_mix_parses_weights() -> None:
    assert parse_mix("approve=3,timeout=1") == {"approve": 3, "timeout": 1}
    assert parse_mix(None) == dict(DEFAULT_MIX)
