"""Store-and-forward: reversals that must reach an issuer, persisted in SQLite.

What this module owns: the ``saf`` table, the life of an entry and the retry
policy. Delivery (sending, STANs, journaling the attempt) is the forwarder's.

The ``saf`` table lives in the journal file, on its own connection (WAL lets
the journal writer and the SAF share the file; ``busy_timeout`` 5000 ms).
Schema::

    saf   id INTEGER PRIMARY KEY, txn_id, link, message (JSON object of
          field -> text), pan_enc BLOB, attempts, created_us, next_try_us,
          expires_us, status ('pending' | 'done' | 'expired'), last_error,
          response_code, original_txn, reason;
          UNIQUE (txn_id, link, reason); index (link, status, next_try_us)

Invariants:

- No clear card data at rest: ``message`` never holds F2 (PAN), F35 / F45
  (track 2 / track 1), F52 (PIN block) or F55 (ICC data); ``add`` refuses
  them. The PAN is kept only AES-GCM encrypted (``pan_enc``, from
  ``Vault.encrypt_pan``) and put back in memory at send time.
- Adding is idempotent per (txn_id, link, reason): a timeout, a late answer
  and crash recovery can never queue two reversals of one transaction for
  the same reason; the second ``add`` returns the first entry's id, whatever
  its status.
- An entry leaves ``pending`` once: ``done`` (the issuer answered) or
  ``expired`` (``expire`` found it past ``expires_us``). ``attempted`` and
  ``retry_now`` only reschedule pending entries.
- Every write is its own committed transaction with ``synchronous=FULL``:
  an entry is the switch's promise to reverse, and SAF writes are rare.

Retry policy (:func:`backoff`): ``initial * 2**attempts`` seconds, capped at
``maximum``.

Thread use: the daemon calls the store from the trio thread and from worker
threads (``trio.to_thread``); one lock serialises the connection.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switch.errors import JournalError

__all__ = ["SENSITIVE_FIELDS", "STATUSES", "SafEntry", "SafStore", "backoff"]

# F2 PAN, F35 track 2, F45 track 1, F52 PIN block, F55 ICC (EMV) data.
SENSITIVE_FIELDS = frozenset({"2", "35", "45", "52", "55"})
STATUSES = ("pending", "done", "expired")


def backoff(attempts: int, initial: float, maximum: float) -> float:
    """Seconds to wait before the next try after ``attempts`` failed ones."""
    # The exponent is capped so a long-failing entry cannot overflow a float.
    return float(min(maximum, initial * 2 ** min(max(attempts, 0), 64)))


@dataclass(frozen=True, slots=True, kw_only=True)
class SafEntry:
    id: int
    txn_id: str
    link: str
    message: dict[str, str]
    pan_enc: bytes | None
    attempts: int
    created_us: int
    next_try_us: int
    expires_us: int
    status: str
    last_error: str | None
    response_code: str | None
    original_txn: str | None
    reason: str


_SCHEMA = """
create table if not exists saf (
    id integer primary key,
    txn_id text not null,
    link text not null,
    message text not null,
    pan_enc blob,
    attempts integer not null default 0,
    created_us integer not null,
    next_try_us integer not null,
    expires_us integer not null,
    status text not null default 'pending',
    last_error text,
    response_code text,
    original_txn text,
    reason text not null,
    unique (txn_id, link, reason)
);
create index if not exists saf_due on saf (link, status, next_try_us);
"""


def _field_number(key: str) -> str:
    """ "002" and "2" are the same field."""
    return str(int(key)) if key.isascii() and key.isdigit() else key


class SafStore:
    """The persisted SAF queue (synchronous; call it from a worker thread in trio code)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path) -> SafStore:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(p, check_same_thread=False, isolation_level=None)
            conn.execute("pragma busy_timeout = 5000")
            conn.execute("pragma journal_mode = wal")
            conn.execute("pragma synchronous = FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open SAF store {p}: {exc}") from exc
        return cls(conn, p)

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One locked, committed write; sqlite errors become JournalError."""
        with self._lock:
            try:
                self.conn.execute("begin immediate")
                yield self.conn
                self.conn.execute("commit")
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("rollback")
                raise JournalError(f"SAF write failed: {exc}") from exc
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("rollback")
                raise

    def _entries(self, sql: str, args: tuple[Any, ...] = ()) -> builtins.list[SafEntry]:
        with self._lock:
            return _read_entries(self.conn, sql, args)

    def _scalar(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        with self._lock:
            try:
                return self.conn.execute(sql, args).fetchone()[0]
            except sqlite3.Error as exc:
                raise JournalError(f"SAF read failed: {exc}") from exc

    # -- adding -------------------------------------------------------------------

    def add(
        self,
        *,
        txn_id: str,
        link: str,
        message: Mapping[str, str],
        pan_enc: bytes | None,
        now_us: int,
        expire_after_s: float,
        original_txn: str | None = None,
        reason: str = "timeout",
    ) -> int:
        """Queue a reversal, due now; returns its id (the existing one for a repeat add)."""
        leaked = SENSITIVE_FIELDS & {_field_number(k) for k in message}
        if leaked:
            raise JournalError(
                f"SAF refuses card data at rest: field(s) {', '.join(sorted(leaked))}"
            )
        with self._transaction() as conn:
            conn.execute(
                "insert or ignore into saf (txn_id, link, message, pan_enc, created_us,"
                " next_try_us, expires_us, original_txn, reason) values (?,?,?,?,?,?,?,?,?)",
                (
                    txn_id,
                    link,
                    json.dumps(dict(message), sort_keys=True),
                    pan_enc,
                    now_us,
                    now_us,
                    now_us + int(expire_after_s * 1_000_000),
                    original_txn,
                    reason,
                ),
            )
            row = conn.execute(
                "select id from saf where txn_id = ? and link = ? and reason = ?",
                (txn_id, link, reason),
            ).fetchone()
        return int(row[0])

    # -- what to send -------------------------------------------------------------

    def due(self, link: str, now_us: int, limit: int = 100) -> builtins.list[SafEntry]:
        """Pending entries of ``link`` whose time has come, oldest first."""
        return self._entries(
            "select * from saf where link = ? and status = 'pending' and next_try_us <= ?"
            " order by created_us, id limit ?",
            (link, now_us, limit),
        )

    def next_due_us(self, link: str) -> int | None:
        """When the next pending entry of ``link`` is due (None: nothing pending)."""
        value = self._scalar(
            "select min(next_try_us) from saf where link = ? and status = 'pending'", (link,)
        )
        return None if value is None else int(value)

    # -- outcomes -----------------------------------------------------------------

    def attempted(self, entry_id: int, *, now_us: int, next_try_us: int, error: str) -> None:
        """A try failed (timeout, link down): count it and reschedule."""
        with self._transaction() as conn:
            conn.execute(
                "update saf set attempts = attempts + 1, next_try_us = ?, last_error = ?"
                " where id = ? and status = 'pending'",
                (max(next_try_us, now_us), error, entry_id),
            )

    def done(self, entry_id: int, *, response_code: str, now_us: int) -> None:
        """The issuer answered: the entry is settled (the answering try counts)."""
        with self._transaction() as conn:
            conn.execute(
                "update saf set status = 'done', response_code = ?, attempts = attempts + 1,"
                " next_try_us = ? where id = ? and status != 'done'",
                (response_code, now_us, entry_id),
            )

    def expire(self, now_us: int) -> builtins.list[SafEntry]:
        """Mark pending entries past ``expires_us`` as expired; return them (as they were)."""
        with self._transaction() as conn:
            expired = _read_entries(
                conn,
                "select * from saf where status = 'pending' and expires_us <= ? order by id",
                (now_us,),
            )
            conn.executemany(
                "update saf set status = 'expired' where id = ?", [(e.id,) for e in expired]
            )
        return expired

    # -- operator views and actions -----------------------------------------------

    def get(self, entry_id: int) -> SafEntry | None:
        """One entry by id, or None."""
        found = self._entries("select * from saf where id = ?", (entry_id,))
        return found[0] if found else None

    def pending(self, link: str | None = None) -> builtins.list[SafEntry]:
        """Pending entries (of ``link``, or all), oldest first."""
        if link is None:
            return self._entries("select * from saf where status = 'pending' order by id")
        return self._entries(
            "select * from saf where status = 'pending' and link = ? order by id", (link,)
        )

    def depth(self, link: str | None = None) -> int:
        """How many entries are pending (for ``link``, or all)."""
        if link is None:
            return int(self._scalar("select count(*) from saf where status = 'pending'"))
        return int(
            self._scalar("select count(*) from saf where status = 'pending' and link = ?", (link,))
        )

    def list(self, status: str | None = None, limit: int = 100) -> builtins.list[SafEntry]:
        """Entries (with ``status``, or all), newest first."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        if status is None:
            return self._entries("select * from saf order by id desc limit ?", (limit,))
        return self._entries(
            "select * from saf where status = ? order by id desc limit ?", (status, limit)
        )

    def retry_now(self, entry_id: int | None, now_us: int) -> int:
        """Make one pending entry (or all, for None) due now; returns how many."""
        with self._transaction() as conn:
            if entry_id is None:
                cur = conn.execute(
                    "update saf set next_try_us = ? where status = 'pending'", (now_us,)
                )
            else:
                cur = conn.execute(
                    "update saf set next_try_us = ? where status = 'pending' and id = ?",
                    (now_us, entry_id),
                )
            return int(cur.rowcount)


def _read_entries(
    conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]
) -> builtins.list[SafEntry]:
    try:
        cur = conn.execute(sql, args)
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    except sqlite3.Error as exc:
        raise JournalError(f"SAF read failed: {exc}") from exc
    entries = []
    for row in rows:
        values = dict(zip(names, row, strict=True))
        values["message"] = json.loads(values["message"])
        entries.append(SafEntry(**values))
    return entries
