"""Journal core: schema, how legs move a transaction's state, queries, the PAN guard.

Real SQLite files under tmp_path; no trio here (the writer is tested in
tests/integration/test_journal_writer.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.errors import JournalError
from switch.journal import LEG_KINDS, STATES, Journal, Leg

T0 = 1_700_000_000_000_000
PAN = "4111111111111111"
MASKED = "411111******1111"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path / "var" / "journal.db")
    yield j
    j.close()


def acquirer_in(txn: str, t: int = 0, **kw: Any) -> Leg:
    fields: dict[str, Any] = {
        "link": "gw",
        "mti": "0100",
        "stan": "000123",
        "f7": "0101120000",
        "terminal": "TERM0001",
        "merchant": "MERCHANT0000001",
        "pan_masked": MASKED,
        "pan_token": "ab" * 16,
        "amount": 1000,
        "currency": "978",
        "processing_code": "000000",
    }
    fields.update(kw)
    return Leg(txn_id=txn, leg="acquirer_in", time_us=T0 + t, **fields)


def issuer_out(txn: str, t: int = 10, **kw: Any) -> Leg:
    fields: dict[str, Any] = {
        "link": "visa",
        "mti": "0100",
        "stan": "900001",
        "rrn": "401512000001",
        "f7": "0101120001",
        "terminal": "TERM0001",
        "amount": 1000,
        "currency": "978",
        "processing_code": "000000",
        "pan_masked": MASKED,
        "pan_enc": b"\x01sealed-pan",
    }
    fields.update(kw)
    return Leg(txn_id=txn, leg="issuer_out", time_us=T0 + t, **fields)


def approve(txn: str, t: int = 100) -> list[Leg]:
    return [
        Leg(
            txn_id=txn,
            leg="issuer_in",
            time_us=T0 + t,
            link="visa",
            mti="0110",
            stan="900001",
            rrn="401512000001",
            response_code="00",
            auth_code="A1B2C3",
            latency_us=80,
        ),
        Leg(
            txn_id=txn,
            leg="acquirer_out",
            time_us=T0 + t + 1,
            link="gw",
            mti="0110",
            stan="000123",
            rrn="401512000001",
            response_code="00",
            auth_code="A1B2C3",
            latency_us=101,
            state="approved",
        ),
    ]


def approved_txn(journal: Journal, txn: str, t: int = 0) -> None:
    journal.write_batch([acquirer_in(txn, t), issuer_out(txn, t + 10), *approve(txn, t + 100)])


# -- schema ------------------------------------------------------------------------


def test_open_creates_parent_dir_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "var" / "journal.db"
    Journal.open(path).close()
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("select name from sqlite_master")}
    assert {"legs", "transactions"} <= names
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    # Legs are found through their transaction: one index, on txn_id.
    leg_indexes = [r[1] for r in conn.execute("pragma index_list(legs)")]
    assert leg_indexes == ["idx_legs_txn_id"]
    txn_indexes = {r[1] for r in conn.execute("pragma index_list(transactions)")}
    assert len(txn_indexes) >= 5
    conn.close()


def test_opening_twice_keeps_schema_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    first = Journal.open(path)
    approved_txn(first, "t1")
    first.close()
    again = Journal.open(path)
    assert again.count_legs() == 4
    assert again.transaction("t1") is not None
    again.close()


def test_leg_columns_match_the_dataclass(journal: Journal) -> None:
    columns = [r[1] for r in journal.db.conn.execute("pragma table_info(legs)")]
    assert columns == ["id", *Leg.__dataclass_fields__]


def test_a_journal_made_before_replacement_amount_gains_it_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    old = Journal.open(path)
    approved_txn(old, "t1")
    old.close()
    with sqlite3.connect(path) as conn:  # the legs table as it was before the column
        conn.execute("alter table legs drop column replacement_amount")
    for _ in range(2):  # adding the column is idempotent
        again = Journal.open(path)
        columns = [r[1] for r in again.db.conn.execute("pragma table_info(legs)")]
        assert columns == ["id", *Leg.__dataclass_fields__]
        assert again.count_legs() == 4
        assert [leg["replacement_amount"] for leg in again.legs_of("t1")] == [None] * 4
        txn = again.transaction("t1")
        assert txn is not None and txn["state"] == "approved"
        again.close()
    again = Journal.open(path)
    again.write_batch([acquirer_in("t2", 1000, replacement_amount=300)])
    assert [leg["replacement_amount"] for leg in again.legs_of("t2")] == [300]
    again.close()


# -- how legs move a transaction -------------------------------------------------


def test_approval_sequence_builds_one_transaction_row(journal: Journal) -> None:
    journal.write_batch([acquirer_in("t1")])
    assert journal.transaction("t1")["state"] == "in_flight"  # type: ignore[index]
    journal.write_batch([issuer_out("t1")])
    journal.write_batch(approve("t1"))
    row = journal.transaction("t1")
    assert row is not None
    assert row["state"] == "approved"
    assert (row["listener"], row["link"]) == ("gw", "visa")
    # The acquirer's F11/F7 stay; the issuer's are kept apart for reversals.
    assert (row["stan"], row["f7"]) == ("000123", "0101120000")
    assert (row["issuer_stan"], row["issuer_f7"]) == ("900001", "0101120001")
    assert row["rrn"] == row["issuer_rrn"] == "401512000001"
    assert (row["response_code"], row["auth_code"], row["latency_us"]) == ("00", "A1B2C3", 101)
    assert (row["created_us"], row["updated_us"]) == (T0, T0 + 101)
    assert (row["terminal"], row["merchant"], row["amount"]) == (
        "TERM0001",
        "MERCHANT0000001",
        1000,
    )
    assert [leg["leg"] for leg in journal.legs_of("t1")] == [
        "acquirer_in",
        "issuer_out",
        "issuer_in",
        "acquirer_out",
    ]


def test_one_batch_and_many_batches_give_the_same_row(tmp_path: Path) -> None:
    one, many = Journal.open(tmp_path / "one.db"), Journal.open(tmp_path / "many.db")
    legs = [acquirer_in("t1"), issuer_out("t1"), *approve("t1")]
    one.write_batch(legs)
    for leg in legs:
        many.write_batch([leg])
    assert one.transaction("t1") == many.transaction("t1")
    one.close()
    many.close()


def test_timeout_then_saf_reversal_ends_timed_out_reversed(journal: Journal) -> None:
    journal.write_batch([acquirer_in("t1"), issuer_out("t1")])
    journal.write_batch(
        [
            Leg(
                txn_id="t1",
                leg="acquirer_out",
                time_us=T0 + 5_000_000,
                link="gw",
                mti="0110",
                response_code="91",
                state="timed_out",
                note="issuer visa did not answer in 5.0s",
            )
        ]
    )
    assert journal.transaction("t1")["state"] == "timed_out"  # type: ignore[index]
    journal.write_batch(
        [
            Leg(txn_id="t1", leg="saf_out", time_us=T0 + 6_000_000, link="visa", mti="0400"),
            Leg(
                txn_id="t1",
                leg="saf_in",
                time_us=T0 + 6_000_100,
                link="visa",
                mti="0410",
                stan="900002",
                response_code="00",
                state="timed_out_reversed",
            ),
        ]
    )
    row = journal.transaction("t1")
    assert row is not None
    assert row["state"] == "timed_out_reversed"
    # What the acquirer heard stays; the SAF's STAN is not the request's.
    assert (row["response_code"], row["issuer_stan"]) == ("91", "900001")


def test_acquirer_reversal_marks_its_original_reversed(journal: Journal) -> None:
    approved_txn(journal, "orig")
    journal.write_batch(
        [
            acquirer_in("rev", 1000, mti="0400", stan="000124", original_txn="orig"),
            issuer_out("rev", 1010, mti="0400", stan="900003", original_txn="orig"),
            Leg(
                txn_id="rev",
                leg="issuer_in",
                time_us=T0 + 1100,
                link="visa",
                mti="0410",
                response_code="00",
                original_txn="orig",
            ),
            Leg(
                txn_id="rev",
                leg="acquirer_out",
                time_us=T0 + 1101,
                link="gw",
                mti="0410",
                response_code="00",
                original_txn="orig",
                state="reversed",
            ),
        ]
    )
    original, reversal = journal.transaction("orig"), journal.transaction("rev")
    assert original is not None and reversal is not None
    assert (original["state"], original["reversed_by"]) == ("reversed", "rev")
    assert original["response_code"] == "00"  # the original's own answer is history
    assert (reversal["state"], reversal["original_txn"], reversal["mti"]) == (
        "reversed",
        "orig",
        "0400",
    )


@pytest.mark.parametrize("state", ["partially_reversed", "timed_out_reversed"])
def test_other_reversing_states_reach_the_original(journal: Journal, state: str) -> None:
    approved_txn(journal, "orig")
    journal.write_batch(
        [Leg(txn_id="rev", leg="saf_in", time_us=T0 + 9, original_txn="orig", state=state)]
    )
    assert journal.transaction("orig")["state"] == state  # type: ignore[index]


def test_a_pending_reversal_leaves_the_original_alone(journal: Journal) -> None:
    approved_txn(journal, "orig")
    journal.write_batch(
        [
            acquirer_in("rev", 1000, mti="0400", original_txn="orig"),
            Leg(
                txn_id="rev",
                leg="acquirer_out",
                time_us=T0 + 1001,
                original_txn="orig",
                state="reversal_pending",
            ),
        ]
    )
    original = journal.transaction("orig")
    assert original is not None
    assert (original["state"], original["reversed_by"]) == ("approved", None)
    assert journal.transaction("rev")["state"] == "reversal_pending"  # type: ignore[index]


def test_a_leg_out_of_time_order_does_not_move_updated_back(journal: Journal) -> None:
    journal.write_batch([acquirer_in("t1", 500)])
    journal.write_batch([Leg(txn_id="t1", leg="late", time_us=T0 + 100, note="late")])
    assert journal.transaction("t1")["updated_us"] == T0 + 500  # type: ignore[index]


def test_unknown_leg_kind_or_state_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalError, match="leg kind"):
        journal.write_batch([Leg(txn_id="t1", leg="issuer-out", time_us=T0)])
    with pytest.raises(JournalError, match="state"):
        journal.write_batch([Leg(txn_id="t1", leg="late", time_us=T0, state="done")])
    assert journal.count_legs() == 0
    assert "late" in LEG_KINDS and "reversal_pending" in STATES


# -- the PAN guard ---------------------------------------------------------------


@pytest.mark.parametrize("column", ["note", "rrn", "terminal", "merchant", "pan_masked"])
def test_a_clear_pan_in_text_is_refused_and_nothing_written(journal: Journal, column: str) -> None:
    bad = acquirer_in("t2", 0, **{column: f"x {PAN} y"})
    with pytest.raises(JournalError, match=column) as caught:
        journal.write_batch([acquirer_in("t1"), bad])
    assert PAN not in str(caught.value)
    assert journal.count_legs() == 0  # the batch is all or nothing
    assert journal.transaction("t1") is None


def test_digit_runs_that_are_not_pans_pass_the_guard(journal: Journal) -> None:
    not_luhn = PAN[:-1] + "2"
    journal.write_batch(
        [
            acquirer_in("t1", note=f"amount 000000001000 run {not_luhn} masked {MASKED}"),
            acquirer_in("t2", rrn="401512000001", terminal="12345678"),
        ]
    )
    assert journal.count_legs() == 2


# -- queries -----------------------------------------------------------------------


def test_find_original_by_stan_and_f7(journal: Journal) -> None:
    approved_txn(journal, "t1")
    found = journal.find_original(terminal="TERM0001", stan="000123", f7="0101120000")
    assert found is not None and found["txn_id"] == "t1"
    assert journal.find_original(terminal="TERM0001", stan="000123", mti="0100") is not None
    assert journal.find_original(terminal="TERM0001", stan="000123", f7="0202120000") is None
    assert journal.find_original(terminal="TERM0002", stan="000123") is None
    assert journal.find_original(terminal="TERM0001", stan="000123", mti="0200") is None


def test_find_original_by_rrn(journal: Journal) -> None:
    approved_txn(journal, "t1")
    found = journal.find_original(terminal="TERM0001", rrn="401512000001")
    assert found is not None and found["txn_id"] == "t1"
    assert journal.find_original(terminal="TERM0001", rrn="999999999999") is None


def test_find_original_needs_a_key_and_skips_reversals(journal: Journal) -> None:
    approved_txn(journal, "t1")
    journal.write_batch([acquirer_in("rev", 50, mti="0400", stan="000123")])
    assert journal.find_original(terminal="TERM0001") is None
    found = journal.find_original(terminal="TERM0001", stan="000123")
    assert found is not None and found["txn_id"] == "t1"


def test_find_original_prefers_the_newest(journal: Journal) -> None:
    approved_txn(journal, "old", 0)
    approved_txn(journal, "new", 86_400_000_000)  # F11 wraps; F7 not given
    found = journal.find_original(terminal="TERM0001", stan="000123")
    assert found is not None and found["txn_id"] == "new"


def test_find_transactions_filters_newest_first(journal: Journal) -> None:
    for i in range(5):
        approved_txn(journal, f"t{i}", i * 1000)
    journal.write_batch([acquirer_in("other", 9000, terminal="TERM0002", stan="000999")])
    rows = journal.find_transactions(terminal="TERM0001")
    assert [r["txn_id"] for r in rows] == ["t4", "t3", "t2", "t1", "t0"]
    assert [r["txn_id"] for r in journal.find_transactions(limit=2)] == ["other", "t4"]
    window = journal.find_transactions(since_us=T0 + 1000, until_us=T0 + 3000)
    assert [r["txn_id"] for r in window] == ["t2", "t1"]
    assert len(journal.find_transactions(state="approved", response_code="00")) == 5
    assert len(journal.find_transactions(pan_masked=MASKED, link="visa")) == 5
    assert [r["txn_id"] for r in journal.find_transactions(state="in_flight")] == ["other"]
    assert journal.find_transactions(rrn="nope") == []


def test_find_legs_filters_by_kind_and_txn(journal: Journal) -> None:
    approved_txn(journal, "t1")
    approved_txn(journal, "t2", 1000)
    outs = journal.find_legs(leg="issuer_out")
    assert [r["txn_id"] for r in outs] == ["t2", "t1"]
    assert [r["leg"] for r in journal.find_legs(txn_id="t1", limit=2)] == [
        "acquirer_out",
        "issuer_in",
    ]


def test_unknown_filters_are_an_error_not_sql(journal: Journal) -> None:
    with pytest.raises(TypeError, match="unknown filter"):
        journal.find_transactions(**{"1=1 or txn_id": "x"})  # type: ignore[arg-type]


def test_in_doubt_lists_requests_sent_without_an_outcome(journal: Journal) -> None:
    journal.write_batch([acquirer_in("crash"), issuer_out("crash")])  # then kill -9
    approved_txn(journal, "answered", 1000)
    journal.write_batch([acquirer_in("never_sent", 2000)])
    [row] = journal.in_doubt()
    assert row["txn_id"] == "crash"
    # Issuer-side values, enough to build a reversal without the PAN in clear.
    assert (row["link"], row["mti"], row["stan"], row["f7"], row["rrn"]) == (
        "visa",
        "0100",
        "900001",
        "0101120001",
        "401512000001",
    )
    assert (row["amount"], row["currency"], row["processing_code"]) == (1000, "978", "000000")
    assert (row["terminal"], row["merchant"]) == ("TERM0001", "MERCHANT0000001")
    assert (row["pan_enc"], row["pan_masked"], row["pan_token"]) == (
        b"\x01sealed-pan",
        MASKED,
        "ab" * 16,
    )


@pytest.mark.parametrize(
    "outcome",
    [
        Leg(txn_id="t1", leg="late", time_us=T0 + 9_000_000, response_code="00"),
        Leg(txn_id="t1", leg="recovered", time_us=T0 + 9_000_000, state="timed_out"),
        Leg(txn_id="t1", leg="acquirer_out", time_us=T0 + 9_000_000, state="timed_out"),
        Leg(txn_id="t1", leg="saf_in", time_us=T0 + 9_000_000, state="timed_out_reversed"),
    ],
    ids=["late", "recovered", "timed_out", "reversed"],
)
def test_an_outcome_takes_a_request_out_of_doubt(journal: Journal, outcome: Leg) -> None:
    journal.write_batch([acquirer_in("t1"), issuer_out("t1")])
    assert [r["txn_id"] for r in journal.in_doubt()] == ["t1"]
    journal.write_batch([outcome])
    assert journal.in_doubt() == []


def test_an_interrupted_reversal_is_in_doubt_with_its_original(journal: Journal) -> None:
    approved_txn(journal, "orig")
    journal.write_batch(
        [
            acquirer_in("rev", 1000, mti="0400", original_txn="orig"),
            issuer_out("rev", 1010, mti="0400", stan="900004", original_txn="orig"),
        ]
    )
    [row] = journal.in_doubt()
    assert (row["txn_id"], row["mti"], row["stan"], row["original_txn"]) == (
        "rev",
        "0400",
        "900004",
        "orig",
    )
    assert row["replacement_amount"] is None  # a full reversal


def test_an_interrupted_partial_reversal_is_in_doubt_with_the_amount_spent(
    journal: Journal,
) -> None:
    approved_txn(journal, "orig")
    partial = {"mti": "0400", "original_txn": "orig", "replacement_amount": 300}
    journal.write_batch(
        [acquirer_in("rev", 1000, **partial), issuer_out("rev", 1010, stan="900004", **partial)]
    )
    [row] = journal.in_doubt()
    assert (row["txn_id"], row["replacement_amount"]) == ("rev", 300)


def test_stats_counts_and_latency_percentiles(journal: Journal) -> None:
    for i in range(10):
        journal.write_batch(
            [
                acquirer_in(f"t{i}", i),
                Leg(
                    txn_id=f"t{i}",
                    leg="acquirer_out",
                    time_us=T0 + i + 1,
                    response_code="00" if i < 8 else "05",
                    state="approved" if i < 8 else "declined",
                    latency_us=(i + 1) * 1000,
                ),
            ]
        )
    stats = journal.stats(T0)
    assert stats["transactions"] == 10
    assert stats["by_state"] == {"approved": 8, "declined": 2}
    assert stats["by_response_code"] == {"00": 8, "05": 2}
    assert stats["latency_us"] == {
        "count": 10,
        "p50": 5000,
        "p90": 9000,
        "p99": 10000,
        "max": 10000,
    }
    assert journal.stats(T0 + 5)["transactions"] == 5
    assert journal.stats(T0 + 100)["latency_us"]["p50"] is None


# -- folding a run of legs into one upsert ----------------------------------------------

_maybe = st.none() | st.sampled_from(["a", "b"])
_legs = st.lists(
    st.builds(
        Leg,
        txn_id=st.sampled_from(["t1", "t2"]),
        leg=st.sampled_from(LEG_KINDS),
        time_us=st.integers(T0, T0 + 1000),
        link=_maybe,
        mti=_maybe,
        stan=_maybe,
        rrn=_maybe,
        f7=_maybe,
        terminal=_maybe,
        merchant=_maybe,
        amount=st.none() | st.integers(0, 9),
        response_code=_maybe,
        auth_code=_maybe,
        latency_us=st.none() | st.integers(0, 9),
        original_txn=st.none() | st.sampled_from(["t1", "t2", "o1"]),
        state=st.none() | st.sampled_from(STATES),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(legs=_legs)
def test_a_batch_leaves_the_rows_that_one_leg_at_a_time_leaves(
    tmp_path_factory: pytest.TempPathFactory, legs: list[Leg]
) -> None:
    folder = tmp_path_factory.mktemp("fold")
    one_by_one, batched = Journal.open(folder / "a.db"), Journal.open(folder / "b.db")
    try:
        for j in (one_by_one, batched):  # the original a reversal may point at
            j.write_batch([Leg(txn_id="o1", leg="acquirer_in", time_us=T0, mti="0100")])
        for leg in legs:
            one_by_one.write_batch([leg])
        batched.write_batch(legs)
        query = "select * from transactions order by txn_id"
        assert one_by_one._rows(query) == batched._rows(query)
    finally:
        one_by_one.close()
        batched.close()
