"""SAF store: persistence, due order, backoff, expiry, operator retry, idempotence, no card data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.errors import JournalError
from switch.journal import Journal, Leg
from switch.saf import SafStore, backoff

T0 = 1_700_000_000_000_000
S = 1_000_000  # µs per second
REVERSAL = {"t": "0400", "3": "000000", "4": "000000001000", "11": "900001", "41": "TERM0001"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SafStore]:
    s = SafStore.open(tmp_path / "var" / "journal.db")
    yield s
    s.close()


def add(store: SafStore, txn: str, *, link: str = "visa", at: int = 0, **kw: Any) -> int:
    args: dict[str, Any] = {
        "message": REVERSAL,
        "pan_enc": b"\x01sealed",
        "now_us": T0 + at,
        "expire_after_s": 3600,
    }
    args.update(kw)
    return store.add(txn_id=txn, link=link, **args)


def test_entries_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    first = SafStore.open(path)
    ident = add(first, "t1", original_txn="t1", reason="timeout")
    first.close()
    again = SafStore.open(path)
    [entry] = again.pending("visa")
    assert entry.id == ident
    assert (entry.txn_id, entry.link, entry.status, entry.reason) == (
        "t1",
        "visa",
        "pending",
        "timeout",
    )
    assert entry.message == REVERSAL
    assert entry.pan_enc == b"\x01sealed"
    assert (entry.created_us, entry.next_try_us, entry.expires_us) == (T0, T0, T0 + 3600 * S)
    assert (entry.attempts, entry.original_txn, entry.last_error) == (0, "t1", None)
    again.close()


def test_due_is_oldest_first_for_one_link_and_respects_limit(store: SafStore) -> None:
    third, first, second = add(store, "c", at=30), add(store, "a", at=10), add(store, "b", at=20)
    add(store, "other", link="mastercard", at=5)
    assert [e.id for e in store.due("visa", T0 + 30)] == [first, second, third]
    assert [e.id for e in store.due("visa", T0 + 30, limit=2)] == [first, second]
    assert [e.id for e in store.due("visa", T0 + 15)] == [first]
    assert store.due("visa", T0) == []
    assert store.next_due_us("visa") == T0 + 10
    assert store.next_due_us("amex") is None


def test_a_failed_attempt_is_counted_and_rescheduled(store: SafStore) -> None:
    ident = add(store, "t1")
    retry_at = T0 + int(backoff(0, 1.0, 60.0) * S)
    store.attempted(ident, now_us=T0, next_try_us=retry_at, error="issuer timeout")
    assert store.due("visa", T0) == []
    assert store.next_due_us("visa") == retry_at
    [entry] = store.due("visa", retry_at)
    assert (entry.attempts, entry.last_error) == (1, "issuer timeout")


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 1.0, 60.0) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff(10_000, 0.5, 30.0) == 30.0


@given(
    st.integers(min_value=0, max_value=10_000),
    st.floats(min_value=0.001, max_value=100),
    st.floats(min_value=0.001, max_value=10_000),
)
def test_backoff_never_shrinks_and_never_passes_the_cap(
    attempts: int, initial: float, maximum: float
) -> None:
    assert backoff(attempts, initial, maximum) <= maximum
    assert backoff(attempts + 1, initial, maximum) >= backoff(attempts, initial, maximum)


def test_done_settles_an_entry(store: SafStore) -> None:
    ident = add(store, "t1")
    store.done(ident, response_code="00", now_us=T0 + 5)
    assert store.depth() == 0
    assert store.due("visa", T0 + 10 * S) == []
    [entry] = store.list("done")
    assert (entry.id, entry.response_code, entry.attempts) == (ident, "00", 1)
    store.attempted(ident, now_us=T0 + 6, next_try_us=T0 + 7, error="late failure")
    assert store.list("done")[0].attempts == 1  # a settled entry is not rescheduled


def test_expire_marks_and_returns_entries_past_their_time(store: SafStore) -> None:
    old = add(store, "old", expire_after_s=60)
    add(store, "young", expire_after_s=3600)
    settled = add(store, "settled", expire_after_s=60)
    store.done(settled, response_code="00", now_us=T0)
    expired = store.expire(T0 + 60 * S)
    assert [e.id for e in expired] == [old]
    assert [e.txn_id for e in store.pending()] == ["young"]
    assert [e.id for e in store.list("expired")] == [old]
    assert store.expire(T0 + 60 * S) == []  # only once
    assert all(e.txn_id != "old" for e in store.due("visa", T0 + 120 * S))


def test_retry_now_makes_one_or_all_pending_entries_due(store: SafStore) -> None:
    a, b = add(store, "a"), add(store, "b")
    far = T0 + 3000 * S
    for ident in (a, b):
        store.attempted(ident, now_us=T0, next_try_us=far, error="down")
    now = T0 + S
    assert store.retry_now(a, now) == 1
    assert [e.id for e in store.due("visa", now)] == [a]
    assert store.retry_now(None, now) == 2
    assert [e.id for e in store.due("visa", now)] == [a, b]
    store.done(a, response_code="00", now_us=now)
    assert store.retry_now(a, now) == 0
    assert store.retry_now(999, now) == 0


def test_add_is_idempotent_per_txn_link_and_reason(store: SafStore) -> None:
    first = add(store, "t1", reason="timeout")
    assert add(store, "t1", reason="timeout", at=99, message={"t": "0400"}) == first
    assert store.pending()[0].message == REVERSAL  # the first entry wins
    store.done(first, response_code="00", now_us=T0)
    assert add(store, "t1", reason="timeout") == first  # even once settled
    assert add(store, "t1", reason="acquirer") != first
    assert add(store, "t1", link="mastercard", reason="timeout") != first
    assert len(store.list()) == 3


def test_default_reason_is_timeout(store: SafStore) -> None:
    add(store, "t1")
    assert store.pending()[0].reason == "timeout"


@pytest.mark.parametrize("field", ["2", "35", "45", "52", "55", "002", "035"])
def test_card_data_is_refused_and_nothing_stored(store: SafStore, field: str) -> None:
    with pytest.raises(JournalError, match="card data") as caught:
        add(store, "t1", message={**REVERSAL, field: "4111111111111111"})
    assert "4111111111111111" not in str(caught.value)
    assert store.list() == []


def test_depth_and_list_views(store: SafStore) -> None:
    a = add(store, "a")
    b = add(store, "b", link="mastercard")
    c = add(store, "c")
    store.done(c, response_code="25", now_us=T0)
    assert (store.depth(), store.depth("visa"), store.depth("mastercard")) == (2, 1, 1)
    assert [e.id for e in store.list()] == [c, b, a]  # newest first
    assert [e.id for e in store.list(limit=1)] == [c]
    assert [e.id for e in store.pending("visa")] == [a]
    with pytest.raises(ValueError, match="status"):
        store.list("sent")


def test_journal_and_saf_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal, store = Journal.open(path), SafStore.open(path)
    journal.write_batch([Leg(txn_id="t1", leg="acquirer_in", time_us=T0)])
    add(store, "t1")
    journal.write_batch([Leg(txn_id="t1", leg="acquirer_out", time_us=T0 + 1, state="timed_out")])
    assert store.depth() == 1 and journal.count_legs() == 2
    store.close()
    journal.close()
    reopened = Journal.open(path)  # the journal's schema step leaves the saf table be
    store = SafStore.open(path)
    assert store.depth() == 1
    store.close()
    reopened.close()
