"""Reconciliation end to end: real traffic through the switch and the issuer simulators,
then breaks made on purpose -- simulator faults, hand-edited settlement files, journal rows
edited or removed, an in-doubt transaction as a kill -9 leaves it -- and recon must find
exactly those, and nothing on a clean day."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from simulators.ledger import Ledger
from simulators.settlement import write_settlement
from switch import recon_io
from switch.client import build_request
from switch.config import Config
from switch.journal import Journal
from switch.recon import SETTLEMENT_COLUMNS, IssuerRecord, parse_settlement
from switch.recon_report import Report
from tests.integration.netfixture import Network, network

NETWORKS = ("visa", "mastercard", "belkart")


async def _until(check: Callable[[], bool]) -> None:
    """Wait for a condition of the journal or SAF (callers hold a fail_after)."""
    while not check():
        await trio.sleep(0.02)


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _settlement(net: Network, name: str, day: dt.date) -> list[dict[str, str]]:
    """The network's settlement rows, as ``switch sim settlement`` writes them."""
    ledger = Ledger.open(net.config.simulators[name].ledger, net.vault)
    try:
        text = io.StringIO()
        write_settlement(ledger, day.isoformat(), text)
    finally:
        ledger.close()
    text.seek(0)
    return list(csv.DictReader(text))


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, SETTLEMENT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _records(path: Path) -> list[IssuerRecord]:
    with path.open(newline="") as fh:
        return parse_settlement(fh)


def _gather(net: Network, settlements: dict[str, list[IssuerRecord]]) -> Report:
    journal = Journal.open(net.config.switch.journal)
    try:
        return recon_io.gather(journal, net.server.saf, _today(), settlements)
    finally:
        journal.close()


def _journal_count(net: Network, sql: str, *args: Any) -> int:
    journal = Journal.open(net.config.switch.journal)
    try:
        return int(journal.db.conn.execute(sql, args).fetchone()[0])
    finally:
        journal.close()


def _settled(net: Network, transactions: int, pending: int = 0) -> Callable[[], bool]:
    """Every transaction journaled with a final state, and only ``pending`` SAF entries left."""

    def check() -> bool:
        return (
            net.server.saf.depth() == pending
            and _journal_count(net, "select count(*) from transactions where state != 'in_flight'")
            == transactions
            and _journal_count(
                net,
                "select count(*) from transactions where state = 'timed_out' "
                "and txn_id not in (select txn_id from saf where status = 'pending')",
            )
            == 0
        )

    return check


async def _send(net: Network, **kwargs: Any) -> tuple[dict[str, str], dict[str, str]]:
    client = net.clients[0] if net.clients else await net.client()
    request = build_request(**kwargs)
    answer = await client.request(request)
    assert answer is not None
    return request, answer


async def test_a_clean_day_has_no_breaks_and_totals_in_balance(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with network(tmp_path) as net:
            codes = []
            for pan in ("4111111111111111", "5555555555554444", "6759649826438453"):
                codes.append((await _send(net, pan=pan, amount=1500))[1]["39"])
            codes.append((await _send(net, pan="9112000000000006", amount=2000))[1]["39"])
            codes.append((await _send(net, pan="4000000000000002", amount=100))[1]["39"])
            refund = await _send(
                net, mti="0200", pan="4111111111111111", amount=300, processing_code="200000"
            )
            codes.append(refund[1]["39"])
            sale, _ = await _send(net, pan="5555555555554444", amount=4200)
            f90 = "0100" + sale["11"] + sale["7"] + "0" * 22
            _, rev = await _send(
                net, mti="0400", pan="5555555555554444", amount=4200, extra={"90": f90}
            )
            codes.append(rev["39"])
            codes.append((await _send(net, pan="4000000000000994", amount=2500))[1]["39"])
            assert codes == ["00", "00", "00", "00", "51", "00", "00", "91"]
            await _until(_settled(net, transactions=9))

            day = _today()
            files = {
                n: _write_csv(tmp_path / f"{n}.csv", _settlement(net, n, day)) for n in NETWORKS
            }
            report = _gather(net, {n: _records(p) for n, p in files.items()})
            assert report.breaks == []
            visa = report.networks["visa"]
            assert visa.result.counts["matched"] == 4  # approval, decline, refund, timeout
            assert visa.switch_totals == visa.issuer_totals
            byn = visa.switch_totals["933"]
            assert (byn.debits, byn.debit_reversals, byn.credits) == (2, 1, 1)
            assert report.networks["mastercard"].switch_totals["933"].debit_reversals == 1
            assert report.clean

            await recon_io.cutover(report, _bound(net), now=dt.datetime.now(dt.UTC))
            for name in NETWORKS:
                for outcome in report.networks[name].cutover.values():
                    assert outcome.in_balance, (name, outcome)
            again = _gather(net, {n: _records(p) for n, p in files.items()})
            assert again.networks["visa"].result == visa.result  # re-running: the same


def _bound(net: Network) -> Config:
    """The config with the simulators' real ports (they were started on port 0)."""
    sims = {n: replace(s, port=net.sim_ports[n]) for n, s in net.config.simulators.items()}
    return replace(net.config, simulators=sims)


def _edit(rows: list[dict[str, str]], rrn: str, **changes: str) -> None:
    [row] = [r for r in rows if r["rrn"] == rrn and r["mti"][:2] == "01"]
    row.update(changes)


async def test_each_break_made_on_purpose_is_found_and_fixed(tmp_path: Path) -> None:
    faults = {"mastercard": [{"kind": "no_answer", "pan": "6759649826438453"}]}
    with trio.fail_after(60):
        async with network(tmp_path, faults=faults) as net:
            rrn: dict[str, str] = {}
            for n in range(1, 9):
                _, answer = await _send(net, pan="4111111111111111", amount=100 + n)
                rrn[f"ok{n}"] = answer["37"]
            _, answer = await _send(net, pan="4000000000000994", amount=2500)
            rrn["timeout"] = answer["37"]
            for _ in range(2):  # one sale sent twice under two STANs
                _, answer = await _send(
                    net, pan="4111111111111111", amount=4242, extra={"37": "000000004242"}
                )
                assert answer["39"] == "00"
            # The issuer approves but never answers (fault), and the link goes down before
            # the SAF can deliver the reversal: the cardholder's money stays held.
            mastercard = net.server.links["mastercard"]
            exchange = await net.clients[0].submit(
                build_request(pan="6759649826438453", amount=300)
            )
            await _until(lambda: mastercard.stats.sent == 1)
            mastercard.set_admin_down(True)
            await exchange.done.wait()
            assert exchange.answer is not None and exchange.answer["39"] == "91"
            rrn["mc_hold"] = exchange.answer["37"]
            _, answer = await _send(net, pan="9112000000000006", amount=700)
            assert answer["39"] == "00"
            await _until(_settled(net, transactions=13, pending=1))

            # The journal: a kill -9 between the issuer's answer and its journaling
            # (issuer_in and acquirer_out lost, the transaction still in flight) ...
            journal = Journal.open(net.config.switch.journal)
            conn = journal.db.conn
            crash = conn.execute(
                "select txn_id from transactions where issuer_rrn = ?", (rrn["ok1"],)
            ).fetchone()[0]
            conn.execute(
                "delete from legs where txn_id = ? and leg in ('issuer_in', 'acquirer_out')",
                (crash,),
            )
            conn.execute(
                "update transactions set state = 'in_flight', response_code = null,"
                " auth_code = null where txn_id = ?",
                (crash,),
            )
            # ... and a transaction removed altogether.
            gone = conn.execute(
                "select txn_id from transactions where issuer_rrn = ?", (rrn["ok2"],)
            ).fetchone()[0]
            conn.execute("delete from legs where txn_id = ?", (gone,))
            conn.execute("delete from transactions where txn_id = ?", (gone,))
            journal.close()

            # The settlement file, hand-edited.
            day = _today()
            visa = _settlement(net, "visa", day)
            visa = [r for r in visa if r["rrn"] != rrn["ok3"]]
            _edit(visa, rrn["ok4"], amount="000000000999")
            _edit(visa, rrn["ok5"], currency="840")
            visa.append(dict(next(r for r in visa if r["rrn"] == rrn["ok6"])))
            _edit(visa, rrn["timeout"], reversed="0", reversed_amount="000000000000")
            _edit(visa, rrn["ok7"], reversed="1", reversed_amount="000000000107")
            _edit(visa, rrn["ok8"], response_code="05", auth_code="")
            edited = {
                "visa": _records(_write_csv(tmp_path / "visa.csv", visa)),
                **{
                    n: _records(_write_csv(tmp_path / f"{n}.csv", _settlement(net, n, day)))
                    for n in ("mastercard", "belkart")
                },
            }

            report = _gather(net, edited)
            found = Counter((b.network, b.kind, b.rrn) for b in report.breaks)
            assert found == Counter(
                {
                    ("visa", "approved_not_delivered", rrn["ok1"]): 1,
                    ("visa", "missing_in_journal", rrn["ok2"]): 1,
                    ("visa", "missing_at_issuer", rrn["ok3"]): 1,
                    ("visa", "amount_mismatch", rrn["ok4"]): 1,
                    ("visa", "currency_mismatch", rrn["ok5"]): 1,
                    ("visa", "duplicate_at_issuer", rrn["ok6"]): 1,
                    ("visa", "reversed_only_at_switch", rrn["timeout"]): 1,
                    ("visa", "reversed_only_at_issuer", rrn["ok7"]): 1,
                    ("visa", "outcome_mismatch", rrn["ok8"]): 1,
                    ("visa", "duplicate_in_journal", "000000004242"): 1,
                    ("mastercard", "approved_not_delivered", rrn["mc_hold"]): 1,
                }
            )
            assert report.networks["belkart"].clean
            by_kind = {b.kind: b for b in report.breaks}
            assert by_kind["approved_not_delivered"].switch_outcome == "in_flight (no answer)"
            held = next(b for b in report.breaks if b.network == "mastercard")
            assert held.fix is None and "SAF #" in held.action  # its reversal is queued
            assert all("*" in b.pan_masked for b in report.breaks)

            # --fix: the three reversals the breaks call for, delivered by the running SAF.
            journal = Journal.open(net.config.switch.journal)
            fixed = recon_io.queue_fixes(
                journal, net.server.saf, report.breaks, net.config, now=dt.datetime.now(dt.UTC)
            )
            journal.close()
            assert sorted(f.found.kind for f in fixed) == [
                "approved_not_delivered",
                "duplicate_in_journal",
                "reversed_only_at_switch",
            ]
            assert all(f.entry is not None for f in fixed)
            for forwarder in net.server.forwarders.values():
                forwarder.kick()
            settled_sql = "select count(*) from legs where leg = 'saf_in' and note like ?"
            await _until(
                lambda: all(
                    _journal_count(net, settled_sql, f"SAF entry {f.entry} %") for f in fixed
                )
            )

            clean_files = {
                n: _records(_write_csv(tmp_path / f"{n}-after.csv", _settlement(net, n, day)))
                for n in NETWORKS
            }
            after = _gather(net, clean_files)
            assert sorted((b.network, b.kind) for b in after.breaks) == [
                ("mastercard", "approved_not_delivered"),
                ("visa", "missing_in_journal"),  # a lost journal row stays lost
            ]
            # Fixing again queues nothing more.
            journal = Journal.open(net.config.switch.journal)
            again = recon_io.queue_fixes(
                journal, net.server.saf, after.breaks, net.config, now=dt.datetime.now(dt.UTC)
            )
            journal.close()
            assert again == []


# -- the command line, on a journal and settlement file written by hand ------------------

CLI_DAY = dt.date(2024, 5, 1)
CLI_CONFIG = """
[switch]
journal = "journal.db"
token_key_file = "token.key"
admin_socket = "switch.sock"

[issuers.visa]
spec = "visa"
endpoints = ["127.0.0.1:1"]

[issuers.belkart]
spec = "belkart"
endpoints = ["127.0.0.1:1"]

[routes]
"4" = "visa"
"9112" = "belkart"
"""


def _cli_day(tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    """A visa day of three transactions: approved, declined, timed out (the issuer approved it)."""
    from switch.journal import Leg
    from switch.vault import Vault

    start = recon_io.day_window(CLI_DAY)[0] + 3_600_000_000
    pan_enc = Vault.ephemeral().encrypt_pan("4111111111111111")
    journal = Journal.open(tmp_path / "journal.db")
    rows = []
    for n, (code, state) in enumerate(
        [("00", "approved"), ("51", "declined"), ("91", "timed_out")], start=1
    ):
        t, txn, stan, rrn = start + n * 1000, f"txn{n}", f"{n:06d}", f"41221000000{n}"
        common: dict[str, Any] = {
            "txn_id": txn,
            "terminal": "TERM0001",
            "pan_masked": "411111******1111",
            "pan_token": "tok",
            "amount": 1000 * n,
            "currency": "933",
            "processing_code": "000000",
        }
        legs = [
            Leg(leg="acquirer_in", time_us=t, link="gateway", mti="0100", stan=stan, **common),
            Leg(
                leg="issuer_out",
                time_us=t + 1,
                link="visa",
                mti="0100",
                stan=stan,
                rrn=rrn,
                f7="0501100000",
                pan_enc=pan_enc,
                **common,
            ),
        ]
        if code != "91":
            legs.append(
                Leg(
                    txn_id=txn,
                    leg="issuer_in",
                    time_us=t + 2,
                    link="visa",
                    mti="0110",
                    stan=stan,
                    rrn=rrn,
                    response_code=code,
                )
            )
        legs.append(
            Leg(
                txn_id=txn,
                leg="acquirer_out",
                time_us=t + 3,
                link="gateway",
                mti="0110",
                stan=stan,
                rrn=rrn,
                response_code=code,
                state=state,
            )
        )
        journal.write_batch(legs)
        rows.append(
            {
                **dict.fromkeys(SETTLEMENT_COLUMNS, ""),
                "rrn": rrn,
                "stan": stan,
                "amount": f"{1000 * n:012d}",
                "currency": "933",
                "processing_code": "000000",
                "mti": "0100",
                "response_code": "00" if code == "91" else code,
                "reversed": "0",
                "reversed_amount": "0",
                "pan_masked": "411111******1111",
            }
        )
    journal.close()
    (tmp_path / "switch.toml").write_text(CLI_CONFIG)
    return tmp_path / "switch.toml", rows


def _recon(config: Path, *args: str, input: str | None = None) -> Any:
    from click.testing import CliRunner

    from switch.cli_recon import recon

    return CliRunner().invoke(
        recon, ["--config", str(config), "--date", CLI_DAY.isoformat(), *args], input=input
    )


def test_cli_exit_codes_outputs_and_fix(tmp_path: Path) -> None:
    import json

    from switch.saf import SafStore

    config, rows = _cli_day(tmp_path)
    # The timed-out request never reached the issuer: no money moved, a clean day.
    lost = _write_csv(tmp_path / "lost.csv", [r for r in rows if r["rrn"] != rows[2]["rrn"]])
    result = _recon(config, "-n", "visa", "-s", str(lost))
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("clean")
    settled = [dict(r) for r in rows]
    settled[2].update(reversed="1", reversed_amount="3000")
    ok = _write_csv(tmp_path / "ok.csv", settled)
    # Reversed at the issuer, but the journal has no answer to a reversal: every
    # transaction matches, yet the counts of fields 76/77 differ (the net agrees).
    result = _recon(config, "-n", "visa", "-s", str(ok))
    assert result.exit_code == 1, result.output
    assert result.output.rstrip().endswith("no breaks, but the totals disagree")

    held = _write_csv(tmp_path / "held.csv", rows)
    out_csv, out_json = tmp_path / "breaks.csv", tmp_path / "breaks.json"
    first = _recon(config, "-s", f"visa={held}", "--json", "--out", str(out_csv))
    second = _recon(config, "-s", f"visa={held}", "--json", "--out", str(out_json))
    assert first.exit_code == second.exit_code == 1
    assert first.output == second.output  # deterministic
    report = json.loads(first.output)
    [found] = report["breaks"]
    assert (found["kind"], found["rrn"], found["fix"]) == (
        "approved_not_delivered",
        "412210000003",
        "reverse",
    )
    with out_csv.open() as fh:
        [row] = list(csv.DictReader(fh))
    assert row["kind"] == "approved_not_delivered" and row["pan_masked"] == "411111******1111"
    assert json.loads(out_json.read_text()) == report["breaks"]
    assert "4111111111111111" not in first.output + out_csv.read_text()

    declined = _recon(config, "-s", f"visa={held}", "--fix", input="n\n")
    assert declined.exit_code == 1
    saf = SafStore.open(tmp_path / "journal.db")
    try:
        assert saf.depth() == 0
        fixed = _recon(config, "-s", f"visa={held}", "--fix", "--yes")
        assert fixed.exit_code == 1 and "queued as SAF #" in fixed.output
        [entry] = saf.pending()
        assert entry.txn_id == "txn3" and entry.link == "visa" and entry.reason == "auto"
        assert "2" not in entry.message and entry.pan_enc is not None
        assert entry.message["90"].startswith("0100" + "000003" + "0501100000")
        assert entry.message["37"] == "412210000003" and entry.message["4"] == "000000003000"
        again = _recon(config, "-s", f"visa={held}", "--fix", "--yes")
        assert again.exit_code == 1 and "SAF #" in again.output
        assert saf.depth() == 1  # a pending reversal is not queued twice
    finally:
        saf.close()


def test_cli_errors_exit_2(tmp_path: Path) -> None:
    config, rows = _cli_day(tmp_path)
    settlement = _write_csv(tmp_path / "v.csv", rows)
    missing = _recon(config, "-n", "visa", "-s", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2 and "cannot read settlement file" in missing.output
    unknown = _recon(config, "-n", "amex", "-s", str(settlement))
    assert unknown.exit_code == 2 and "no such issuer" in unknown.output
    ambiguous = _recon(config, "-n", "visa", "-n", "belkart", "-s", str(settlement))
    assert ambiguous.exit_code == 2 and "NETWORK=FILE" in ambiguous.output
    no_settlement = _recon(config, "-n", "belkart")
    assert no_settlement.exit_code == 2 and "--settlement belkart=FILE" in no_settlement.output
    (tmp_path / "bad.csv").write_text("rrn,stan\n1,2\n")
    bad = _recon(config, "-s", f"visa={tmp_path / 'bad.csv'}")
    assert bad.exit_code == 2 and "lacks column" in bad.output
    no_journal = _recon(config, "-s", f"visa={settlement}", "--journal", str(tmp_path / "x.db"))
    assert no_journal.exit_code == 2 and "no journal" in no_journal.output


def test_cli_cutover_with_an_issuer_host_that_does_not_answer_exits_2(tmp_path: Path) -> None:
    import socket

    config, rows = _cli_day(tmp_path)
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config.write_text(
            config.read_text()
            + f'\n[simulators.visa]\nspec = "visa"\nport = {port}\nledger = "sim-visa.db"\n'
        )
        settlement = _write_csv(tmp_path / "v.csv", rows)
        result = _recon(config, "-s", f"visa={settlement}", "--cutover")
    assert result.exit_code == 2, result.output
    assert "cutover 0500/0510: OUT OF BALANCE (cannot reach visa" in result.output
