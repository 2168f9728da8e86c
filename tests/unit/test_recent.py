from __future__ import annotations

import gc
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from switch.recent import SEP, RecentTransactions, duplicate_key, joined

REQ = {"t": "0100", "11": "000001", "41": "TERM0001", "7": "1123103000", "37": "R1"}


def held(recent: RecentTransactions[Any], what: str = "items") -> int:
    """Entries (or keys of one index) held in memory, visible or not."""
    return sum(len(getattr(s, what)) for s in [*recent._slices, *recent._dying])


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
    # Only the last 10 seconds remain; the switch-assigned RRNs of older
    # entries left with their slices (each slice spans 10/8 s: two entries).
    assert len(recent) == 10
    assert recent.by_rrn("TERM0001", "R89") is None
    assert recent.by_rrn("TERM0001", "R99") == "txn99"
    assert 10 <= held(recent, "by_rrn") <= 10 + 2


def test_memory_is_bounded_by_the_limit() -> None:
    recent: RecentTransactions[str] = RecentTransactions(window=3600, limit=50)
    for i in range(1000):
        recent.add("gw", {**REQ, "11": f"{i:06d}", "37": f"R{i}"}, f"txn{i}", now=0)
        # At most the limit and one slice (50 / 8 -> 7 entries) are held, and
        # a dropped slice is released before the next one is dropped.
        assert held(recent) <= 50 + 7
        assert sum(len(s.items) for s in recent._dying) <= 7
    assert len(recent) == 50
    assert recent.by_rrn("TERM0001", "R949") is None
    assert recent.by_rrn("TERM0001", "R950") == "txn950"
    assert held(recent, "by_rrn") <= 50 + 7 and held(recent, "by_dup") <= 50 + 7


def test_a_dropped_slice_is_released_a_few_entries_at_a_time() -> None:
    # Slices of 100: a dropped one takes 13 adds to release (8 per add), and
    # is gone long before the next is dropped 100 adds later.
    recent: RecentTransactions[str] = RecentTransactions(window=3600, limit=400, slices=4)
    released_over = []
    for i in range(2_000):
        recent.add("gw", {**REQ, "11": f"{i:06d}", "37": f"R{i}"}, f"txn{i}", now=0)
        in_use = sum(len(s.items) for s in recent._slices)
        assert in_use <= 400 + 100 - 1
        assert len(recent._dying) <= 1
        if recent._dying:
            released_over.append(i)
        assert held(recent) <= 400 + 2 * 100
    # The first slice (handles 0-99) leaves when the 500th add puts it out of
    # reach, and is still being released for 12 adds (8 of its 100 per add).
    assert released_over[:13] == [*range(499, 511), 599]
    # 16 drops (adds 499, 599, ... 1999); the last had one add to go.
    assert len(released_over) == 15 * 12 + 1
    assert len(recent) == 400


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
    assert len(recent) == 1
    assert all(item != "gone" for s in recent._slices for item in s.items)


def test_replacing_leaves_a_key_a_newer_entry_took_over() -> None:
    recent: RecentTransactions[str] = RecentTransactions()
    first = recent.add("gw", REQ, "first", now=0)
    recent.add("gw", REQ, "again", now=1)
    recent.replace(first, "first-done")
    assert recent.duplicate_of("gw", REQ) == "again"
    assert recent.by_rrn("TERM0001", "R1") == "again"
    assert recent.by_stan("TERM0001", "000001") == ["first-done", "again"]


def test_nothing_an_entry_adds_is_tracked_by_the_collector() -> None:
    # A young collection walks every tracked object created since the last
    # one: at 1,000 TPS the table's per-entry tuples made it 2-8 ms a second.
    recent: RecentTransactions[object] = RecentTransactions()
    first = recent.add("gw", REQ, "txn1", now=0)
    recent.add("gw", {**REQ, "11": "000002", "37": "R2"}, "txn2", now=1)
    recent.set_rrn(first, "TERM0001", "R9")
    newest = recent._slices[-1]
    for index in (newest.by_dup, newest.by_stan, newest.by_rrn):
        assert index and not any(gc.is_tracked(k) or gc.is_tracked(v) for k, v in index.items())
    assert not any(gc.is_tracked(x) for x in [*newest.born, *newest.items])
    # A STAN the terminal uses again within the window (rare) takes a tuple.
    recent.add("gw", {**REQ, "37": "R3"}, "txn3", now=2)
    assert newest.by_stan[joined("TERM0001", "000001")] == (0, 2)
    assert recent.by_stan("TERM0001", "000001") == ["txn1", "txn3"]


@given(st.lists(st.text(alphabet="ab\x00", max_size=3), max_size=4), st.data())
def test_no_two_lists_of_parts_join_alike(parts: list[str], data: st.DataObject) -> None:
    other = data.draw(st.lists(st.text(alphabet="ab\x00", max_size=3), max_size=4))
    assert (joined(*parts) == joined(*other)) == (parts == other)
    if parts and not any(SEP in p for p in parts):
        assert isinstance(joined(*parts), str)  # the untracked form whenever it can be


class _Model:
    """The table as its docstring states it: every entry kept, visibility computed."""

    def __init__(self, window: float, limit: int) -> None:
        self.window, self.limit = window, limit
        self.entries: list[dict[str, Any]] = []
        self.now = 0.0

    def visible(self) -> list[dict[str, Any]]:
        last = self.entries[-self.limit :]
        return [e for e in last if e["born"] + self.window > self.now]

    def newest(self, match: Any) -> str | None:
        found = [e for e in self.entries if match(e)]
        return found[-1]["item"] if found and found[-1] in self.visible() else None


_ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "set_rrn", "replace"]),
        st.integers(0, 3),  # STAN (few: keys collide)
        st.integers(0, 3),  # RRN
        st.floats(0, 4),  # seconds since the previous add
        st.integers(0, 40),  # which handle, for set_rrn / replace
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops=_ops, window=st.sampled_from([3.0, 10.0, 1e9]), limit=st.integers(1, 20))
def test_lookups_match_the_stated_semantics_across_slices(
    ops: list[tuple[str, int, int, float, int]], window: float, limit: int
) -> None:
    recent: RecentTransactions[str] = RecentTransactions(window=window, limit=limit, slices=4)
    model = _Model(window, limit)
    for n, (op, stan, rrn, gap, which) in enumerate(ops):
        if op == "add" or not model.entries:
            model.now += gap
            req = {**REQ, "11": f"{stan:06d}", "37": f"R{rrn}"}
            handle = recent.add("gw", req, f"txn{n}", now=model.now)
            assert handle == len(model.entries)
            model.entries.append(
                {"born": model.now, "item": f"txn{n}", "req": req, "rrns": {f"R{rrn}"}}
            )
        elif op == "set_rrn":
            handle = which % len(model.entries)
            recent.set_rrn(handle, "TERM0001", f"S{rrn}")
            if model.entries[handle] in model.visible():
                model.entries[handle]["rrns"].add(f"S{rrn}")
        else:
            handle = which % len(model.entries)
            recent.replace(handle, f"done{n}")
            if model.entries[handle] in model.visible():
                model.entries[handle]["item"] = f"done{n}"
        assert len(recent) == len(model.visible())
        for s in range(4):
            req = {**REQ, "11": f"{s:06d}"}
            assert recent.duplicate_of("gw", req) == model.newest(
                lambda e, req=req: duplicate_key("gw", e["req"]) == duplicate_key("gw", req)
            )
            assert recent.by_stan("TERM0001", f"{s:06d}") == [
                e["item"] for e in model.visible() if e["req"]["11"] == f"{s:06d}"
            ]
        for key in [f"R{r}" for r in range(4)] + [f"S{r}" for r in range(4)]:
            assert recent.by_rrn("TERM0001", key) == model.newest(
                lambda e, key=key: key in e["rrns"]
            )
        assert held(recent) <= limit + math.ceil(limit / 4) + 1
