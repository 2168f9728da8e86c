"""Checkpointing a SQLite WAL from a thread, for a writer that commits on an event loop.

SQLite runs an automatic checkpoint inside the commit that crosses 1,000 WAL
pages: it copies megabytes back into the database and fsyncs, there and
then, for as long as the disk takes to sync. A writer that commits on an
event loop (the journal's ``write_now``, a simulator's ledger) must never
pay that inside a commit: in a simulator at 1,000 TPS those commits took
5.3 ms (median of 100 in 14 s) while the disk synced slowly, ~0.6 ms while
it did not, and every request behind one waited as long. Such a writer
turns them off (:func:`manual_checkpoints`) and a thread calls
:meth:`WalCheckpointer.checkpoint`.

Why PASSIVE then RESTART: a PASSIVE checkpoint copies without the write
lock, so commits go on meanwhile, but one racing a writer that commits a
thousand times a second never catches up, and SQLite only starts the WAL
over after a checkpoint that did (measured: the journal's WAL grew to
1.7 GB in 60 s at 1,000 TPS). So once the WAL is long, a RESTART follows: it
holds the write lock while it copies what the PASSIVE one did not - only the
frames committed during it - and the next commit writes from the WAL's
start. RESTART alone held the lock for all of each copy: about 11 ms, four
times a second. Readers of an older snapshot are waited for 200 ms at most,
then the checkpoint ends partial and the next one tries again.

A RESTART still holds the write lock while it syncs the WAL, copies the
frames of the last few milliseconds and syncs the database: 4 ms (median,
simulator at 1,000 TPS). Whoever waits for that lock must not wait longer:
SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries, so a
commit behind a 4 ms RESTART waited 8.3-8.6 ms, and in a simulator, whose
loop commits every decision, all of its requests with it (96 of the 100
slowest in a 10 s run). :func:`begin_immediate` tries every 0.1 ms instead.

And the hold grows with the database file: at 1,000 TPS on this project's
machine (ext4), the journal's RESTARTs held the lock 4.8 ms (median) in the
first 40 s and 16.3 ms after 160 s, the simulator's 3.4 and 13.5 ms, while
the PASSIVE ones stayed at ~6 ms. Every commit waits behind each, so once
RESTARTs came every 1.5 s they set the switch's p99: 5-6 ms per 10 s window
at first, 15-19 ms after two minutes (on tmpfs, where syncs are free, it
stayed at 4-7 ms). Its callers therefore let the WAL grow long before they
restart it (the journal 64,000 frames, ~256 MiB; the simulators 80,000):
four times rarer, p99 5.5-9.4 ms in every 10 s window of 200 s.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

__all__ = ["WalCheckpointer", "begin_immediate", "manual_checkpoints"]

_READER_WAIT_MS = 200
_LOCK_POLL_S = 0.0001  # begin_immediate: between tries for the write lock


def begin_immediate(conn: sqlite3.Connection, timeout: float = 5.0) -> None:
    """``BEGIN IMMEDIATE`` on ``conn``, trying for the write lock every 0.1 ms
    for up to ``timeout`` seconds, then raising SQLite's "database is locked".

    ``conn`` should have ``busy_timeout`` 0, or SQLite's own waiting, in steps
    of 1, 2, 5, 10... ms, comes first (why: the module docstring).
    """
    deadline = None
    while True:
        try:
            conn.execute("begin immediate")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + timeout
            elif now >= deadline:
                raise
        time.sleep(_LOCK_POLL_S)


def manual_checkpoints(conn: sqlite3.Connection) -> None:
    """``conn`` stops checkpointing the WAL on commit (a WalCheckpointer does it)."""
    conn.execute("pragma wal_autocheckpoint = 0")


class WalCheckpointer:
    """Checkpoints one database file's WAL on a connection of its own.

    Opened lazily by the first :meth:`checkpoint`; one thread at a time (the
    caller's: it may block on the disk). Errors are ``sqlite3.Error``: the
    caller words them, and the next checkpoint may succeed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def checkpoint(self, restart_frames: int = 0) -> int:
        """Copy the WAL back into the database; start it over once it holds
        ``restart_frames`` frames (0: every time). Returns the WAL's frames."""
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._conn.execute(f"pragma busy_timeout = {_READER_WAIT_MS}")
        conn = self._conn
        _, frames, _ = conn.execute("pragma wal_checkpoint(PASSIVE)").fetchone()
        if frames >= restart_frames:
            conn.execute("pragma wal_checkpoint(RESTART)").fetchall()
        return int(frames)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
