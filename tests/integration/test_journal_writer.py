"""The single journal writer: group commit, write-ahead, failure, flush, and the SAF beside it.

Real SQLite files; every test under an absolute ``trio.fail_after``; no sleeps.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from switch.errors import JournalError
from switch.journal import Journal, JournalWriter, Leg
from switch.saf import SafStore

T0 = 1_700_000_000_000_000


def leg(txn: str, kind: str = "acquirer_in", **kw: object) -> Leg:
    return Leg(**{"txn_id": txn, "leg": kind, "time_us": T0, **kw})  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal.open(tmp_path / "var" / "journal.db")


@pytest.fixture
async def writer(journal: Journal) -> AsyncIterator[JournalWriter]:
    w = JournalWriter(journal, batch=64)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.run)
        yield w
        await w.aclose()
    journal.close()


async def test_concurrent_legs_are_committed_in_far_fewer_batches(
    writer: JournalWriter, journal: Journal
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(100):
                # 100 tasks: 9 legs recorded without waiting, the 10th committed.
                async def client(i: int = i) -> None:
                    writer.record(*(leg(f"t{i}-{j}") for j in range(9)))
                    await writer.commit(leg(f"t{i}-9"))

                nursery.start_soon(client)
    assert writer.committed == journal.count_legs() == 1000
    assert writer.batches < 1000
    assert writer.queue_depth == 0


async def test_a_batch_never_exceeds_its_size(writer: JournalWriter, journal: Journal) -> None:
    with trio.fail_after(10):
        writer.record(*(leg(f"t{i}") for i in range(640)))
        await writer.commit(leg("last"))
    assert writer.batches >= 11  # 641 legs, at most 64 per batch
    assert journal.count_legs() == 641


async def test_commit_returns_once_another_connection_can_read_the_leg(
    writer: JournalWriter, journal: Journal
) -> None:
    other = sqlite3.connect(journal.path)
    try:
        with trio.fail_after(10):
            await writer.commit(
                leg("t1"), leg("t1", "issuer_out", link="visa", stan="900001", pan_enc=b"x")
            )
            # No checkpoint between commit() returning and this read.
            rows = other.execute(
                "select leg, stan, pan_enc from legs where txn_id = 't1' order by id"
            ).fetchall()
            assert rows == [("acquirer_in", None, None), ("issuer_out", "900001", b"x")]
    finally:
        other.close()


async def test_a_bad_leg_fails_its_caller_not_the_batch(
    writer: JournalWriter, journal: Journal
) -> None:
    with trio.fail_after(10):
        writer.record(leg("good"))
        with pytest.raises(JournalError, match="card number"):
            writer.record(leg("bad", note="pan 4111111111111111"))
        with pytest.raises(JournalError, match="leg kind"):
            await writer.commit(leg("bad", "sideways"))
        await writer.commit(leg("also_good"))
    assert journal.count_legs() == 2
    assert writer.failed is None


async def test_a_write_failure_reaches_every_waiter_as_journal_error(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db")
    writer = JournalWriter(journal)
    other = sqlite3.connect(journal.path)
    other.execute("drop table legs")  # the disk is gone, as far as the writer can tell
    other.close()
    failures: list[str] = []

    async def waiter(i: int) -> None:
        try:
            await writer.commit(leg(f"t{i}"))
        except JournalError as exc:
            failures.append(str(exc))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(waiter, i)
            await trio.testing.wait_all_tasks_blocked()
            await nursery.start(writer.run)
        # run() returned on its own: the failure is sticky.
    assert len(failures) == 5
    assert all("no such table" in f for f in failures)
    with pytest.raises(JournalError):
        writer.record(leg("after"))
    with pytest.raises(JournalError):
        await writer.commit(leg("after"))
    journal.close()


async def test_waiters_are_failed_not_hung_when_the_writer_is_cancelled(
    journal: Journal,
) -> None:
    writer = JournalWriter(journal)
    outcome: list[BaseException] = []

    async def waiter() -> None:
        try:
            await writer.commit(leg("t1"))
        except JournalError as exc:
            outcome.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            with trio.CancelScope() as scope:
                scope.cancel()
                await writer.run()
    assert len(outcome) == 1
    with pytest.raises(JournalError, match="stopped"):
        writer.record(leg("t2"))
    journal.close()


async def test_aclose_flushes_everything_queued(journal: Journal) -> None:
    writer = JournalWriter(journal, batch=16)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.record(*(leg(f"t{i}") for i in range(500)))
            assert writer.queue_depth > 0
            await writer.aclose()
            assert writer.committed == 500
        # run() has returned: the nursery closed without a cancel.
    assert journal.count_legs() == 500
    with pytest.raises(JournalError, match="stopped"):
        writer.record(leg("late"))
    journal.close()


async def test_commit_of_nothing_returns(writer: JournalWriter) -> None:
    with trio.fail_after(10):
        await writer.commit()
    assert writer.batches == 0


async def test_in_doubt_after_a_crash_between_issuer_out_and_answer(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal.open(path)
    writer = JournalWriter(journal)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await writer.commit(
                leg("t1", link="gw", mti="0100", stan="000001", terminal="TERM0001"),
                leg("t1", "issuer_out", link="visa", mti="0100", stan="900001", pan_enc=b"s"),
            )
            # kill -9: nothing more is written, nothing is closed cleanly.
            nursery.cancel_scope.cancel()
    restarted = Journal.open(path)
    [row] = restarted.in_doubt()
    assert (row["txn_id"], row["link"], row["stan"], row["pan_enc"]) == (
        "t1",
        "visa",
        "900001",
        b"s",
    )
    restarted.close()
    journal.close()


async def test_saf_and_journal_writer_share_the_file_under_load(
    writer: JournalWriter, journal: Journal
) -> None:
    store = SafStore.open(journal.path)

    def queue_reversals(start: int) -> None:
        for i in range(start, start + 50):
            store.add(
                txn_id=f"t{i}",
                link="visa",
                message={"t": "0400", "11": "900001"},
                pan_enc=b"s",
                now_us=T0 + i,
                expire_after_s=60,
            )

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for start in (0, 50, 100, 150):
                    nursery.start_soon(trio.to_thread.run_sync, queue_reversals, start)
                for i in range(200):
                    nursery.start_soon(
                        writer.commit, leg(f"t{i}", "acquirer_out", state="timed_out")
                    )
        assert store.depth("visa") == 200
        assert journal.count_legs() == 200
        assert len(journal.find_transactions(state="timed_out", limit=1000)) == 200
        assert [e.txn_id for e in store.due("visa", T0 + 2)] == ["t0", "t1", "t2"]
    finally:
        store.close()


async def test_aclose_of_a_writer_never_started_does_not_hang(journal: Journal) -> None:
    writer = JournalWriter(journal)
    writer.record(leg("t1"))
    with trio.fail_after(10):
        await writer.aclose()
    with pytest.raises(JournalError, match="stopped"):
        writer.record(leg("t2"))
    assert journal.count_legs() == 0
    journal.close()


async def test_a_lone_commit_is_written_on_the_event_loop(
    writer: JournalWriter, journal: Journal
) -> None:
    with trio.fail_after(10):
        await writer.commit(leg("t1"), leg("t1", "issuer_out"))
    assert writer.handed_over == 0  # no thread hop when the lock is free
    assert journal.count_legs() == 2


async def test_a_held_lock_sends_the_batch_to_the_thread_and_the_loop_carries_on(
    writer: JournalWriter, journal: Journal
) -> None:
    # Another connection (the SAF's, in the daemon) holds the write lock: the
    # loop must not wait for it; the writer's thread does, and commits after.
    other = sqlite3.connect(journal.path, isolation_level=None)
    other.execute("begin immediate")
    done = trio.Event()

    async def client() -> None:
        await writer.commit(leg("t1", "acquirer_out", state="approved"))
        done.set()

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client)
                await trio.testing.wait_all_tasks_blocked()
                assert writer.handed_over == 1 and not done.is_set()
                # The event loop is free: this task runs while the thread waits.
                other.execute("commit")
                await done.wait()
    finally:
        other.close()
    assert journal.count_legs() == 1
    assert journal.transaction("t1")["state"] == "approved"  # type: ignore[index]
    with trio.fail_after(10):  # the lock is free again: back on the loop
        await writer.commit(leg("t2"))
    assert writer.handed_over == 1


async def test_checkpoints_run_on_the_writers_thread_not_in_commits(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db")
    writer = JournalWriter(journal, checkpoint_pages=40)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for i in range(200):  # one batch each: ~4 WAL pages per commit
                await writer.commit(leg(f"t{i}"), leg(f"t{i}", "issuer_out"))
            await writer.aclose()  # returns once the thread has run every job asked
    # The writer connection never checkpoints inside a commit on the loop ...
    assert journal._writer.execute("pragma wal_autocheckpoint").fetchone()[0] == 0
    # ... the thread did: asked about every 40 pages (10 commits), never
    # twice at once (a lagging thread gets fewer, larger checkpoints).
    assert 1 <= writer.checkpoints <= 20
    assert journal.count_legs() == 400
    journal.close()


async def test_the_thread_writes_everything_when_not_inline(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db")
    writer = JournalWriter(journal, inline=False)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for i in range(5):
                await writer.commit(leg(f"t{i}"))
            await writer.aclose()
    assert writer.handed_over == writer.batches == 5
    assert writer.checkpoints == 0  # SQLite's own, in the thread's commits
    assert journal.count_legs() == 5
    journal.close()


def _timed(n: int) -> str:
    """A txn id as the daemon makes them: creation time first (new_txn_id)."""
    return f"{T0 + n:013x}{n:012x}"


async def test_a_write_ahead_row_waits_for_the_outcome_and_equals_the_unheld_one(
    writer: JournalWriter, journal: Journal, tmp_path: Path
) -> None:
    txn = _timed(1)
    ahead = [
        leg(txn, terminal="T1", stan="000001", amount=1000, pan_masked="400000******0002"),
        leg(txn, "issuer_out", link="visa", stan="100001", rrn="000000000001"),
    ]
    outcome = [
        leg(txn, "issuer_in", link="visa", response_code="00", auth_code="A1"),
        leg(txn, "acquirer_out", response_code="00", auth_code="A1", state="approved"),
    ]
    with trio.fail_after(10):
        await writer.commit(*ahead, row_later=True)
        reader = sqlite3.connect(journal.path)
        try:  # the write-ahead record is on disk, for any connection
            assert reader.execute("select count(*) from legs").fetchone()[0] == 2
        finally:
            reader.close()
        assert journal.transaction(txn) is None and journal.held == 1
        await writer.commit(*outcome)
    assert journal.held == 0
    plain = Journal.open(tmp_path / "plain.db")
    plain.write_batch(ahead)
    plain.write_batch(outcome)
    assert journal.transaction(txn) == plain.transaction(txn)
    assert journal.transaction(txn)["state"] == "approved"  # type: ignore[index]
    plain.close()


async def test_closing_writes_every_held_row(journal: Journal) -> None:
    writer = JournalWriter(journal)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await writer.commit(leg(_timed(1)), leg(_timed(1), "issuer_out"), row_later=True)
            await writer.aclose()
    assert journal.held == 0
    assert journal.transaction(_timed(1))["state"] == "in_flight"  # type: ignore[index]
    journal.close()


async def test_held_rows_lost_in_a_crash_are_rebuilt_before_recovery_reads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    journal = Journal.open(path)
    writer = JournalWriter(journal)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for n in (1, 2):
                await writer.commit(
                    leg(_timed(n), terminal="T1", stan=f"00000{n}"),
                    leg(_timed(n), "issuer_out", link="visa", pan_enc=b"sealed"),
                    row_later=True,
                )
            await writer.commit(leg(_timed(2), "acquirer_out", state="approved"))
            nursery.cancel_scope.cancel()  # a crash: no aclose, no held rows written
    assert journal.transaction(_timed(1)) is None
    journal.close()

    again = Journal.open(path)
    restarted = JournalWriter(again)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(restarted.run)  # rebuilds before it reports started
            assert [t["txn_id"] for t in again.in_doubt()] == [_timed(1)]
            await restarted.aclose()
    row = again.transaction(_timed(1))
    assert row is not None and row["terminal"] == "T1" and row["link"] == "visa"
    assert again.transaction(_timed(2))["state"] == "approved"  # type: ignore[index]
    again.close()


async def test_a_reversal_of_a_held_original_reaches_its_row(
    writer: JournalWriter, journal: Journal
) -> None:
    original, reversal = _timed(1), _timed(2)
    with trio.fail_after(10):
        await writer.commit(leg(original), leg(original, "issuer_out"), row_later=True)
        await writer.commit(leg(reversal, "acquirer_out", original_txn=original, state="reversed"))
    row = journal.transaction(original)
    assert row is not None
    assert row["state"] == "reversed" and row["reversed_by"] == reversal


async def test_the_held_since_mark_never_passes_a_held_id(
    writer: JournalWriter, journal: Journal
) -> None:
    with trio.fail_after(10):
        await writer.commit(leg(_timed(5)), leg(_timed(5), "issuer_out"), row_later=True)
        for n in range(6, 20):
            await writer.commit(leg(_timed(n), time_us=T0 + 120_000_000 + n))
    mark = journal.db.conn.execute(
        "select value from journal_state where key = 'held_since'"
    ).fetchone()[0]
    assert mark <= _timed(5)


def test_a_checkpoint_starts_the_wal_over(journal: Journal) -> None:
    # The writer connection never checkpoints on commit (manual_checkpoints):
    # without checkpoint() the WAL keeps every frame; after it, writing
    # starts again at the WAL's beginning instead of growing it.
    journal.manual_checkpoints()
    for i in range(300):
        assert journal.write_now([leg(f"t{i}"), leg(f"t{i}", "issuer_out")])
    wal = Path(f"{journal.path}-wal")
    grown = wal.stat().st_size
    journal.checkpoint()
    for i in range(300, 600):
        assert journal.write_now([leg(f"t{i}"), leg(f"t{i}", "issuer_out")])
    # Reused from the start (appending would double it; a few more pages per
    # commit as the trees deepen is all the growth).
    assert wal.stat().st_size < grown * 1.5
    assert journal.count_legs() == 1200
    journal.close()


def test_a_checkpoint_copies_back_while_another_connection_writes(journal: Journal) -> None:
    # Below restart_frames only the PASSIVE step runs: it needs no write
    # lock, so commits on the event loop go on while it copies.
    journal.manual_checkpoints()
    for i in range(300):
        assert journal.write_now([leg(f"t{i}"), leg(f"t{i}", "issuer_out")])
    before = journal.path.stat().st_size
    other = sqlite3.connect(journal.path, isolation_level=None)
    other.execute("begin immediate")  # holds the write lock throughout
    try:
        journal.checkpoint(restart_frames=1_000_000)
    finally:
        other.execute("rollback")
        other.close()
    assert journal.path.stat().st_size > before  # pages copied back into the database
    journal.close()
