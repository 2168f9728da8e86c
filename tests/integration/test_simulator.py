"""The issuer simulators over real loopback sockets (port 0), one test per behaviour.

Time-dependent behaviours (the 12-second card, latency, never answering) run
on a MockClock that jumps ahead once everything has been idle for a moment,
so nothing waits real seconds and nothing synchronises with a sleep.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import specs
from simulators import cardbook
from simulators.cardbook import Card, CardBook
from simulators.issuer import serve
from simulators.ledger import Ledger
from switch import codec, ecommerce
from switch.client import AcquirerClient, build_request
from switch.config import FaultRule, SimulatorConfig
from switch.cutover import IN_BALANCE, OUT_OF_BALANCE, Totals, reconciliation_request
from switch.errors import CodecError
from switch.framing import FrameDecoder, Framing, encode_frame
from switch.vault import Vault

FRAMING = {"visa": "2b", "mastercard": "2b", "belkart": "4a"}
VAULT = Vault.ephemeral()
ACQUIRER = specs.load("iso87ascii")


@pytest.fixture
def clock() -> trio.testing.MockClock:
    # Jump only after 20 ms of real idleness: loopback I/O always lands first.
    return trio.testing.MockClock(autojump_threshold=0.02)


@dataclass
class Sim:
    name: str
    port: int
    config: SimulatorConfig
    nursery: trio.Nursery
    streams: list[trio.abc.AsyncResource] = field(default_factory=list)

    async def client(self) -> AcquirerClient:
        client = await AcquirerClient.connect(
            "127.0.0.1", self.port, spec=self.name, framing=FRAMING[self.name]
        )
        self.streams.append(client.stream)
        await self.nursery.start(client.run)
        return client

    async def raw(self) -> trio.SocketStream:
        stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        self.streams.append(stream)
        return stream

    def ledger(self) -> Ledger:
        return Ledger.open(self.config.ledger, VAULT)

    def balance(self, pan: str) -> int | None:
        ledger = self.ledger()
        try:
            return ledger.balance(pan)
        finally:
            ledger.close()


@asynccontextmanager
async def simulator(
    tmp_path: Path,
    name: str = "visa",
    faults: tuple[FaultRule, ...] = (),
    cards: CardBook | None = None,
) -> AsyncIterator[Sim]:
    config = SimulatorConfig(
        name=name,
        spec=name,
        framing=FRAMING[name],
        ledger=tmp_path / f"sim-{name}.db",
        faults=faults,
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(functools.partial(serve, config, vault=VAULT, cardbook=cards))
        sim = Sim(name, port, config, nursery)
        try:
            yield sim
        finally:
            for stream in sim.streams:
                await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()


def request(network: str, pan: str, amount: int = 1000, **kw: Any) -> dict[str, str]:
    """A request in ``network``'s dialect (e-commerce data where that network carries it)."""
    msg = build_request(pan=pan, amount=amount, **kw)
    msg["32"] = "400001"
    msg["37"] = "5060" + msg["11"] + "01"
    eco = ecommerce.read(ACQUIRER, msg)
    ecommerce.strip(ACQUIRER, msg)
    ecommerce.write(specs.load(network), msg, eco)
    return msg


def f90(original: dict[str, str]) -> str:
    return original["t"] + original["11"] + original["7"] + "400001".zfill(11) + "0" * 11


@pytest.mark.parametrize(
    ("network", "pan", "extra", "code"),
    [
        ("visa", "4111111111111111", {}, "00"),
        ("visa", "4111111111111111", {"cvv2": "123", "ecommerce": True}, "00"),
        ("visa", "4000000000000002", {}, "51"),
        ("visa", "4000000000000069", {"expiry": "3012"}, "54"),
        ("visa", "4000000000000127", {"cvv2": "999", "ecommerce": True}, "N7"),
        ("visa", "4000000000000127", {"cvv2": "123", "ecommerce": True}, "00"),
        ("visa", "4000000000000101", {"ecommerce": True}, "57"),
        ("visa", "4000000000000101", {}, "00"),
        ("visa", "4000000000000119", {"amount": 15000}, "61"),
        ("visa", "4000000000000036", {}, "41"),
        ("visa", "4000000000000010", {}, "14"),
        ("visa", "5555555555554444", {}, "14"),  # another network's card
        ("mastercard", "5555555555554444", {}, "00"),
        ("mastercard", "5555555555554444", {"cvv2": "999", "ecommerce": True}, "05"),
        ("mastercard", "5105105105105100", {}, "51"),
        ("mastercard", "6759649826438453", {}, "00"),
        ("belkart", "9112000000000006", {"cvv2": "123", "ecommerce": True}, "00"),
        ("belkart", "9112000000000006", {"cvv2": "999", "ecommerce": True}, "05"),
        ("belkart", "9112000000000014", {}, "51"),
    ],
)
async def test_each_card_gets_its_response_code(
    tmp_path: Path, network: str, pan: str, extra: dict[str, Any], code: str
) -> None:
    with trio.fail_after(10):
        async with simulator(tmp_path, network) as sim:
            client = await sim.client()
            req = request(network, pan, **{"amount": 1000, **extra})
            answer = await client.request(req)
            assert answer is not None and answer["39"] == code
            assert answer["t"] == "0110"
            assert "2" not in answer
            for key in ("3", "4", "7", "11", "32", "37", "41", "42", "49"):
                assert answer[key] == req[key]
            assert ("38" in answer) is (code == "00")


async def test_daily_limit_is_61_once_exceeded(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with simulator(tmp_path) as sim:
            client = await sim.client()
            first = await client.request(request("visa", "4000000000000119", 6000))
            second = await client.request(request("visa", "4000000000000119", 6000))
            assert first is not None and second is not None
            assert (first["39"], second["39"]) == ("00", "61")


async def test_refund_credits_the_card(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with simulator(tmp_path) as sim:
            client = await sim.client()
            refund = request("visa", "4000000000000002", 1234, mti="0200", processing_code="200000")
            answer = await client.request(refund)
            assert answer is not None and (answer["t"], answer["39"]) == ("0210", "00")
            assert sim.balance("4000000000000002") == 1234
            spend = await client.request(request("visa", "4000000000000002", 1234))
            assert spend is not None and spend["39"] == "00"


async def test_reversal_then_three_repeats_release_once(tmp_path: Path) -> None:
    pan = "5555555555554444"
    with trio.fail_after(10):
        async with simulator(tmp_path, "mastercard") as sim:
            client = await sim.client()
            before = sim.balance(pan)
            assert before is not None
            original = request("mastercard", pan, 4200)
            answer = await client.request(original)
            assert answer is not None and answer["39"] == "00"
            assert sim.balance(pan) == before - 4200
            rev = request("mastercard", pan, 4200, mti="0400", extra={"90": f90(original)})
            for mti in ("0400", "0401", "0401", "0401"):
                got = await client.request(dict(rev, t=mti))
                assert got is not None and (got["t"], got["39"]) == ("0410", "00")
                assert sim.balance(pan) == before


async def test_partial_reversal_releases_original_minus_replacement(tmp_path: Path) -> None:
    pan = "9112000000000006"
    with trio.fail_after(10):
        async with simulator(tmp_path, "belkart") as sim:
            client = await sim.client()
            before = sim.balance(pan)
            assert before is not None
            original = request("belkart", pan, 10000)
            await client.request(original)
            f95 = "000000006000" + "0" * 30
            rev = request("belkart", pan, 10000, mti="0400", extra={"90": f90(original), "95": f95})
            got = await client.request(rev)
            assert got is not None and got["39"] == "00"
            assert sim.balance(pan) == before - 6000


async def test_reversal_of_unknown_original_is_25_and_of_a_decline_is_00(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with simulator(tmp_path) as sim:
            client = await sim.client()
            unknown = "0100" + "999999" + "0301000000" + "0" * 22
            rev = request("visa", "4111111111111111", 100, mti="0400", extra={"90": unknown})
            got = await client.request(rev)
            assert got is not None and got["39"] == "25"
            declined = request("visa", "4000000000000002", 100)
            await client.request(declined)
            rev = request("visa", "4000000000000002", 100, mti="0400", extra={"90": f90(declined)})
            got = await client.request(rev)
            assert got is not None and got["39"] == "00"
            assert sim.balance("4000000000000002") == 0


async def test_fifty_concurrent_requests_on_one_card_never_overdraw(tmp_path: Path) -> None:
    pan = "4111111111111111"
    book = CardBook({pan: Card(pan=pan, network="visa", expiry="3012", balance=10_000)})
    answers: list[str] = []
    with trio.fail_after(20):
        async with simulator(tmp_path, cards=book) as sim:
            clients = [await sim.client() for _ in range(5)]

            async def spend(client: AcquirerClient) -> None:
                answer = await client.request(request("visa", pan, 1000))
                assert answer is not None
                answers.append(answer["39"])

            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(spend, clients[i % 5])
            assert sim.balance(pan) == 0
    assert sorted(answers) == ["00"] * 10 + ["51"] * 40


@pytest.mark.parametrize(
    ("f70", "name"), [("001", "sign-on"), ("002", "sign-off"), ("301", "echo")]
)
async def test_network_management_is_answered_0810_00(tmp_path: Path, f70: str, name: str) -> None:
    with trio.fail_after(10):
        async with simulator(tmp_path, "belkart") as sim:
            client = await sim.client()
            msg = {"t": "0800", "7": "0301100000", "11": "000777", "70": f70}
            answer = await client.request(msg)
            assert answer == {**msg, "t": "0810", "39": "00"}, name


async def test_answers_go_out_of_order(tmp_path: Path, clock: trio.testing.MockClock) -> None:
    slow_rule = FaultRule(kind="latency", pan="4111111111111111", seconds=3.0)
    with trio.fail_after(60):
        async with simulator(tmp_path, faults=(slow_rule,)) as sim:
            client = await sim.client()
            slow = await client.submit(request("visa", "4111111111111111"))
            fast = await client.submit(request("visa", "4000000000000002"))
            await fast.done.wait()
            assert not slow.done.is_set()
            await slow.done.wait()
            assert slow.answer is not None and fast.answer is not None
            assert (slow.answer["39"], fast.answer["39"]) == ("00", "51")


async def test_latency_fault_delays_the_answer(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    rule = FaultRule(kind="latency", seconds=2.0, jitter=1.0)
    with trio.fail_after(60):
        async with simulator(tmp_path, faults=(rule,)) as sim:
            client = await sim.client()
            start = trio.current_time()
            answer = await client.request(request("visa", "4111111111111111"), timeout=30)
            assert answer is not None and answer["39"] == "00"
            assert 2.0 <= trio.current_time() - start < 3.5


async def test_late_fault_answers_after_the_given_seconds(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    rule = FaultRule(kind="late", amount="777", seconds=8.0)
    with trio.fail_after(60):
        async with simulator(tmp_path, faults=(rule,)) as sim:
            client = await sim.client()
            start = trio.current_time()
            assert await client.request(request("visa", "4111111111111111", 777), timeout=5) is None
            on_time = await client.request(request("visa", "4111111111111111", 778), timeout=5)
            assert on_time is not None
            await trio.sleep_until(start + 9)
            assert [a["4"] for a in client.unmatched] == ["000000000777"]


async def test_twelve_second_card_and_a_reversal_during_the_wait(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    pan = "4000000000000259"
    with trio.fail_after(60):
        async with simulator(tmp_path) as sim:
            client = await sim.client()
            before = sim.balance(pan)
            start = trio.current_time()
            original = request("visa", pan, 5000)
            pending = await client.submit(original)
            rev = request("visa", pan, 5000, mti="0400", extra={"90": f90(original)})
            reversed_ = await client.request(rev, timeout=5)
            assert reversed_ is not None and reversed_["39"] == "00"
            assert not pending.done.is_set()
            assert sim.balance(pan) == before
            await pending.done.wait()
            assert pending.answer is not None and pending.answer["39"] == "00"
            assert trio.current_time() - start >= 12.0


async def test_never_answering_card_is_recorded_but_not_answered(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    pan = "4000000000000994"
    with trio.fail_after(300):
        async with simulator(tmp_path) as sim:
            client = await sim.client()
            assert await client.request(request("visa", pan, 2500), timeout=120) is None
            ledger = sim.ledger()
            rows = ledger.rows()
            ledger.close()
            assert [(r["response_code"], r["answer_time"]) for r in rows] == [("00", None)]
            assert rows[0]["pan_masked"] == "400000******0994"


@pytest.mark.parametrize("trigger", [{"pan": "4111111111111111"}, {"fraction": 1.0}, {}])
async def test_no_answer_fault(
    tmp_path: Path, clock: trio.testing.MockClock, trigger: dict[str, Any]
) -> None:
    with trio.fail_after(120):
        async with simulator(tmp_path, faults=(FaultRule(kind="no_answer", **trigger),)) as sim:
            client = await sim.client()
            assert await client.request(request("visa", "4111111111111111"), timeout=60) is None
            echo = {"t": "0800", "7": "0301100000", "11": "000001", "70": "301"}
            assert await client.request(echo) is not None  # the link stays usable


async def test_close_fault_closes_the_connection(tmp_path: Path) -> None:
    rule = FaultRule(kind="close", amount="4444")
    with trio.fail_after(10):
        async with simulator(tmp_path, faults=(rule,)) as sim:
            client = await sim.client()
            assert await client.request(request("visa", "4111111111111111", 100)) is not None
            await client.submit(request("visa", "4111111111111111", 4444))
            await client.closed.wait()
            assert client.unmatched == []
            other = await sim.client()
            assert await other.request(request("visa", "4111111111111111", 100)) is not None


async def _frames(stream: trio.SocketStream, framing: str, count: int) -> list[bytes]:
    decoder = FrameDecoder(Framing(kind=framing))
    frames: list[bytes] = []
    while len(frames) < count:
        data = await stream.receive_some(65536)
        assert data, "connection closed"
        frames += decoder.feed(data)
    return frames


async def test_garble_fault_sends_an_undecodable_answer(tmp_path: Path) -> None:
    spec = specs.load("mastercard")
    with trio.fail_after(10):
        async with simulator(tmp_path, "mastercard", faults=(FaultRule(kind="garble"),)) as sim:
            stream = await sim.raw()
            req = request("mastercard", "5555555555554444")
            await stream.send_all(encode_frame(codec.encode(req, spec)))
            [frame] = await _frames(stream, "2b", 1)
            with pytest.raises(CodecError):
                codec.decode(frame, spec)


async def test_duplicate_fault_sends_the_answer_twice(tmp_path: Path) -> None:
    spec = specs.load("belkart")
    with trio.fail_after(10):
        async with simulator(tmp_path, "belkart", faults=(FaultRule(kind="duplicate"),)) as sim:
            stream = await sim.raw()
            req = request("belkart", "9112000000000006")
            await stream.send_all(encode_frame(codec.encode(req, spec), Framing(kind="4a")))
            first, second = await _frames(stream, "4a", 2)
            assert first == second
            assert codec.decode(first, spec)["11"] == req["11"]
            assert (
                sim.balance("9112000000000006")
                == cardbook.load().cards["9112000000000006"].balance - 1000
            )


async def test_bad_field_with_readable_mti_and_stan_is_answered_30(tmp_path: Path) -> None:
    spec = specs.load("belkart")
    req = request("belkart", "9112000000000006")
    raw = codec.encode(req, spec)
    bad = raw.replace(req["4"].encode(), b"00000000ABCD", 1)
    with trio.fail_after(10):
        async with simulator(tmp_path, "belkart") as sim:
            stream = await sim.raw()
            await stream.send_all(encode_frame(bad, Framing(kind="4a")))
            [frame] = await _frames(stream, "4a", 1)
            answer = codec.decode(frame, spec)
            assert (answer["t"], answer["11"], answer["39"]) == ("0110", req["11"], "30")


async def test_unreadable_garbage_closes_only_that_connection(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with simulator(tmp_path) as sim:
            good = await sim.client()
            victim = await sim.raw()
            await victim.send_all(encode_frame(b"\x00\x01garbage"))
            assert await victim.receive_some(100) == b""  # closed by the simulator
            huge = await sim.raw()
            await huge.send_all(b"\xff\xff")  # length over the frame limit
            assert await huge.receive_some(100) == b""
            answer = await good.request(request("visa", "4111111111111111"))
            assert answer is not None and answer["39"] == "00"


async def test_a_busy_simulator_checkpoints_its_ledger_off_the_event_loop(
    tmp_path: Path,
) -> None:
    # Commits never checkpoint (manual_checkpoints); the server's own task
    # does, on a thread, every 200 commits, and starts the WAL over only past
    # 4,000 frames. A commit's checkpoint would have started it over at 1,000.
    database = tmp_path / "sim-visa.db"
    with trio.fail_after(20):
        async with simulator(tmp_path) as sim:
            client = await sim.client()
            before = database.stat().st_size
            for _ in range(250):  # a COMMIT to decide and one for the answer time each
                answer = await client.request(request("visa", "4111111111111111", 1))
                assert answer is not None and answer["39"] == "00"
            while database.stat().st_size <= before:  # pages copied back: a checkpoint ran
                await trio.sleep(0.01)  # on the checkpoint's thread: no event to wait on
            reader = sqlite3.connect(database)
            try:
                _, frames, _ = reader.execute("pragma wal_checkpoint(PASSIVE)").fetchone()
                # ~1,800 here; a commit's checkpoint restarts at 1,000 (+ one commit)
                assert frames > 1_100
                assert reader.execute("select count(*) from transactions").fetchone()[0] == 250
            finally:
                reader.close()


async def test_ledger_db_holds_no_clear_test_pan(tmp_path: Path) -> None:
    pans = [c.pan for c in cardbook.load() if c.network == "visa" and not c.never_answers]
    pans = [p for p in pans if p != "4000000000000259"]
    with trio.fail_after(10):
        async with simulator(tmp_path) as sim:
            client = await sim.client()
            for pan in pans:
                assert await client.request(request("visa", pan, cvv2="123", ecommerce=True))
    data = b"".join(p.read_bytes() for p in tmp_path.glob("sim-visa.db*"))
    for card in cardbook.load():
        assert card.pan.encode() not in data


@pytest.mark.parametrize("network", ["visa", "mastercard", "belkart"])
async def test_cutover_0500_is_answered_with_the_ledgers_totals(
    tmp_path: Path, network: str
) -> None:
    pan = {"visa": "4111111111111111", "mastercard": "5555555555554444"}.get(
        network, "9112000000000006"
    )
    with trio.fail_after(10):
        async with simulator(tmp_path, network) as sim:
            client = await sim.client()
            approved = await client.request(request(network, pan, 2500))
            assert approved is not None and approved["39"] == "00"
            now = dt.datetime.now(dt.UTC)
            ask = functools.partial(
                reconciliation_request,
                currency="933",
                business_day=now.date(),
                now=now,
                institution_id="400001",
            )
            agreed = await client.request(
                ask(totals=Totals(debits=1, debits_amount=2500, authorizations=1), stan="000501")
            )
            assert agreed is not None and (agreed["t"], agreed["39"]) == ("0510", "00")
            assert agreed["66"] == IN_BALANCE
            disagreed = await client.request(
                ask(totals=Totals(debits=2, debits_amount=5000), stan="000502")
            )
            assert disagreed is not None and disagreed["66"] == OUT_OF_BALANCE
