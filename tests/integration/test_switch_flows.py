"""The switch end to end in one process: real loopback sockets, real SQLite, the
three issuer simulators on the far side. One test per scenario of the daemon issue."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import specs
from simulators import cardbook
from simulators.ledger import Ledger
from switch import codec
from switch.cards import luhn_check_digit
from switch.client import AcquirerClient, build_request
from switch.config import parse_config
from switch.framing import encode_frame
from switch.journal import Journal
from switch.launch import free_port
from switch.server import Server
from tests.integration.netfixture import network, raw_config


def _valid(prefix: str, length: int = 16) -> str:
    body = prefix + "0" * (length - 1 - len(prefix))
    return body + luhn_check_digit(body)


def _journal(net) -> Journal:  # type: ignore[no-untyped-def]
    return Journal.open(net.config.switch.journal)


async def _wait_state(net, txn_rrn: str, terminal: str, want: str) -> dict:  # type: ignore[no-untyped-def]
    journal = _journal(net)
    try:
        while True:
            rows = journal.find_transactions(rrn=txn_rrn, terminal=terminal)
            rows = [r for r in rows if r["mti"][:2] != "04"]
            if rows and rows[0]["state"] == want:
                return rows[0]
            await trio.sleep(0.05)
    finally:
        journal.close()


@pytest.mark.parametrize(
    ("pan", "network_name"),
    [
        ("4111111111111111", "visa"),
        ("5555555555554444", "mastercard"),
        ("6759649826438453", "mastercard"),
        ("9112000000000006", "belkart"),
    ],
)
async def test_approval_for_each_network(tmp_path: Path, pan: str, network_name: str) -> None:
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            client = await net.client()
            req = build_request(pan=pan, amount=1000, cvv2="123")
            answer = await client.request(req)
            assert answer is not None
            assert answer["t"] == "0110" and answer["39"] == "00"
            assert len(answer["38"]) == 6
            assert (answer["11"], answer["41"]) == (req["11"], req["41"])
            assert len(answer["37"]) == 12
            assert "2" not in answer
            assert net.server.links[network_name].stats.answered == 1


@pytest.mark.parametrize(
    ("pan", "extra", "code"),
    [
        ("4000000000000002", {}, "51"),
        ("4000000000000069", {}, "54"),
        ("4000000000000127", {"cvv2": "999"}, "N7"),
        ("4000000000000101", {"ecommerce": True}, "57"),
        ("4000000000000119", {"amount": 15000}, "61"),
        ("4000000000000036", {}, "41"),
        ("5105105105105100", {}, "51"),
        ("9112000000000014", {}, "51"),
        ("4000000000000010", {}, "14"),  # valid Luhn, not in the card book
    ],
)
async def test_each_decline_card_gets_its_response_code(
    tmp_path: Path, pan: str, extra: dict, code: str
) -> None:
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            client = await net.client()
            answer = await client.request(build_request(pan=pan, **{"amount": 1000, **extra}))
            assert answer is not None and answer["39"] == code
            assert "38" not in answer


async def test_unknown_bin_is_declined_with_15_and_no_issuer_contacted(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            client = await net.client()
            answer = await client.request(build_request(pan=_valid("30"), amount=100))
            assert answer is not None and answer["39"] == "15"
            assert sum(link.stats.sent for link in net.server.links.values()) == 0


async def test_luhn_failure_is_declined_with_14_locally(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            client = await net.client()
            answer = await client.request(build_request(pan="4111111111111112", amount=100))
            assert answer is not None and answer["39"] == "14"
            assert net.server.links["visa"].stats.sent == 0


async def test_issuer_timeout_answers_91_and_reversal_releases_funds(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with network(tmp_path, timeout=0.5) as net:
            client = await net.client()
            req = build_request(pan="4000000000000994", amount=2500)  # issuer never answers
            answer = await client.request(req)
            assert answer is not None and answer["39"] == "91"
            row = await _wait_state(net, answer["37"], req["41"], "timed_out_reversed")
            assert row["amount"] == 2500
            journal = _journal(net)
            legs = [leg["leg"] for leg in journal.legs_of(row["txn_id"])]
            journal.close()
            assert legs[:2] == ["acquirer_in", "issuer_out"]
            assert "saf_out" in legs and "saf_in" in legs
            # The issuer's own ledger shows the hold released.
            book = cardbook.load()
            ledger = Ledger.open(net.config.simulators["visa"].ledger, net.vault)
            try:
                assert ledger.balance("4000000000000994") == book.get("4000000000000994").balance
                rows = ledger.rows("mti like '04%'")
                assert rows and all(r["pan_masked"] == "400000******0994" for r in rows)
            finally:
                ledger.close()


async def test_link_down_answers_91_at_once(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            net.server.links["visa"].set_admin_down(True)
            client = await net.client()
            start = trio.current_time()
            answer = await client.request(build_request(pan="4111111111111111", amount=100))
            assert answer is not None and answer["39"] == "91"
            assert trio.current_time() - start < net.config.issuers["visa"].timeout
            assert net.server.links["visa"].stats.sent == 0
            # Other networks carry on.
            mc = await client.request(build_request(pan="5555555555554444", amount=100))
            assert mc is not None and mc["39"] == "00"


async def test_duplicate_request_reaches_the_issuer_once(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            client = await net.client()
            req = build_request(pan="4111111111111111", amount=700)
            first = await client.submit(dict(req))
            second_answer = None

            async def again() -> None:
                nonlocal second_answer
                other = await net.client()
                second_answer = await other.request(dict(req))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(again)
                await first.done.wait()
            assert first.answer is not None and second_answer is not None
            assert first.answer == second_answer
            assert net.server.links["visa"].stats.sent == 1
            third = await client.request(dict(req))  # after the answer, too
            assert third == first.answer
            assert net.server.links["visa"].stats.sent == 1


async def test_acquirer_reversal_of_approval_releases_funds(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            client = await net.client()
            req = build_request(pan="5555555555554444", amount=4200)
            answer = await client.request(req)
            assert answer is not None and answer["39"] == "00"
            f90 = "0100" + req["11"] + req["7"] + "0" * 22
            rev = build_request(
                mti="0400",
                pan="5555555555554444",
                amount=4200,
                terminal=req["41"],
                extra={"90": f90},
            )
            rev_answer = await client.request(rev)
            assert rev_answer is not None and rev_answer["t"] == "0410" and rev_answer["39"] == "00"
            await _wait_state(net, answer["37"], req["41"], "reversed")
            # A repeat of the reversal is answered again, not reversed twice.
            repeat = dict(rev, t="0401")
            again = await client.request(repeat)
            assert again is not None and again["39"] == "00"


async def test_reversal_of_unknown_original_gets_25(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            client = await net.client()
            rev = build_request(
                mti="0400",
                pan="4111111111111111",
                amount=100,
                extra={"90": "0100" + "999999" + "1123000000" + "0" * 22},
            )
            answer = await client.request(rev)
            assert answer is not None and answer["t"] == "0410" and answer["39"] == "25"


async def test_out_of_order_answers_are_matched_to_their_requests(tmp_path: Path) -> None:
    faults = {"visa": [{"kind": "latency", "pan": "4111111111111111", "seconds": 0.3}]}
    with trio.fail_after(20):
        async with network(tmp_path, faults=faults) as net:
            client = await net.client()
            slow = await client.submit(build_request(pan="4111111111111111", amount=100))
            fast = await client.submit(build_request(pan="4000000000000002", amount=100))
            await fast.done.wait()
            assert not slow.done.is_set()
            await slow.done.wait()
            assert slow.answer is not None and fast.answer is not None
            assert (slow.answer["11"], slow.answer["39"]) == (slow.request["11"], "00")
            assert (fast.answer["11"], fast.answer["39"]) == (fast.request["11"], "51")


async def test_malformed_frame_gets_30_and_garbage_closes_only_that_connection(
    tmp_path: Path,
) -> None:
    spec = specs.load("iso87ascii")
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            bad = build_request(pan="4111111111111111", amount=100)
            bad["4"] = "00000000ABCD"  # letters in a numeric field
            client = await net.client()
            answer = await client.request(bad)
            assert answer is not None and answer["39"] == "30" and answer["11"] == bad["11"]

            victim = await net.client()
            await victim.send_raw(encode_frame(b"\x00\x01garbage"))
            with trio.fail_after(5):
                await victim.closed.wait()
            good = await client.request(build_request(pan="4111111111111111", amount=100))
            assert good is not None and good["39"] == "00"
            assert codec.decode(codec.encode(good, spec), spec) == good


async def test_status_says_where_each_transactions_time_went(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            client = await net.client()
            answer = await client.request(build_request(pan="4111111111111111", amount=100))
            assert answer is not None and answer["39"] == "00"
            declined = await client.request(build_request(pan="4111111111111112", amount=100))
            assert declined is not None and declined["39"] == "14"  # Luhn: never leaves
            with trio.fail_after(5):
                while net.server.status()["stages_ms"]["answer_send"]["count"] < 2:
                    await trio.sleep(0.01)  # the listener notes it after the client has it
            stages = net.server.status()["stages_ms"]
    assert {name: row["count"] for name, row in stages.items()} == {
        "queued": 2,
        "checks": 1,  # the Luhn decline is answered before any of the issuer's stages
        "write_ahead": 1,
        "issuer": 1,
        "outcome": 1,
        "answer_send": 2,
    }
    for row in stages.values():
        assert isinstance(row["p99"], float) and 0 < row["p99"] < 20_000


async def test_an_idle_acquirer_connection_is_closed_and_a_busy_one_is_not(
    tmp_path: Path,
) -> None:
    def short_idle(raw: dict[str, Any]) -> None:
        raw["listeners"][0]["idle_timeout"] = 1.0

    with trio.fail_after(20):
        async with network(tmp_path, tweak=short_idle) as net:
            quiet = await net.client()
            busy = await net.client()
            start = trio.current_time()
            for _ in range(15):  # a request every ~0.1 s for 1.5 s: never idle for 1 s
                answer = await busy.request(build_request(pan="4111111111111111", amount=1))
                assert answer is not None and answer["39"] == "00"
                await trio.sleep(0.1)
            with trio.fail_after(5):
                await quiet.closed.wait()
            assert trio.current_time() - start >= 1.0
            assert not busy.closed.is_set()
            answer = await busy.request(build_request(pan="4111111111111111", amount=1))
            assert answer is not None and answer["39"] == "00"


@pytest.mark.parametrize(
    ("field", "value", "issuer_out"),
    [
        ("48", "C2005123", False),  # a TLV element that runs past the field's end
        ("35", "4111111111111111X30121010000000000000", True),  # no BCD nibble for X (Visa)
    ],
)
async def test_a_request_that_cannot_be_translated_gets_30_and_the_connection_carries_on(
    tmp_path: Path, field: str, value: str, issuer_out: bool
) -> None:
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            client = await net.client()
            bad = build_request(pan="4111111111111111", amount=100, extra={field: value})
            answer = await client.request(bad)
            assert answer is not None and answer["39"] == "30" and answer["11"] == bad["11"]
            good = await client.request(build_request(pan="4111111111111111", amount=100))
            assert good is not None and good["39"] == "00"
            assert net.server.links["visa"].stats.sent == 1  # only the good one left
            row = await _wait_state(net, answer["37"], bad["41"], "rejected")
            journal = _journal(net)
            try:
                legs = [leg["leg"] for leg in journal.legs_of(row["txn_id"])]
                # Past the write-ahead, the rejected outcome keeps recovery from reversing it.
                assert ("issuer_out" in legs) == issuer_out
                assert legs[-1] == "acquirer_out"
                assert journal.in_doubt() == []
            finally:
                journal.close()
            assert net.server.saf.depth() == 0


async def test_saf_holds_reversals_while_link_down_and_drains_when_it_is_back(
    tmp_path: Path,
) -> None:
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            client = await net.client()
            req = build_request(pan="4111111111111111", amount=5100)
            answer = await client.request(req)
            assert answer is not None and answer["39"] == "00"
            book = cardbook.load()
            ledger = Ledger.open(net.config.simulators["visa"].ledger, net.vault)
            try:
                held = book.get("4111111111111111").balance - 5100
                assert ledger.balance("4111111111111111") == held
                link = net.server.links["visa"]
                link.set_admin_down(True)
                journal = _journal(net)
                [row] = journal.find_transactions(rrn=answer["37"], terminal=req["41"])
                journal.close()
                # A reversal the switch owes while the issuer is unreachable.
                net.server.processor.queue_reversal(
                    row["txn_id"],
                    "visa",
                    {
                        "t": "0100",
                        "3": "000000",
                        "4": "000000005100",
                        "7": row["issuer_f7"],
                        "11": row["issuer_stan"],
                        "37": row["rrn"],
                        "41": req["41"],
                        "49": "933",
                    },
                    net.server.vault.encrypt_pan("4111111111111111"),
                )
                await trio.testing.wait_all_tasks_blocked()
                assert net.server.saf.depth("visa") == 1
                assert ledger.balance("4111111111111111") == held
                link.set_admin_down(False)
                await _wait_state(net, answer["37"], req["41"], "timed_out_reversed")
                assert net.server.saf.depth("visa") == 0
                assert ledger.balance("4111111111111111") == held + 5100
            finally:
                ledger.close()


async def test_late_answer_is_journaled_as_late_and_the_approval_reversed(tmp_path: Path) -> None:
    faults = {"visa": [{"kind": "latency", "pan": "4111111111111111", "seconds": 1.0}]}
    with trio.fail_after(20):
        async with network(tmp_path, faults=faults, timeout=0.3) as net:
            client = await net.client()
            req = build_request(pan="4111111111111111", amount=900)
            answer = await client.request(req)
            assert answer is not None and answer["39"] == "91"
            row = await _wait_state(net, answer["37"], req["41"], "timed_out_reversed")
            journal = _journal(net)
            try:
                while "late" not in [leg["leg"] for leg in journal.legs_of(row["txn_id"])]:
                    await trio.sleep(0.05)
                late = [leg for leg in journal.legs_of(row["txn_id"]) if leg["leg"] == "late"]
            finally:
                journal.close()
            assert late[0]["response_code"] == "00"
            assert net.server.links["visa"].stats.late >= 1  # the reversals may be late too


async def test_reversal_overtaking_its_original_waits_for_it(tmp_path: Path) -> None:
    faults = {"mastercard": [{"kind": "latency", "pan": "5555555555554444", "seconds": 0.3}]}
    with trio.fail_after(20):
        async with network(tmp_path, faults=faults) as net:
            client = await net.client()
            req = build_request(pan="5555555555554444", amount=1200)
            original = await client.submit(req)
            rev = build_request(
                mti="0400",
                pan="5555555555554444",
                amount=1200,
                terminal=req["41"],
                extra={"90": "0100" + req["11"] + req["7"] + "0" * 22},
            )
            rev_answer = await client.request(rev)
            assert original.done.is_set() and original.answer is not None
            assert original.answer["39"] == "00"
            assert rev_answer is not None and rev_answer["39"] == "00"
            await _wait_state(net, original.answer["37"], req["41"], "reversed")


async def test_issuer_that_never_answers_sign_on_leaves_the_switch_up(tmp_path: Path) -> None:
    """A failed (re-)sign-on is the link's problem, never the whole switch's."""

    async def black_hole(stream: trio.SocketStream) -> None:
        async with stream:
            while await stream.receive_some(4096):
                pass  # read and never answer

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(
                functools.partial(trio.serve_tcp, black_hole, 0, host="127.0.0.1")
            )
            port = listener.socket.getsockname()[1]
            ports = {"visa": port, "mastercard": port, "belkart": port}
            config = parse_config(raw_config(tmp_path, ports, timeout=0.2), tmp_path)
            server = Server(config)
            [switch_port] = await nursery.start(server.serve)
            visa = server.links["visa"]
            while visa.stats.reconnects < 2:
                await trio.sleep(0.05)
            assert visa.stats.last_error is not None and "sign-on" in visa.stats.last_error
            client = await AcquirerClient.connect("127.0.0.1", switch_port)
            await nursery.start(client.run)
            answer = await client.request(build_request(pan="4111111111111111", amount=100))
            assert answer is not None and answer["39"] == "91"
            await client.aclose()
            server.shutdown()
            await server.stopped.wait()
            nursery.cancel_scope.cancel()


async def test_primary_endpoint_down_traffic_goes_to_the_alternate(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"

    def primary_dead(raw: dict) -> None:  # type: ignore[type-arg]
        raw["issuers"]["visa"]["endpoints"].insert(0, dead)

    with trio.fail_after(20):
        async with network(tmp_path, tweak=primary_dead) as net:
            link = net.server.links["visa"]
            assert link.status()["endpoint"] != dead
            client = await net.client()
            answer = await client.request(build_request(pan="4111111111111111", amount=100))
            assert answer is not None and answer["39"] == "00"
