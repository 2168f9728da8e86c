"""A finished transaction keeps only what duplicates and reversals need (it lives an hour)."""

from __future__ import annotations

import gc

from switch.processor import Txn


def test_a_finished_transaction_forgets_card_data_and_its_own_event() -> None:
    txn = Txn(
        txn_id="t1",
        listener="gw",
        request={"t": "0100", "2": "4111111111111111", "11": "000001", "41": "TERM0001"},
        started=0.0,
    )
    txn.issuer_request = {"t": "0100", "2": "4111111111111111", "11": "900001", "7": "0101"}
    txn.pan_enc = b"sealed"
    txn.card = ("4111111111111111", "411111******1111", "token")
    own_event = txn.done
    txn.finish({"t": "0110", "39": "00"}, "approved")
    assert own_event.is_set()  # whoever waited on it was woken
    assert txn.done.is_set()
    assert "2" not in txn.request and "2" not in (txn.issuer_request or {})
    assert txn.pan_enc is None and txn.card is None
    assert txn.request["11"] == "000001" and (txn.issuer_request or {})["11"] == "900001"
    assert (txn.answer, txn.state) == ({"t": "0110", "39": "00"}, "approved")


def test_a_packed_transaction_comes_back_whole_and_escapes_the_collector() -> None:
    txn = Txn(txn_id="t1", listener="gw", request={"t": "0100", "11": "000001"}, started=0.0)
    txn.issuer_request = {"t": "0100", "11": "900001", "37": "R1"}
    txn.link, txn.rrn = "visa", "R1"
    txn.finish({"t": "0110", "39": "05"}, "declined")
    packed = txn.packed()
    # A Txn is tracked (minutes of them made full collections slow), and so is
    # a tuple until a collection sees it; the packed form never is.
    assert not gc.is_tracked(packed)
    back = Txn.unpacked(packed)
    assert (back.txn_id, back.listener, back.link, back.state, back.rrn) == (
        "t1",
        "gw",
        "visa",
        "declined",
        "R1",
    )
    assert back.request == txn.request and back.issuer_request == txn.issuer_request
    assert back.answer == {"t": "0110", "39": "05"} and back.done.is_set()
    assert Txn.unpacked(txn) is txn  # a live one is itself (waiters share its event)


def test_a_transaction_never_sent_packs_without_issuer_messages() -> None:
    txn = Txn(txn_id="t2", listener="gw", request={"t": "0100"}, started=0.0)
    txn.finish(None, "rejected")
    back = Txn.unpacked(txn.packed())
    assert back.issuer_request is None and back.answer is None and back.link is None


def test_a_value_holding_the_separator_packs_as_a_tuple_and_comes_back_whole() -> None:
    txn = Txn(txn_id="t3", listener="gw", request={"t": "0100", "41": "TERM\x00001"}, started=0.0)
    txn.finish({"t": "0110", "39": "30"}, "rejected")
    packed = txn.packed()
    assert isinstance(packed, tuple)  # joined would be ambiguous
    back = Txn.unpacked(packed)
    assert back.request == {"t": "0100", "41": "TERM\x00001"}
    assert back.answer == {"t": "0110", "39": "30"} and back.link is None
