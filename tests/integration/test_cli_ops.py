"""send, replay, journal and report through click's CliRunner against a real network.

Each test runs a whole network in its own trio loop (three issuer simulators
and the switch on loopback port 0, real SQLite under tmp_path) and the
command under test in a worker thread, where it calls ``trio.run`` as it does
from a shell. The journal the commands read is the one that network wrote.
The config the commands load is the shipped ``switch.toml`` with the
network's ports: :func:`defaults_with`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import trio
from click.testing import CliRunner, Result

from switch.cli import main
from switch.journal import Journal
from tests.integration.netfixture import Network, network

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "tests" / "traces"
# Not after a digit or a decimal point: a latency float such as 3.5169830080121756 is no PAN.
CLEAR_PANS = re.compile(r"(?<![\d.])(4111111111111111|4000000000000\d{3}|5[15]\d{14})(?!\d)")
_SIM_DEFAULTS = {"visa": 9101, "mastercard": 9102, "belkart": 9103}


def defaults_with(
    folder: Path,
    *,
    listener_port: int,
    sim_ports: dict[str, int],
    timeout: float | None = None,
) -> Path:
    """The shipped switch.toml, written to ``folder`` with other ports (and issuer timeout)."""
    text = (ROOT / "switch.toml").read_text()

    def swap(old: str, new: str, count: int) -> None:
        nonlocal text
        assert text.count(old) == count, f"switch.toml no longer has {count} x {old!r}"
        text = text.replace(old, new)

    swap("port = 8583", f"port = {listener_port}", 1)
    for name, default in _SIM_DEFAULTS.items():
        swap(f'"127.0.0.1:{default}"', f'"127.0.0.1:{sim_ports[name]}"', 1)
        swap(f"port = {default}", f"port = {sim_ports[name]}", 1)
    if timeout is not None:
        swap("timeout = 5.0", f"timeout = {timeout}", 3)
    path = folder / "switch.toml"
    path.write_text(text)
    return path


def _config(net: Network, tmp_path: Path) -> Path:
    return defaults_with(tmp_path, listener_port=net.port, sim_ports=net.sim_ports)


async def _cli(config: Path, *args: str) -> Result:
    """Run ``switch ARGS --config CONFIG`` in a thread, as a shell would."""

    def invoke() -> Result:
        return CliRunner().invoke(main, [*args, "--config", str(config)])

    result = await trio.to_thread.run_sync(invoke)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert not CLEAR_PANS.search(result.output), f"clear PAN in output:\n{result.output}"
    return result


async def _wait_state(journal_path: Path, stan: str, want: str) -> dict[str, Any]:
    """Poll the journal until the transaction is ``want`` (the caller's fail_after bounds it)."""
    journal = Journal.open(journal_path)
    try:
        while True:
            rows = journal.find_transactions(stan=stan, terminal="TERM0001")
            if rows and rows[0]["state"] == want:
                return rows[0]
            await trio.sleep(0.05)
    finally:
        journal.close()


# -- replay -------------------------------------------------------------------------


async def test_the_demo_trace_replays_clean(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with network(tmp_path) as net:
            result = await _cli(_config(net, tmp_path), "replay", str(TRACES / "demo.jsonl"))
    assert result.exit_code == 0, result.output
    assert "18 lines: 18 passed, 0 failed" in result.output
    assert "411111******1111" in result.output


async def test_a_wrong_expectation_exits_1_and_the_diff_names_the_field(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with network(tmp_path) as net:
            trace = str(TRACES / "wrong-expectation.jsonl")
            result = await _cli(_config(net, tmp_path), "replay", trace)
    assert result.exit_code == 1
    assert re.search(r"line +2 +FAIL", result.output)
    assert re.search(r"39 \(.*\): expected '00', got '51' .* Insufficient funds", result.output)
    assert re.search(r"38 \(.*\): expected present, absent", result.output)
    assert "2 lines: 1 passed, 1 failed" in result.output


async def test_a_recorded_trace_replays_clean(tmp_path: Path) -> None:
    golden = tmp_path / "golden.jsonl"
    trace = str(TRACES / "wrong-expectation.jsonl")
    with trio.fail_after(30):
        async with network(tmp_path) as net:
            config = _config(net, tmp_path)
            first = await _cli(config, "replay", trace, "--record", str(golden), "-n", "2")
            again = await _cli(config, "replay", str(golden), "--json")
            nowhere = tmp_path / "nowhere" / "golden.jsonl"
            unwritable = await _cli(config, "replay", trace, "--record", str(nowhere))
    assert first.exit_code == 1  # the trace is wrong; the recording is what happened
    assert unwritable.exit_code == 2
    assert f"Error: cannot write {nowhere}: No such file or directory" in unwritable.output
    lines = [json.loads(line) for line in golden.read_text().splitlines()]
    assert lines[1]["expect"]["39"] == "51" and lines[1]["expect"]["38"] == "*absent"
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert (data["passed"], data["failed"]) == (2, 0)
    assert data["results"][0]["pan"] == "411111******1111"


async def test_a_long_trace_runs_concurrently_with_a_progress_bar(tmp_path: Path) -> None:
    line = json.loads((TRACES / "demo.jsonl").read_text().splitlines()[0])
    trace = tmp_path / "long.jsonl"
    trace.write_text("\n".join(json.dumps(line) for _ in range(60)) + "\n")
    with trio.fail_after(30):
        async with network(tmp_path) as net:
            result = await _cli(
                _config(net, tmp_path), "replay", str(trace), "-n", "10", "--timing", "fast"
            )
    assert result.exit_code == 0, result.output
    assert "replaying" in result.output
    assert "60 lines: 60 passed, 0 failed" in result.output


# -- send ---------------------------------------------------------------------------


async def test_send_shows_request_and_answer_side_by_side(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with network(tmp_path) as net:
            config = _config(net, tmp_path)
            approved = await _cli(
                config,
                "send",
                "--pan",
                "4000000000000127",
                "--amount",
                "12.34",
                "--cvv2",
                "123",
                "--ecommerce",
            )
            declined = await _cli(
                config,
                "send",
                "--pan",
                "4000000000000002",
                "--amount",
                "1",
                "--expect",
                "00",
                "--json",
            )
    out = approved.output
    assert approved.exit_code == 0, out
    assert re.search(r"^2 +.*400000\*\*\*\*\*\*0127", out, flags=re.M)
    assert re.search(r"^4 +.*000000001234 +000000001234", out, flags=re.M)
    assert re.search(r"^39 +Response Code +00 +Approved", out, flags=re.M)
    assert "C2003***" in out and "C2003123" not in out
    assert declined.exit_code == 1  # --expect 00 not met
    data = json.loads(declined.output)
    assert data["response_code"] == "51" and data["meaning"] == "Insufficient funds"
    assert data["request"]["2"] == "400000******0002"


# -- operator commands --------------------------------------------------------------


async def test_a_bad_saf_request_is_refused_and_the_daemon_stays_up(tmp_path: Path) -> None:
    from switch import admin

    socket = tmp_path / "var" / "switch.sock"

    def ask(request: dict[str, Any]) -> str:
        try:
            admin.call(socket, request)
        except admin.AdminError as exc:
            return str(exc)
        return "ok"

    with trio.fail_after(30):
        async with network(tmp_path) as net:
            config = _config(net, tmp_path)
            too_big = await _cli(config, "saf", "retry", "99999999999999999999999")
            refused = [
                await trio.to_thread.run_sync(ask, request)
                for request in (
                    {"cmd": "saf_retry", "id": 10**30},
                    {"cmd": "saf_retry", "id": "x"},
                    {"cmd": "saf_list", "limit": "x"},
                    {"cmd": "saf_list", "status": "lost"},
                )
            ]
            status = await _cli(config, "status", "--json")
    assert too_big.exit_code == 2 and "ENTRY_ID" in too_big.output
    assert refused[0].startswith("id: expected an integer"), refused
    assert refused[1].startswith("id: expected an integer"), refused
    assert refused[2].startswith("limit: expected an integer"), refused
    assert refused[3].startswith("status: expected one of pending, done, expired"), refused
    assert status.exit_code == 0, status.output


async def test_saf_retry_of_an_id_with_no_pending_entry_says_so(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with network(tmp_path) as net:
            config = _config(net, tmp_path)
            one = await _cli(config, "saf", "retry", "999")
            every = await _cli(config, "saf", "retry")
    assert one.exit_code == 1, one.output
    assert "no pending SAF entry 999" in one.output
    assert every.exit_code == 0 and "0 entries retried" in every.output, every.output


# -- journal ------------------------------------------------------------------------


async def test_journal_finds_by_masked_pan_rc_and_stan(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with network(tmp_path) as net:
            config = _config(net, tmp_path)
            sent = await _cli(
                config, "send", "--pan", "5105105105105100", "--amount", "3.00", "--json"
            )
            await _cli(config, "send", "--pan", "4111111111111111", "--amount", "3.00")
            stan = json.loads(sent.output)["request"]["11"]
            by_pan = await _cli(config, "journal", "--pan", "510510******5100", "--json")
            by_clear_pan = await _cli(config, "journal", "--pan", "5105105105105100")
            by_stan = await _cli(
                config, "journal", "--stan", stan, "--terminal", "TERM0001", "--rc", "51"
            )
            legs = await _cli(config, "journal", "--stan", stan, "--legs", "--csv")
    rows = json.loads(by_pan.output)
    assert len(rows) == 1 and rows[0]["pan_masked"] == "510510******5100"
    assert "pan_enc" not in rows[0]
    assert "510510******5100" in by_clear_pan.output and "1 transactions" in by_clear_pan.output
    assert by_stan.exit_code == 0
    assert "510510******5100" in by_stan.output and "declined" in by_stan.output
    assert "1 transactions" in by_stan.output
    header, *body = legs.output.splitlines()
    assert header.startswith("id,txn_id,leg,") and "pan_enc" not in header
    assert {"acquirer_in", "issuer_out", "issuer_in", "acquirer_out"} <= {
        line.split(",")[2] for line in body
    }


async def test_journal_show_lists_every_leg_of_a_timed_out_transaction(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with network(tmp_path) as net:
            config = _config(net, tmp_path)
            sent = await _cli(
                config, "send", "--pan", "4000000000000994", "--amount", "1.00", "--json"
            )
            assert json.loads(sent.output)["response_code"] == "91"
            stan = json.loads(sent.output)["request"]["11"]
            row = await _wait_state(net.config.switch.journal, stan, "timed_out_reversed")
            shown = await _cli(config, "journal", "show", row["txn_id"][:10])
            as_json = await _cli(config, "journal", "show", row["txn_id"], "--json")
            errors = [
                await _cli(config, "journal", "--since", "last tuesday"),
                await _cli(config, "journal", "--journal", str(tmp_path / "none.db")),
            ]
            unknown = await _cli(config, "journal", "show", "nosuchtxn")
    assert shown.exit_code == 0, shown.output
    assert "state timed_out_reversed" in shown.output
    legs = re.findall(r"^\+\S+ ms +\S+ ms +(\w+)", shown.output, flags=re.M)
    assert legs[:3] == ["acquirer_in", "issuer_out", "acquirer_out"]
    assert {"saf_out", "saf_in"} <= set(legs)
    assert json.loads(as_json.output)["transaction"]["state"] == "timed_out_reversed"
    assert [e.exit_code for e in errors] == [2, 2]
    assert "no journal at" in errors[1].output
    assert unknown.exit_code == 1


# -- report -------------------------------------------------------------------------


async def test_report_in_every_format(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    with trio.fail_after(30):
        async with network(tmp_path) as net:
            config = _config(net, tmp_path)
            await _cli(config, "replay", str(TRACES / "demo.jsonl"))  # every kind of outcome
            table = await _cli(config, "report", "--since", "1h")
            as_json = await _cli(config, "report", "--format", "json")
            as_csv = await _cli(config, "report", "--format", "csv", "--until", "now")
            html = await _cli(config, "report", "--out", str(page))
    assert table.exit_code == 0
    for text in ("visa", "mastercard", "belkart", "(switch)", "51 Insufficient funds", "BYN"):
        assert text in table.output
    data = json.loads(as_json.output)
    assert data["requests"] == 17 and data["reversals"] == 1 and data["reversals_done"] == 1
    assert data["latency_ms"]["p50"] is not None
    assert {g["name"] for g in data["by_network"]} == {"visa", "mastercard", "belkart", "(switch)"}
    assert as_csv.output.startswith("section,name,currency,count")
    assert html.exit_code == 0
    text = page.read_text()
    assert text.startswith("<!doctype html>") and text.count("<svg") >= 3
    assert not CLEAR_PANS.search(text)
