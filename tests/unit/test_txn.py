"""A finished transaction keeps only what duplicates and reversals need (it lives an hour)."""

from __future__ import annotations

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
