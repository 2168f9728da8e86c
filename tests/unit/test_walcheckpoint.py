"""switch.walcheckpoint.begin_immediate: waiting for SQLite's write lock in short steps."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from simulators.ledger import Ledger
from switch.vault import Vault
from switch.walcheckpoint import begin_immediate


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("pragma journal_mode = wal")
    conn.execute("pragma busy_timeout = 0")
    return conn


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "db.sqlite"
    with _connect(path) as conn:
        conn.execute("create table t (x)")
    return path


class _Tries:
    """Counts the BEGIN IMMEDIATE statements a connection runs (its trace)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.count = 0
        self.seen = threading.Condition()
        conn.set_trace_callback(self._trace)

    def _trace(self, sql: str) -> None:
        if sql.lower() == "begin immediate":
            with self.seen:
                self.count += 1
                self.seen.notify_all()

    def wait_for(self, n: int) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: self.count >= n, timeout=10)


def test_a_free_lock_is_taken_at_the_first_try(db: Path) -> None:
    conn = _connect(db)
    tries = _Tries(conn)
    begin_immediate(conn)
    assert conn.in_transaction and tries.count == 1
    conn.execute("insert into t values (1)")
    conn.execute("commit")


def test_a_held_lock_is_tried_again_and_again_until_it_is_free(db: Path) -> None:
    # SQLite's busy handler would run the statement once and sleep inside it
    # 1, 2, 5 ms...; here each try is a statement of its own, every 0.1 ms.
    holder, waiter = _connect(db), _connect(db)
    tries = _Tries(waiter)
    holder.execute("begin immediate")
    done = threading.Event()

    def wait() -> None:
        begin_immediate(waiter)
        done.set()

    thread = threading.Thread(target=wait)
    thread.start()
    assert tries.wait_for(5), "begin_immediate did not try again"
    assert not done.is_set()  # still held: no try got it
    holder.execute("commit")
    thread.join(timeout=10)
    assert done.is_set() and waiter.in_transaction
    waiter.execute("rollback")


def test_a_lock_held_past_the_timeout_raises_database_is_locked(db: Path) -> None:
    holder, waiter = _connect(db), _connect(db)
    tries = _Tries(waiter)
    holder.execute("begin immediate")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        begin_immediate(waiter, timeout=0.05)
    assert tries.count > 1 and not waiter.in_transaction
    holder.execute("rollback")


def test_an_error_that_is_not_busy_is_raised_at_once(db: Path) -> None:
    conn = _connect(db)
    conn.execute("begin")
    tries = _Tries(conn)
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        begin_immediate(conn, timeout=5)
    assert tries.count == 1


def test_the_simulator_ledger_waits_in_short_steps_not_in_sqlites(tmp_path: Path) -> None:
    # Its writes start with begin_immediate; a busy_timeout left on would make
    # SQLite sleep first (and a RESTART checkpoint cost a commit 8 ms, not 4).
    ledger = Ledger.open(tmp_path / "ledger.db", Vault.ephemeral())
    assert ledger.db.conn.execute("pragma busy_timeout").fetchone() == (0,)
    holder = _connect(tmp_path / "ledger.db")
    holder.execute("begin immediate")
    tries = _Tries(ledger.db.conn)
    done = threading.Event()

    def write() -> None:
        with ledger.batch():
            pass
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    assert tries.wait_for(3)
    holder.execute("commit")
    thread.join(timeout=10)
    assert done.is_set() and ledger.commits == 1
    ledger.close()
