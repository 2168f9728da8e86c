from __future__ import annotations

import gc

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
    handle = recent.add("gw", REQ, "txn1", now=0)
    assert recent.by_stan("TERM0001", "000001") == ["txn1"]
    assert recent.by_rrn("TERM0001", "R1") == "txn1"
    recent.set_rrn(handle, "TERM0001", "R9")
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
        handle = recent.add("gw", {**no_rrn, "11": f"{i:06d}"}, item, now=i)
        recent.set_rrn(handle, "TERM0001", f"R{i}")
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


def test_a_replaced_item_stands_under_every_key_and_is_pruned_with_them() -> None:
    recent: RecentTransactions[str] = RecentTransactions(window=10)
    handle = recent.add("gw", REQ, "live", now=0)
    recent.set_rrn(handle, "TERM0001", "R9")
    recent.replace(handle, "done")
    assert recent.duplicate_of("gw", REQ) == "done"
    assert recent.by_stan("TERM0001", "000001") == ["done"]
    assert recent.by_rrn("TERM0001", "R1") == recent.by_rrn("TERM0001", "R9") == "done"
    recent.add("gw", {**REQ, "11": "000002", "37": "R2"}, "later", now=11)  # prunes it
    assert recent.duplicate_of("gw", REQ) is None
    assert recent.by_stan("TERM0001", "000001") == []
    assert recent.by_rrn("TERM0001", "R1") is recent.by_rrn("TERM0001", "R9") is None
    recent.replace(handle, "gone")  # a pruned entry: nothing to replace
    assert len(recent) == 1 and "gone" not in recent._by_dup.values()


def test_replacing_leaves_a_key_a_newer_entry_took_over() -> None:
    recent: RecentTransactions[str] = RecentTransactions()
    first = recent.add("gw", REQ, "first", now=0)
    recent.add("gw", REQ, "again", now=1)
    recent.replace(first, "first-done")
    assert recent.duplicate_of("gw", REQ) == "again"
    assert recent.by_rrn("TERM0001", "R1") == "again"
    assert recent.by_stan("TERM0001", "000001") == ["first-done", "again"]


def test_an_entry_holding_only_strings_is_left_out_of_collections() -> None:
    # A full collection walks every tracked object: minutes of entries must
    # not be among them once their item is a tuple of strings.
    recent: RecentTransactions[object] = RecentTransactions()
    # In the switch the indexes are long-lived and always hold some live
    # (tracked) transaction: one in flight throughout.
    recent.add("gw", {**REQ, "11": "000000", "37": "R0"}, ["in", "flight"], now=0)
    gc.collect()
    handle = recent.add("gw", REQ, ["live", "object"], now=0)
    recent.replace(handle, ("txn1", "approved"))
    gc.collect(0)  # the first collection a new entry meets: a young one
    assert not gc.is_tracked(recent._order[handle])
    assert not gc.is_tracked(recent._by_stan[("TERM0001", "000001")])
