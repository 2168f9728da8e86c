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
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["WalCheckpointer", "manual_checkpoints"]

_READER_WAIT_MS = 200


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
