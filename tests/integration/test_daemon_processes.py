"""The daemon and the simulators as real processes: SIGTERM and kill -9."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sqlite3
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from switch.cli import main
from switch.client import AcquirerClient, build_request
from switch.config import parse_config
from switch.launch import Process, free_port, start, wait_for_links, wait_for_port
from tests.integration.netfixture import raw_config

pytestmark = pytest.mark.e2e


def _write_config(
    tmp_path: Path,
    *,
    timeout: float = 1.0,
    faults: dict | None = None,  # type: ignore[type-arg]
) -> tuple[Path, int]:
    sim_ports = {name: free_port() for name in ("visa", "mastercard", "belkart")}
    raw = raw_config(tmp_path, sim_ports, faults, timeout=timeout)
    for name, port in sim_ports.items():
        raw["simulators"][name]["port"] = port
    listener_port = free_port()
    raw["listeners"][0]["port"] = listener_port
    path = tmp_path / "switch.toml"
    path.write_text(_to_toml(raw))
    parse_config(tomllib.loads(path.read_text()), tmp_path)  # the file is valid
    return path, listener_port


def _to_toml(raw: dict) -> str:  # type: ignore[type-arg]
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f'"{k}" = {value(x)}' for k, x in v.items()) + "}"
        return str(v)

    lines = []
    for section in ("switch", "saf", "routes"):
        lines.append(f"[{section}]")
        lines += [f'"{k}" = {value(v)}' for k, v in raw[section].items()]
    for listener in raw["listeners"]:
        lines.append("[[listeners]]")
        lines += [f"{k} = {value(v)}" for k, v in listener.items()]
    for group in ("issuers", "simulators"):
        for name, table in raw[group].items():
            lines.append(f"[{group}.{name}]")
            lines += [f"{k} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


async def _send_all(port: int, requests: list[dict[str, str]]) -> list[dict[str, str] | None]:
    client = await AcquirerClient.connect("127.0.0.1", port)
    results: list[dict[str, str] | None] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        exchanges = [await client.submit(r) for r in requests]
        with trio.move_on_after(15):
            for ex in exchanges:
                await ex.done.wait()
        results = [ex.answer for ex in exchanges]
        await client.aclose()
    return results


@contextlib.contextmanager
def _running(tmp_path: Path, config: Path, port: int) -> Iterator[Process]:
    """The simulators and the switch as processes, links up; the switch killed after."""
    sims = start("sims", ["sim", "all", "--config", str(config)], log_dir=tmp_path)
    switch = start("switch", ["run", "--config", str(config)], log_dir=tmp_path)
    try:
        wait_for_port("127.0.0.1", port, proc=switch.popen)
        wait_for_links(tmp_path / "var" / "switch.sock")
        yield switch
    finally:
        switch.kill()
        sims.stop()


@contextlib.contextmanager
def _switch_again(tmp_path: Path, config: Path, port: int) -> Iterator[Process]:
    """The switch started again on the same state (after a kill -9)."""
    restarted = start("switch2", ["run", "--config", str(config)], log_dir=tmp_path)
    try:
        wait_for_port("127.0.0.1", port, proc=restarted.popen)
        yield restarted
    finally:
        restarted.kill()


async def _until_journal_has(journal: Path, sql: str, rows: int = 1) -> None:
    """Poll the journal until ``sql`` (a count) reaches ``rows``: the switch's own
    commit is the event, and another process's commit cannot be awaited."""
    while True:
        with sqlite3.connect(journal) as db:
            if db.execute(sql).fetchone()[0] >= rows:
                return
        await trio.sleep(0.02)


def _kill_while_a_reversal_is_at_the_issuer(
    switch: Process, port: int, journal: Path, extra: dict[str, str] | None = None
) -> None:
    """A 42.00 sale on 5555555555554444, approved; then its reversal (F90, plus
    ``extra``) sent and the switch killed once that reached the issuer."""
    card = "5555555555554444"

    async def crash() -> None:
        with trio.fail_after(30):
            client = await AcquirerClient.connect("127.0.0.1", port)
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                sale = build_request(pan=card, amount=4200)
                answer = await client.request(sale)
                assert answer is not None and answer["39"] == "00"
                f90 = "0100" + sale["11"] + sale["7"] + "0" * 22
                fields = {"90": f90, **(extra or {})}
                await client.submit(build_request(mti="0400", pan=card, amount=4200, extra=fields))
                await _until_journal_has(  # the reversal has left for the issuer
                    journal, "select count(*) from legs where leg='issuer_out' and mti='0400'"
                )
                switch.kill()
                await client.aclose()
                nursery.cancel_scope.cancel()

    trio.run(crash)


def test_sigterm_finishes_in_flight_and_exits_0(tmp_path: Path) -> None:
    # The issuer takes 0.8 s: SIGTERM arrives while the request is in flight.
    slow = {"visa": [{"kind": "latency", "pan": "4111111111111111", "seconds": 0.8}]}
    config, port = _write_config(tmp_path, timeout=3.0, faults=slow)
    journal = tmp_path / "var" / "journal.db"
    with _running(tmp_path, config, port) as switch:

        async def send_then_terminate() -> dict[str, str] | None:
            with trio.fail_after(20):
                client = await AcquirerClient.connect("127.0.0.1", port)
                async with trio.open_nursery() as nursery:
                    await nursery.start(client.run)
                    ex = await client.submit(build_request(pan="4111111111111111", amount=100))
                    await _until_journal_has(  # the request has left for the issuer
                        journal, "select count(*) from legs where leg='issuer_out'"
                    )
                    switch.popen.terminate()
                    await ex.done.wait()
                    await client.aclose()
                return ex.answer

        answer = trio.run(send_then_terminate)
        assert answer is not None and answer["39"] == "00"
        assert switch.popen.wait(15) == 0, switch.log_text()
        assert "4111111111111111" not in switch.log_text()


def test_kill_9_with_transactions_in_flight_leaves_no_money_held(tmp_path: Path) -> None:
    config, port = _write_config(tmp_path, timeout=5.0)
    journal = tmp_path / "var" / "journal.db"
    with _running(tmp_path, config, port) as switch:

        async def crash() -> None:
            with trio.fail_after(30):
                client = await AcquirerClient.connect("127.0.0.1", port)
                async with trio.open_nursery() as nursery:
                    await nursery.start(client.run)
                    # Approved by the issuer but its answer is delayed 12 s: in flight at the crash.
                    await client.submit(build_request(pan="4000000000000259", amount=3300))
                    fast = await client.submit(build_request(pan="4111111111111111", amount=100))
                    await fast.done.wait()
                    # Wait until the slow one's issuer-out leg is committed (write-ahead).
                    await _until_journal_has(
                        journal, "select count(*) from legs where leg='issuer_out'", rows=2
                    )
                    switch.kill()
                    await client.aclose()
                    nursery.cancel_scope.cancel()

        trio.run(crash)
        with _switch_again(tmp_path, config, port) as restarted:

            async def settled() -> None:
                with trio.fail_after(30):
                    while True:
                        with sqlite3.connect(journal) as db:
                            states = dict(
                                db.execute(
                                    "select pan_masked, state from transactions where mti='0100'"
                                ).fetchall()
                            )
                        if states.get("400000******0259") == "timed_out_reversed":
                            assert states.get("411111******1111") == "approved"
                            return
                        await trio.sleep(0.1)

            trio.run(settled)
            assert restarted.stop() == 0


def test_operator_commands_against_a_running_daemon(tmp_path: Path) -> None:
    config, port = _write_config(tmp_path)
    sims = start("sims", ["sim", "all", "--config", str(config)], log_dir=tmp_path)
    switch = start("switch", ["run", "--config", str(config)], log_dir=tmp_path)
    runner = CliRunner()

    def cli(*args: str) -> Result:
        return runner.invoke(main, [*args, "--config", str(config)])

    try:
        wait_for_port("127.0.0.1", port, proc=switch.popen)
        wait_for_links(tmp_path / "var" / "switch.sock")
        status = cli("status", "--json")
        assert status.exit_code == 0, status.output
        st = json.loads(status.output)
        assert {link["name"]: link["state"] for link in st["links"]} == {
            "visa": "up",
            "mastercard": "up",
            "belkart": "up",
        }
        assert st["listeners"][0]["address"].endswith(f":{port}")
        assert "listeners:" in cli("status").output

        down = cli("link", "down", "visa")
        assert down.exit_code == 0 and "admin-down" in down.output
        [answer] = trio.run(_send_all, port, [build_request(pan="4111111111111111", amount=100)])
        assert answer is not None and answer["39"] == "91"
        assert cli("link", "up", "visa").exit_code == 0
        wait_for_links(tmp_path / "var" / "switch.sock")
        [answer] = trio.run(_send_all, port, [build_request(pan="4111111111111111", amount=100)])
        assert answer is not None and answer["39"] == "00"
        shown = cli("status").output
        assert "time inside the switch" in shown
        # the approval went through the issuer's stages before its answer left
        assert "write_ahead" in shown and "(1)" in shown.split("write_ahead", 1)[1].splitlines()[0]

        saf = cli("saf", "list", "--json")
        assert saf.exit_code == 0 and json.loads(saf.output) == []
        assert "0 entries retried" in cli("saf", "retry").output
        unknown = cli("link", "down", "amex")
        assert unknown.exit_code == 1 and "no link named 'amex'" in unknown.output
    finally:
        assert switch.stop() == 0, switch.log_text()
        sims.stop()
    gone = cli("status")
    assert gone.exit_code == 1 and "no switch is running" in gone.output


def test_run_on_a_taken_port_says_so_without_a_traceback(tmp_path: Path) -> None:
    config, port = _write_config(tmp_path)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level  # `run` installs its own logging
        try:
            result = CliRunner().invoke(main, ["run", "--config", str(config)])
        finally:
            root.handlers[:], root.level = handlers, level
    assert result.exit_code == 1
    assert "cannot run the switch" in result.output and "Address already in use" in result.output
    assert "Traceback" not in result.output


def test_kill_9_during_an_acquirer_reversal_reverses_the_original_as_the_acquirer_asked(
    tmp_path: Path,
) -> None:
    # The issuer takes 2 s over each message for this card and amount: the approval
    # comes back, then the acquirer's reversal is at the issuer when the switch dies.
    slow = {"mastercard": [{"kind": "latency", "amount": "4200", "seconds": 2.0}]}
    config, port = _write_config(tmp_path, timeout=5.0, faults=slow)
    journal = tmp_path / "var" / "journal.db"
    with _running(tmp_path, config, port) as switch:
        _kill_while_a_reversal_is_at_the_issuer(switch, port, journal)
        with _switch_again(tmp_path, config, port) as restarted:

            async def settled() -> dict[str, str]:
                with trio.fail_after(30):
                    while True:
                        with sqlite3.connect(journal) as db:
                            states = dict(
                                db.execute("select mti, state from transactions").fetchall()
                            )
                            reason = db.execute("select reason from saf").fetchall()
                        if reason and states.get("0100") != "approved":
                            return {**states, "reason": reason[0][0]}
                        await trio.sleep(0.1)

            found = trio.run(settled)
            # Reversed by the acquirer, not a timeout of the sale, which was answered 00.
            assert found == {"0100": "reversed", "0400": "reversal_pending", "reason": "acquirer"}
            assert restarted.stop() == 0


def test_kill_9_during_a_partial_reversal_recovers_it_as_partial(tmp_path: Path) -> None:
    # As above, but the acquirer spent 30.00 of the 42.00: the reversal recovery
    # queues must carry that F95, or the issuer would release all 42.00.
    slow = {"mastercard": [{"kind": "latency", "amount": "4200", "seconds": 2.0}]}
    config, port = _write_config(tmp_path, timeout=5.0, faults=slow)
    journal = tmp_path / "var" / "journal.db"
    ledger = tmp_path / "var" / "sim-mastercard.db"

    def balance() -> int:
        with sqlite3.connect(ledger) as db:
            row = db.execute(
                "select balance from cards where pan_masked = '555555******4444'"
            ).fetchone()
        return int(row[0])

    with _running(tmp_path, config, port) as switch:
        before = balance()

        f95 = "000000003000" + "0" * 30  # 30.00 spent of the 42.00
        _kill_while_a_reversal_is_at_the_issuer(switch, port, journal, {"95": f95})
        with _switch_again(tmp_path, config, port) as restarted:

            async def delivered() -> None:
                with trio.fail_after(30):
                    done = "select count(*) from saf where status='done'"
                    await _until_journal_has(journal, done)

            trio.run(delivered)
            with sqlite3.connect(journal) as db:
                message, reason = db.execute("select message, reason from saf").fetchone()
                states = dict(db.execute("select mti, state from transactions").fetchall())
            sent = json.loads(message)
            assert sent["95"][:12] == "000000003000" and len(sent["95"]) == 42
            assert reason == "partial"
            assert states == {"0100": "partially_reversed", "0400": "reversal_pending"}
            assert balance() == before - 3000  # 12.00 released, never 42.00
            assert restarted.stop() == 0
