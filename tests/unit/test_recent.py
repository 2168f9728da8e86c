from __future__ import annotations

from switch.recent import RecentTransactions

REQ = {"t": "0100", "11": "000001", "41": "TERM0001", "7": "1123103000", "37": "R1"}


def test_same_request_again_is_a_duplicate_only_on_the_same_listener() -> None:
    recent: RecentTransactions[str] = RecentTransactions()
    recent.add("gw", REQ, "txn1", now=0)
    assert recent.duplicate_of("gw", dict(REQ)) == "txn1"
    assert recent.duplicate_of("other", REQ) is None
    assert recent.duplicate_of("gw", {**REQ, "11": "000002"}) is None


def test_original_found_by_stan_and_by_rrn() -> None:
    recent: RecentTransactions[str] = RecentTransactions()
    recent.add("gw", REQ, "txn1", now=0)
    assert recent.by_stan("TERM0001", "000001") == ["txn1"]
    assert recent.by_rrn("TERM0001", "R1") == "txn1"
    recent.set_rrn("TERM0001", "R9", "txn1")
    assert recent.by_rrn("TERM0001", "R9") == "txn1"


def test_entries_expire_after_the_window() -> None:
    recent: RecentTransactions[str] = RecentTransactions(window=10)
    recent.add("gw", REQ, "old", now=0)
    recent.add("gw", {**REQ, "11": "000002"}, "new", now=11)
    assert recent.duplicate_of("gw", REQ) is None
    assert recent.by_stan("TERM0001", "000001") == []
    assert len(recent) == 1
