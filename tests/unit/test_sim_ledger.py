"""The ledger and settlement file, driven through the issuer's synchronous core.

``Issuer.on_request(request, now)`` is what the trio shell calls for each
frame; calling it with scripted times gives a scripted business day.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators import cardbook, settlement
from simulators.decisions import Decision
from simulators.issuer import Issuer
from simulators.ledger import Ledger, iso_utc
from switch.config import SimulatorConfig
from switch.recon import parse_settlement
from switch.vault import Vault

DAY = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
VAULT = Vault.ephemeral()
TEST_PANS = [c.pan for c in cardbook.load()]


@pytest.fixture
def visa(tmp_path: Path) -> Iterator[Issuer]:
    issuer = Issuer(
        SimulatorConfig(name="visa", spec="visa", ledger=tmp_path / "sim-visa.db"), vault=VAULT
    )
    yield issuer
    issuer.close()


def req(
    stan: str, pan: str = "4111111111111111", amount: int = 1000, mti: str = "0100", **extra: str
) -> dict[str, str]:
    msg = {
        "t": mti,
        "2": pan,
        "3": "000000",
        "4": f"{amount:012d}",
        "7": f"0301{stan[-4:]}00",
        "11": stan,
        "32": "400001",
        "37": f"506009{stan}",
        "41": "TERM0001",
        "42": "SHOP00000000001",
        "49": "933",
    }
    msg.update(extra)
    return msg


def at(minutes: int) -> dt.datetime:
    return DAY + dt.timedelta(minutes=minutes)


def f90(original: dict[str, str]) -> str:
    return original["t"] + original["11"] + original["7"] + "400001".zfill(11) + "0" * 11


def test_reversal_releases_once_however_many_repeats(visa: Issuer) -> None:
    before = visa.ledger.balance("4111111111111111")
    assert before is not None
    original = req("000001", amount=5000)
    assert visa.on_request(original, at(0)).answer["39"] == "00"  # type: ignore[union-attr]
    assert visa.ledger.balance("4111111111111111") == before - 5000
    rev = req("000002", amount=5000, mti="0400", **{"90": f90(original)})
    for mti in ("0400", "0401", "0401", "0401"):
        reply = visa.on_request(dict(rev, t=mti), at(1))
        assert reply is not None and reply.answer["39"] == "00" and reply.answer["t"] == "0410"
    assert visa.ledger.balance("4111111111111111") == before
    row = visa.ledger.rows("stan = '000001'")[0]
    assert (row["reversed"], row["reversed_amount"]) == (1, 5000)


def test_reversal_falls_back_to_rrn_and_terminal(visa: Issuer) -> None:
    before = visa.ledger.balance("4111111111111111")
    original = req("000011", amount=700)
    visa.on_request(original, at(0))
    rev = req("000012", amount=700, mti="0420", **{"37": original["37"]})
    reply = visa.on_request(rev, at(1))
    assert reply is not None and reply.answer == {**reply.answer, "t": "0430", "39": "00"}
    assert visa.ledger.balance("4111111111111111") == before


def test_reversal_matches_on_mti_stan_and_f7(visa: Issuer) -> None:
    original = req("000021")
    visa.on_request(original, at(0))
    wrong_f7 = f90(dict(original, **{"7": "0301235959"}))
    reply = visa.on_request(req("000022", mti="0400", **{"90": wrong_f7}), at(1))
    assert reply is not None and reply.answer["39"] == "25"
    wrong_mti = f90(dict(original, t="0200"))
    reply = visa.on_request(req("000023", mti="0400", **{"90": wrong_mti}), at(1))
    assert reply is not None and reply.answer["39"] == "25"
    wrong_acquirer = "0100" + "000021" + original["7"] + "99999".zfill(11) + "0" * 11
    reply = visa.on_request(req("000024", mti="0400", **{"90": wrong_acquirer}), at(1))
    assert reply is not None and reply.answer["39"] == "25"


def test_daily_limit_counts_the_days_approvals_less_reversals(visa: Issuer) -> None:
    pan = "4000000000000119"  # daily limit 100.00
    first = req("000031", pan, 6000)
    assert visa.on_request(first, at(0)).answer["39"] == "00"  # type: ignore[union-attr]
    assert visa.on_request(req("000032", pan, 6000), at(1)).answer["39"] == "61"  # type: ignore[union-attr]
    visa.on_request(req("000033", pan, 6000, "0400", **{"90": f90(first)}), at(2))
    assert visa.on_request(req("000034", pan, 6000), at(3)).answer["39"] == "00"  # type: ignore[union-attr]
    # The next business day starts afresh.
    next_day = at(0) + dt.timedelta(days=1)
    assert visa.on_request(req("000035", pan, 6000), next_day).answer["39"] == "00"  # type: ignore[union-attr]


def test_a_reversed_refund_does_not_count_against_the_daily_limit(visa: Issuer) -> None:
    pan = "4000000000000119"  # daily limit 100.00
    refund = req("000036", pan, 5000, "0200", **{"3": "200000"})
    assert visa.on_request(refund, at(0)).answer["39"] == "00"  # type: ignore[union-attr]
    taken_back = req("000037", pan, 5000, "0400", **{"3": "200000", "90": f90(refund)})
    assert visa.on_request(taken_back, at(1)).answer["39"] == "00"  # type: ignore[union-attr]
    # Taking a credit back is no purchase: the whole 100.00 is still there to spend.
    assert visa.on_request(req("000038", pan, 10000), at(2)).answer["39"] == "00"  # type: ignore[union-attr]


def test_settlement_file_for_a_scripted_day(visa: Issuer) -> None:
    approved = req("000041", amount=2500)
    visa.on_request(approved, at(0))
    visa.on_request(req("000042", "4000000000000002", 100), at(1))  # 51
    partial = req("000043", amount=4000)
    visa.on_request(partial, at(2))
    f95 = "000000001500" + "0" * 30
    visa.on_request(
        req("000044", amount=4000, mti="0400", **{"90": f90(partial), "95": f95}), at(3)
    )
    visa.on_request(req("000045", amount=300, mti="0200", **{"3": "200000"}), at(4))  # refund
    visa.on_request({"t": "0800", "7": "0301090500", "11": "000046", "70": "301"}, at(5))
    visa.on_request(req("000047"), at(24 * 60))  # the next day: not in this file
    out = io.StringIO()
    assert settlement.write_settlement(visa.ledger, "2025-03-01", out) == 5
    lines = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(lines[0]) == settlement.COLUMNS
    rows = [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]
    token = VAULT.token("4111111111111111")
    assert [(r["stan"], r["mti"], r["response_code"]) for r in rows] == [
        ("000041", "0100", "00"),
        ("000042", "0100", "51"),
        ("000043", "0100", "00"),
        ("000044", "0400", "00"),
        ("000045", "0200", "00"),
    ]
    first = rows[0]
    assert first["amount"] == "000000002500" and first["currency"] == "933"
    assert first["pan_masked"] == "411111******1111" and first["pan_token"] == token
    assert len(first["auth_code"]) == 6 and first["rrn"] == "506009000041"
    assert first["request_time"] == "2025-03-01T09:00:00.000000+00:00"
    assert first["answer_time"] == ""  # nothing was sent in this synchronous test
    assert (first["reversed"], first["reversed_amount"]) == ("0", "0")
    assert rows[1]["auth_code"] == "" and rows[1]["pan_masked"] == "400000******0002"
    assert (rows[2]["reversed"], rows[2]["reversed_amount"]) == ("1", "2500")
    assert rows[4]["processing_code"] == "200000"
    assert (rows[0]["terminal"], rows[0]["merchant"]) == ("TERM0001", "SHOP00000000001")
    # The reader of the file (reconciliation) accepts it.
    records = parse_settlement(io.StringIO(out.getvalue()))
    assert [r.held for r in records] == [2500, 0, 1500, 300]


def test_ledger_file_holds_no_clear_pan_cvv2_or_pin(visa: Issuer, tmp_path: Path) -> None:
    for i, pan in enumerate(p for p in TEST_PANS if p.startswith("4")):
        visa.on_request(
            req(f"{i + 100:06d}", pan, **{"48": "", "14": "3012", "52": "1234" * 4}), at(i)
        )
    visa.ledger.close()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("sim-visa.db*"))
    assert data
    for pan in TEST_PANS:
        assert pan.encode() not in data
    assert b"1234123412341234" not in data


def test_a_broken_ecommerce_tlv_is_a_format_error_and_recorded(visa: Issuer) -> None:
    reply = visa.on_request(req("000061", **{"126": "1003"}), at(0))  # CVV2 tag, no value
    assert reply is not None and reply.answer["39"] == "30"
    assert visa.ledger.rows("stan = '000061'")[0]["response_code"] == "30"


def _explode(state: object) -> Decision:
    raise RuntimeError("a bug in a decision")


def test_a_batch_commits_once_and_keeps_each_request_atomic(visa: Issuer) -> None:
    ledger, pan = visa.ledger, "4111111111111111"
    start = ledger.balance(pan)
    assert start is not None and ledger.path is not None
    other = sqlite3.connect(ledger.path)
    try:
        with ledger.batch():
            assert visa.on_request(req("000001", amount=1000), at(0)) is not None
            with pytest.raises(RuntimeError):
                ledger.authorize(req("000002", amount=2000), at(0), _explode)
            assert visa.on_request(req("000003", amount=3000), at(0)) is not None
            # A second connection sees nothing before the batch's one COMMIT.
            assert other.execute("select count(*) from transactions").fetchone()[0] == 0
        assert other.execute("select count(*) from transactions").fetchone()[0] == 2
    finally:
        other.close()
    assert ledger.balance(pan) == start - 4000  # the failed request left no trace


def test_answer_times_are_written_in_groups_and_seen_by_readers(
    visa: Issuer, tmp_path: Path
) -> None:
    ledger = visa.ledger
    ids = []
    for stan in ("000001", "000002", "000003"):
        reply = visa.on_request(req(stan, amount=100), at(0))
        assert reply is not None and reply.row_id is not None
        ids.append(reply.row_id)
    for row_id in ids:
        ledger.answered(row_id, at(1))
    assert ledger.unflushed == 3
    assert [r["answer_time"] for r in ledger.rows()] == [iso_utc(at(1))] * 3  # a reader flushes
    assert ledger.unflushed == 0
    ledger.answered(ids[0], at(2))
    visa.close()  # closing writes what is left
    again = Ledger.open(tmp_path / "sim-visa.db", VAULT)
    try:
        assert again.row(ids[0])["answer_time"] == iso_utc(at(2))
    finally:
        again.close()


def test_with_manual_checkpoints_only_checkpoint_starts_the_wal_over(visa: Issuer) -> None:
    # SQLite checkpoints inside the commit that crosses 1,000 WAL frames
    # (copying and fsyncing on the simulator's event loop). With manual
    # checkpoints the WAL keeps every frame until checkpoint() - on a
    # connection of its own - starts it over.
    ledger = visa.ledger
    ledger.manual_checkpoints()
    commits = ledger.commits
    for n in range(400):
        assert visa.on_request(req(f"{n + 1:06d}", amount=1), at(0)) is not None
    assert ledger.commits == commits + 400
    assert ledger.checkpoint(restart_frames=0) > 1_000  # no commit checkpointed
    for n in range(400, 450):
        assert visa.on_request(req(f"{n + 1:06d}", amount=1), at(0)) is not None
    assert ledger.checkpoint(restart_frames=1_000_000) < 1_000  # written from the start
    assert len(ledger.rows()) == 450
