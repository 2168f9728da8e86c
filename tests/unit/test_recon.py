"""The reconciliation core on hand-built records: every class of break, totals, the 0500/0510."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.cutover import (
    IN_BALANCE,
    OUT_OF_BALANCE,
    Totals,
    answer_reconciliation,
    differences,
    from_fields,
    issuer_totals,
    reconciliation_request,
    switch_totals,
    to_fields,
)
from switch.recon import (
    KINDS,
    SETTLEMENT_COLUMNS,
    IssuerRecord,
    ReconError,
    SwitchRecord,
    parse_settlement,
    reconcile,
)


def sw(n: int = 1, **kw: Any) -> SwitchRecord:
    values: dict[str, Any] = {
        "txn_id": f"t{n:04d}",
        "link": "visa",
        "rrn": f"41231{n:07d}",
        "stan": f"{n:06d}",
        "amount": 1000,
        "currency": "933",
        "processing_code": "000000",
        "mti": "0100",
        "state": "approved",
        "response_code": "00",
        "issuer_code": "00",
        "acquirer_rrn": f"41231{n:07d}",
        "terminal": "TERM0001",
        "pan_masked": "411111******1111",
        "pan_token": "tok1",
        "created_us": 1_700_000_000_000_000 + n,
    }
    values.update(kw)
    return SwitchRecord(**values)


def iss(n: int = 1, **kw: Any) -> IssuerRecord:
    values: dict[str, Any] = {
        "rrn": f"41231{n:07d}",
        "stan": f"{n:06d}",
        "amount": 1000,
        "currency": "933",
        "processing_code": "000000",
        "mti": "0100",
        "response_code": "00",
        "auth_code": "A1B2C3",
        "pan_masked": "411111******1111",
        "pan_token": "tok1",
        "request_time": f"2024-05-01T10:00:{n % 60:02d}.000000Z",
        "line": n + 1,
    }
    values.update(kw)
    return IssuerRecord(**values)


def kinds(result: Any) -> list[str]:
    return [b.kind for b in result.breaks]


def test_clean_day_has_no_breaks_and_counts_every_transaction() -> None:
    switch = [
        sw(1),
        sw(2, state="declined", response_code="51", issuer_code="51"),
        sw(3, state="timed_out_reversed", response_code="91", issuer_code="", reversal_code="00"),
        sw(4, state="timed_out", response_code="91", issuer_code=""),  # lost on the way
    ]
    issuer = [
        iss(1),
        iss(2, response_code="51", auth_code=""),
        iss(3, reversed=True, reversed_amount=1000),
    ]
    result = reconcile("visa", switch, issuer)
    assert result.clean
    assert result.counts["matched"] == 3
    assert result.counts["no_money"] == 1
    assert sum(result.counts.values()) == 4


def test_approved_at_issuer_but_timed_out_to_acquirer_needs_a_reversal() -> None:
    switch = [sw(1, state="timed_out", response_code="91", issuer_code="")]
    result = reconcile("visa", switch, [iss(1)])
    [found] = result.breaks
    assert found.kind == "approved_not_delivered"
    assert found.fix == "reverse" and found.action == "send reversal"
    assert found.switch_outcome == "timed_out (91)"
    assert found.issuer_outcome == "approved 00"
    assert (found.rrn, found.stan, found.pan_masked) == (
        "412310000001",
        "000001",
        "411111******1111",
    )
    assert (found.switch_amount, found.issuer_amount) == (1000, 1000)


def test_in_doubt_after_a_crash_is_approved_not_delivered() -> None:
    switch = [sw(1, state="in_flight", response_code="", issuer_code="")]
    result = reconcile("visa", switch, [iss(1)])
    assert kinds(result) == ["approved_not_delivered"]
    assert result.breaks[0].switch_outcome == "in_flight (no answer)"


def test_a_queued_reversal_is_reported_but_not_queued_again() -> None:
    switch = [sw(1, state="timed_out", response_code="91", issuer_code="", reversal_pending=7)]
    [found] = reconcile("visa", switch, [iss(1)]).breaks
    assert found.kind == "approved_not_delivered"
    assert found.fix is None
    assert "SAF #7" in found.action and "SAF #7" in found.switch_outcome


def test_reversed_by_switch_but_not_at_issuer() -> None:
    switch = [sw(1, state="timed_out_reversed", response_code="91", reversal_code="25")]
    [found] = reconcile("visa", switch, [iss(1)]).breaks
    assert found.kind == "reversed_only_at_switch"
    assert found.fix == "reverse"


def test_acquirer_reversal_waiting_in_saf_is_a_break_until_delivered() -> None:
    switch = [sw(1, reversal_pending=3)]
    assert kinds(reconcile("visa", switch, [iss(1)])) == ["reversed_only_at_switch"]
    delivered = [iss(1, reversed=True, reversed_amount=1000)]
    assert reconcile("visa", switch, delivered).clean


def test_reversed_at_issuer_only() -> None:
    result = reconcile("visa", [sw(1)], [iss(1, reversed=True, reversed_amount=1000)])
    assert kinds(result) == ["reversed_only_at_issuer"]
    assert result.breaks[0].fix is None


def test_approved_to_acquirer_but_declined_at_issuer() -> None:
    result = reconcile("visa", [sw(1)], [iss(1, response_code="05")])
    assert kinds(result) == ["outcome_mismatch"]
    assert result.breaks[0].issuer_outcome == "declined 05"


def test_declined_to_acquirer_and_declined_at_issuer_is_matched() -> None:
    switch = [sw(1, state="declined", response_code="51", issuer_code="51")]
    assert reconcile("visa", switch, [iss(1, response_code="51")]).clean


def test_missing_in_journal() -> None:
    result = reconcile("visa", [], [iss(1), iss(2, response_code="51")])
    assert kinds(result) == ["missing_in_journal", "missing_in_journal"]
    held, declined = result.breaks
    assert "reverse" in held.action and held.fix is None
    assert "no money held" in declined.action
    assert held.switch_outcome == "missing" and held.switch_amount is None


def test_missing_at_issuer_only_for_what_the_acquirer_heard_approved() -> None:
    switch = [sw(1), sw(2, state="timed_out", response_code="91", issuer_code="")]
    result = reconcile("visa", switch, [])
    assert kinds(result) == ["missing_at_issuer"]
    assert result.breaks[0].issuer_outcome == "missing"
    assert result.counts["no_money"] == 1


def test_amount_and_currency_mismatch() -> None:
    result = reconcile("visa", [sw(1), sw(2)], [iss(1, amount=1001), iss(2, currency="840")])
    assert kinds(result) == ["amount_mismatch", "currency_mismatch"]
    assert (result.breaks[0].switch_amount, result.breaks[0].issuer_amount) == (1000, 1001)


def test_duplicate_at_issuer_is_the_later_row() -> None:
    issuer = [
        iss(1, request_time="2024-05-01T10:00:02Z"),
        iss(1, request_time="2024-05-01T10:00:01Z"),
    ]
    result = reconcile("visa", [sw(1)], issuer)
    assert result.counts["matched"] == 1
    assert kinds(result) == ["duplicate_at_issuer"]
    assert "reverse the duplicate" in result.breaks[0].action


def test_duplicate_in_journal_same_issuer_key() -> None:
    result = reconcile("visa", [sw(1), sw(1, txn_id="t9999", created_us=2)], [iss(1)])
    assert kinds(result) == ["duplicate_in_journal"]
    assert result.breaks[0].txn_id == "t0001"  # the later one (created_us larger)


def test_the_same_sale_approved_twice_under_two_stans_is_a_journal_duplicate() -> None:
    first = sw(1, acquirer_rrn="000000000042")
    second = sw(2, acquirer_rrn="000000000042")
    result = reconcile("visa", [first, second], [iss(1), iss(2)])
    assert kinds(result) == ["duplicate_in_journal"]
    [found] = result.breaks
    assert found.txn_id == "t0002" and found.fix == "reverse"
    assert "t0001" in found.action
    assert result.counts["matched"] == 1


def test_breaks_come_out_in_a_stable_order_whatever_the_input_order() -> None:
    switch = [sw(n, state="timed_out", response_code="91") for n in range(1, 30)]
    issuer = [iss(n) for n in range(1, 40)]
    a = reconcile("visa", switch, issuer)
    b = reconcile("visa", list(reversed(switch)), list(reversed(issuer)))
    assert a.breaks == b.breaks
    assert kinds(a) == ["approved_not_delivered"] * 29 + ["missing_in_journal"] * 10


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["approved", "declined", "timed_out", "timed_out_reversed", "in_flight", "reversed"]
            ),
            st.sampled_from(["00", "51", None]),
            st.booleans(),
        ),
        max_size=30,
    )
)
def test_every_transaction_gets_exactly_one_class(rows: list[tuple[str, str | None, bool]]) -> None:
    switch, issuer = [], []
    for n, (state, code, reversed_) in enumerate(rows, start=1):
        switch.append(sw(n, state=state, response_code="00" if state == "approved" else "91"))
        if code is not None:
            issuer.append(iss(n, response_code=code, reversed=reversed_, reversed_amount=1000))
    result = reconcile("visa", switch, issuer)
    assert sum(result.counts.values()) == len(rows)
    assert set(result.counts) == set(KINDS)
    assert len(result.breaks) == sum(
        n for k, n in result.counts.items() if k not in ("matched", "no_money")
    )


# -- the settlement file -----------------------------------------------------------------


def _csv(*rows: dict[str, str]) -> io.StringIO:
    lines = [",".join(SETTLEMENT_COLUMNS)]
    for row in rows:
        lines.append(",".join(row.get(c, "") for c in SETTLEMENT_COLUMNS))
    return io.StringIO("\n".join(lines) + "\n")


def test_settlement_rows_parse_and_reversal_rows_are_skipped() -> None:
    base = {
        "rrn": "412310000001",
        "stan": "000001",
        "amount": "000000001000",
        "currency": "933",
        "processing_code": "000000",
        "mti": "0100",
        "response_code": "00",
        "reversed": "1",
        "reversed_amount": "000000000400",
        "pan_masked": "411111******1111",
    }
    rows = parse_settlement(_csv(base, {**base, "mti": "0400", "stan": "000002"}))
    assert len(rows) == 1
    [row] = rows
    assert row.amount == 1000 and row.reversed and row.reversed_amount == 400
    assert row.held == 600 and row.line == 2
    assert row.outcome() == "approved 00, partially reversed (400)"


def test_settlement_without_a_column_is_an_error_naming_it() -> None:
    with pytest.raises(ReconError, match="reversed_amount"):
        parse_settlement(io.StringIO("rrn,stan,amount\n1,2,3\n"))


def test_settlement_with_a_bad_amount_names_the_line() -> None:
    with pytest.raises(ReconError, match="line 2: amount"):
        parse_settlement(_csv({"mti": "0100", "amount": "12x"}))


def test_empty_settlement_file_is_an_error() -> None:
    with pytest.raises(ReconError, match="empty"):
        parse_settlement(io.StringIO(""))


# -- totals and the 0500/0510 ------------------------------------------------------------


def test_totals_of_both_sides_agree_on_a_clean_day() -> None:
    switch = [
        sw(1, amount=1000),
        sw(2, amount=250, processing_code="200000"),
        sw(
            3,
            amount=700,
            state="timed_out_reversed",
            response_code="91",
            issuer_code="",
            reversal_code="00",
        ),
        sw(4, amount=300, state="declined", response_code="51", issuer_code="51"),
        sw(5, amount=50, currency="840"),
    ]
    issuer = [
        iss(1, amount=1000),
        iss(2, amount=250, processing_code="200000"),
        iss(3, amount=700, reversed=True, reversed_amount=700),
        iss(4, amount=300, response_code="51"),
        iss(5, amount=50, currency="840"),
    ]
    ours, theirs = switch_totals(switch), issuer_totals(issuer)
    assert ours == theirs
    byn = ours["933"]
    assert (byn.debits, byn.debits_amount, byn.debit_reversals, byn.debit_reversals_amount) == (
        2,
        1700,
        1,
        700,
    )
    assert (byn.credits, byn.credits_amount) == (1, 250)
    assert byn.authorizations == 3
    assert byn.net == 1700 - 700 - 250
    assert ours["840"].net == 50


def test_fields_round_trip_and_carry_a_signed_net() -> None:
    totals = Totals(credits=2, credits_amount=900, debits=1, debits_amount=100)
    msg = to_fields(totals)
    assert msg["97"] == "D" + "800".zfill(16)
    assert msg["74"] == "0000000002" and msg["86"] == "900".zfill(16)
    assert from_fields(msg) == totals


def test_a_net_that_does_not_add_up_is_refused() -> None:
    msg = to_fields(Totals(debits=1, debits_amount=100))
    msg["97"] = "C" + "99".zfill(16)
    with pytest.raises(ReconError, match="97"):
        from_fields(msg)


def test_0500_answered_in_balance_or_out_of_balance() -> None:
    ours = Totals(debits=1, debits_amount=100)
    request = reconciliation_request(
        totals=ours,
        currency="933",
        business_day=dt.date(2024, 5, 1),
        stan="000123",
        now=dt.datetime(2024, 5, 2, 0, 5, tzinfo=dt.UTC),
        institution_id="400001",
    )
    assert (request["t"], request["15"], request["73"], request["50"]) == (
        "0500",
        "0501",
        "240501",
        "933",
    )
    agreed = answer_reconciliation(request, replace(ours))
    assert (agreed["t"], agreed["39"], agreed["66"], agreed["11"]) == (
        "0510",
        "00",
        IN_BALANCE,
        "000123",
    )
    other = Totals(debits=2, debits_amount=300)
    disagreed = answer_reconciliation(request, other)
    assert disagreed["66"] == OUT_OF_BALANCE
    assert differences(ours, from_fields(disagreed)) == [
        "76 debits: 1 != 2",
        "88 debits_amount: 100 != 300",
        "97 net: 100 != 300",
    ]


def test_0500_with_unreadable_totals_is_answered_30() -> None:
    assert answer_reconciliation({"t": "0500", "11": "000001"}, Totals())["39"] == "30"


def test_switch_records_just_outside_the_day_count_only_when_the_issuer_has_them() -> None:
    day = (1000, 2000)
    before = sw(1, created_us=990)  # the issuer stamped it after midnight: its day
    after = sw(2, created_us=2010)  # tomorrow's, not in this settlement file
    inside = sw(3, created_us=1500, state="timed_out", response_code="91", issuer_code="")
    result = reconcile("visa", [before, after, inside], [iss(1)], window=day)
    assert result.clean
    assert (result.counts["matched"], result.counts["no_money"]) == (1, 1)


def test_simulator_answers_0500_from_its_ledger_rows() -> None:
    from simulators.cutover import answer, business_day

    rows = [
        {"mti": "0100", "rrn": "1", "stan": "000001", "amount": 1000, "currency": "933",
         "processing_code": "000000", "response_code": "00", "reversed": 1, "reversed_amount": 400},
        {"mti": "0100", "rrn": "2", "stan": "000002", "amount": 500, "currency": "933",
         "processing_code": "200000", "response_code": "00", "reversed": 0, "reversed_amount": 0},
        {"mti": "0400", "rrn": "1", "stan": "000003", "amount": 1000, "currency": "933",
         "processing_code": "000000", "response_code": "00", "reversed": 0, "reversed_amount": 0},
        {"mti": "0100", "rrn": "3", "stan": "000004", "amount": 70, "currency": "840",
         "processing_code": "000000", "response_code": "00", "reversed": 0, "reversed_amount": 0},
    ]  # fmt: skip
    ours = Totals(
        debits=1, debits_amount=1000, debit_reversals=1, debit_reversals_amount=400,
        credits=1, credits_amount=500, authorizations=2,
    )  # fmt: skip
    request = reconciliation_request(
        totals=ours,
        currency="933",
        business_day=dt.date(2024, 5, 1),
        stan="000009",
        now=dt.datetime(2024, 5, 2, tzinfo=dt.UTC),
        institution_id="400001",
    )
    assert business_day(request) == "2024-05-01"
    reply = answer(request, rows)
    assert (reply["t"], reply["39"], reply["66"]) == ("0510", "00", IN_BALANCE)
    assert from_fields(reply) == ours
    assert answer({"t": "0500", "11": "000001"}, None)["39"] == "30"
    assert business_day({"t": "0500", "73": "2405xx"}) is None
