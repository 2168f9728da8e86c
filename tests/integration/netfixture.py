"""A whole payment network in one trio run: three issuer simulators and the switch.

Everything binds port 0 on loopback and reports its port through
``nursery.start``; state lives in SQLite files under the test's tmp_path.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from simulators.issuer import serve as serve_issuer
from simulators.security import open_keys as open_sim_keys
from switch.client import AcquirerClient
from switch.config import Config, parse_config
from switch.server import Server
from switch.vault import Vault

NETWORKS = {
    "visa": ("visa", "2b"),
    "mastercard": ("mastercard", "2b"),
    "belkart": ("belkart", "4a"),
}
ROUTES = {
    "4": "visa",
    "51-55": "mastercard",
    "2221-2720": "mastercard",
    "50": "mastercard",
    "56-69": "mastercard",
    "9112": "belkart",
}


def raw_config(
    tmp: Path,
    sim_ports: dict[str, int],
    faults: dict[str, list[dict[str, Any]]] | None = None,
    **issuer_overrides: Any,
) -> dict[str, Any]:
    issuers = {}
    for name, (spec, framing) in NETWORKS.items():
        issuers[name] = {
            "spec": spec,
            "framing": framing,
            "endpoints": [f"127.0.0.1:{sim_ports.get(name, 1)}"],
            "timeout": 1.0,
            "echo_interval": 30.0,
            "reconnect_min": 0.05,
            "reconnect_max": 0.2,
            **issuer_overrides,
        }
    sims = {
        name: {
            "spec": spec,
            "framing": framing,
            "port": 0,
            "ledger": f"var/sim-{name}.db",
            "faults": (faults or {}).get(name, []),
        }
        for name, (spec, framing) in NETWORKS.items()
    }
    return {
        "switch": {
            "journal": "var/journal.db",
            "admin_socket": "var/switch.sock",
            "token_key_file": "var/token.key",
            "shutdown_grace": 2.0,
        },
        "listeners": [{"name": "gateway", "port": 0, "spec": "iso87ascii", "framing": "2b"}],
        "issuers": issuers,
        "routes": ROUTES,
        "saf": {"retry_initial": 0.1, "retry_max": 0.5, "expire_after": 600.0},
        "simulators": sims,
    }


@dataclass
class Network:
    config: Config
    server: Server
    port: int
    sim_ports: dict[str, int]
    vault: Vault
    nursery: trio.Nursery
    clients: list[AcquirerClient] = field(default_factory=list)

    async def client(self) -> AcquirerClient:
        client = await AcquirerClient.connect("127.0.0.1", self.port)
        await self.nursery.start(client.run)
        self.clients.append(client)
        return client


@asynccontextmanager
async def network(
    tmp_path: Path,
    faults: dict[str, list[dict[str, Any]]] | None = None,
    tweak: Callable[[dict[str, Any]], None] | None = None,
    **issuer_overrides: Any,
) -> AsyncIterator[Network]:
    """``tweak`` edits the raw config (listeners, security, simulators) before it is parsed."""

    def build(ports: dict[str, int]) -> Config:
        raw = raw_config(tmp_path, ports, faults, **issuer_overrides)
        if tweak is not None:
            tweak(raw)
        return parse_config(raw, tmp_path)

    base = build({})
    vault = Vault.load_or_create(base.switch.token_key_file)
    async with trio.open_nursery() as nursery:
        sim_ports = {}
        for name, sim in base.simulators.items():
            keys = open_sim_keys(sim, base.security)
            run_sim = functools.partial(serve_issuer, sim, vault=vault, keys=keys)
            sim_ports[name] = await nursery.start(run_sim)
        config = build(sim_ports)
        server = Server(config)
        [port] = await nursery.start(server.serve)
        for link in server.links.values():
            with trio.fail_after(5):
                await link.up_event.wait()
        net = Network(
            config=config,
            server=server,
            port=port,
            sim_ports=sim_ports,
            vault=vault,
            nursery=nursery,
        )
        try:
            yield net
        finally:
            for client in net.clients:
                await client.aclose()
            server.shutdown()
            with trio.move_on_after(5):
                await server.stopped.wait()
            nursery.cancel_scope.cancel()
