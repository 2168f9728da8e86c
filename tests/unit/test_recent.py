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


def test_a_switch_assigned_rrn_goes_with_its_entry() -> None:
    recent: RecentTransactions[str] = RecentTransactions(window=10)
    no_rrn = {k: v for k, v in REQ.items() if k != "37"}
    for i in range(100):
        item = f"txn{i}"
        recent.add("gw", {**no_rrn, "11": f"{i:06d}"}, item, now=i)
        recent.set_rrn("TERM0001", f"R{i}", item)
    # Only the last 10 seconds remain, in every index (no RRN kept for a pruned entry).
    assert len(recent) == 10
    assert recent.by_rrn("TERM0001", "R89") is None
    assert recent.by_rrn("TERM0001", "R99") == "txn99"
    assert len(recent._by_rrn) == len(recent._by_dup) == len(recent._by_stan) == 10


def test_memory_is_bounded_by_the_limit() -> None:
    recent: RecentTransactions[str] = RecentTransactions(window=3600, limit=50)
    for i in range(1000):
        recent.add("gw", {**REQ, "11": f"{i:06d}", "37": f"R{i}"}, f"txn{i}", now=0)
    assert len(recent) <= 50
    assert len(recent._by_rrn) <= 50 and len(recent._by_dup) <= 50


def test_pruning_an_old_entry_leaves_a_newer_one_under_the_same_key() -> None:
    recent: RecentTransactions[str] = RecentTransactions(window=10)
    recent.add("gw", REQ, "first", now=0)
    recent.add("gw", REQ, "again", now=5)  # same keys, a newer transaction
    recent.add("gw", {**REQ, "11": "000009", "37": "R9"}, "later", now=12)  # prunes "first"
    assert recent.duplicate_of("gw", REQ) == "again"
    assert recent.by_rrn("TERM0001", "R1") == "again"
    assert recent.by_stan("TERM0001", "000001") == ["again"]
