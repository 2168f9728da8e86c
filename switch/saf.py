"""Store-and-forward: reversals that must reach an issuer, persisted in SQLite.

The ``saf`` table lives in the journal file (its own connection; WAL lets the
journal writer and the SAF share the file). An entry is a reversal message
*without* its PAN — the PAN is held only AES-GCM encrypted (``pan_enc``) and
put back in memory at send time — so no clear card data is at rest. Adding is
idempotent per (txn_id, link, reason): a timeout, a late answer and crash
recovery can never queue two reversals of one transaction.

Retry policy: exponential backoff, ``initial * 2**attempts`` capped at
``maximum``; an entry past ``expires_us`` is marked expired (and reported).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switch.errors import JournalError

__all__ = ["SENSITIVE_FIELDS", "SafEntry", "SafStore", "backoff"]

SENSITIVE_FIELDS = frozenset({"2", "35", "45", "52", "55"})


def backoff(attempts: int, initial: float, maximum: float) -> float:
    return float(min(maximum, initial * (2 ** min(attempts, 30))))


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


class SafStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, path: str | Path) -> SafStore:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(p, check_same_thread=False, isolation_level=None)
        conn.execute("pragma busy_timeout = 5000")
        conn.execute("pragma journal_mode = wal")
        conn.executescript(_SCHEMA)
        return cls(conn)

    def close(self) -> None:
        self.conn.close()

    def _entries(self, sql: str, args: tuple[Any, ...] = ()) -> list[SafEntry]:
        cur = self.conn.execute(sql, args)
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            values = dict(zip(names, row, strict=True))
            values["message"] = json.loads(values["message"])
            out.append(SafEntry(**values))
        return out

    def add(
        self,
        *,
        txn_id: str,
        link: str,
        message: dict[str, str],
        pan_enc: bytes | None,
        now_us: int,
        expire_after_s: float,
        original_txn: str | None = None,
        reason: str = "auto",
    ) -> int:
        leaked = SENSITIVE_FIELDS & set(message)
        if leaked:
            raise JournalError(f"SAF refuses card data at rest: fields {sorted(leaked)}")
        try:
            self.conn.execute(
                "insert or ignore into saf (txn_id, link, message, pan_enc, created_us,"
                " next_try_us, expires_us, original_txn, reason) values (?,?,?,?,?,?,?,?,?)",
                (
                    txn_id,
                    link,
                    json.dumps(message, sort_keys=True),
                    pan_enc,
                    now_us,
                    now_us,
                    now_us + int(expire_after_s * 1_000_000),
                    original_txn,
                    reason,
                ),
            )
            row = self.conn.execute(
                "select id from saf where txn_id = ? and link = ? and reason = ?",
                (txn_id, link, reason),
            ).fetchone()
        except sqlite3.Error as exc:
            raise JournalError(f"SAF write failed: {exc}") from exc
        return int(row[0])

    def due(self, link: str, now_us: int, limit: int = 100) -> list[SafEntry]:
        return self._entries(
            "select * from saf where link = ? and status = 'pending' and next_try_us <= ?"
            " order by next_try_us, id limit ?",
            (link, now_us, limit),
        )

    def next_due_us(self, link: str) -> int | None:
        row = self.conn.execute(
            "select min(next_try_us) from saf where link = ? and status = 'pending'", (link,)
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def attempted(self, entry_id: int, *, now_us: int, next_try_us: int, error: str) -> None:
        self.conn.execute(
            "update saf set attempts = attempts + 1, next_try_us = ?, last_error = ? where id = ?",
            (next_try_us, error, entry_id),
        )

    def done(self, entry_id: int, *, response_code: str, now_us: int) -> None:
        self.conn.execute(
            "update saf set status = 'done', response_code = ?, attempts = attempts + 1,"
            " next_try_us = ? where id = ?",
            (response_code, now_us, entry_id),
        )

    def expire(self, now_us: int) -> list[SafEntry]:
        expired = self._entries(
            "select * from saf where status = 'pending' and expires_us <= ?", (now_us,)
        )
        if expired:
            self.conn.execute(
                "update saf set status = 'expired' where status = 'pending' and expires_us <= ?",
                (now_us,),
            )
        return expired

    def pending(self, link: str | None = None) -> list[SafEntry]:
        if link is None:
            return self._entries("select * from saf where status = 'pending' order by id")
        return self._entries(
            "select * from saf where status = 'pending' and link = ? order by id", (link,)
        )

    def depth(self, link: str | None = None) -> int:
        if link is None:
            row = self.conn.execute("select count(*) from saf where status = 'pending'").fetchone()
        else:
            row = self.conn.execute(
                "select count(*) from saf where status = 'pending' and link = ?", (link,)
            ).fetchone()
        return int(row[0])

    def list(self, status: str | None = None, limit: int = 100) -> list[SafEntry]:
        if status is None:
            return self._entries("select * from saf order by id desc limit ?", (limit,))
        return self._entries(
            "select * from saf where status = ? order by id desc limit ?", (status, limit)
        )

    def retry_now(self, entry_id: int | None, now_us: int) -> int:
        if entry_id is None:
            cur = self.conn.execute(
                "update saf set next_try_us = ? where status = 'pending'", (now_us,)
            )
        else:
            cur = self.conn.execute(
                "update saf set next_try_us = ? where status = 'pending' and id = ?",
                (now_us, entry_id),
            )
        return int(cur.rowcount)
