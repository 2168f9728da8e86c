"""The journal: every leg of every transaction, in SQLite, written by one task.

Tables (sqlite-utils, WAL, synchronous=NORMAL):

``legs`` — one row per leg: id, txn_id, leg, time_us, link, mti, stan, rrn,
f7, terminal, merchant, pan_masked, pan_token, pan_enc, amount (minor units),
currency, processing_code, response_code, auth_code, latency_us,
original_txn, state, note. Leg kinds: acquirer_in, issuer_out, issuer_in,
acquirer_out, late, unmatched, saf_out, saf_in, recovered.

``transactions`` — one row per switch transaction with its final state:
txn_id, created_us, updated_us, listener, link, mti, stan, rrn, f7,
terminal, merchant, pan_masked, pan_token, amount, currency,
processing_code, response_code, auth_code, state, issuer_stan, issuer_rrn,
issuer_f7, latency_us, original_txn, reversed_by.

How a leg updates its transaction (``write_batch``, one SQL transaction per
batch): the first leg creates the row from its descriptive fields; acquirer
legs own the acquirer-side columns (stan, rrn, f7 are the acquirer's), issuer
legs fill issuer_stan/issuer_rrn/issuer_f7 and the link; a leg's
``response_code``/``auth_code`` on acquirer_out is what the acquirer heard;
``state``, when set, becomes the transaction's state. A leg with
``original_txn`` and a reversing state (reversed, partially_reversed,
timed_out_reversed) also sets that state on the original and records the
reversal in its ``reversed_by``.

Never a clear PAN, CVV2, PIN block or track data: the PAN is masked (6+4),
tokenised (keyed HMAC) and, on issuer-out legs only, AES-GCM encrypted for
crash recovery; ``write_batch`` refuses free-text columns holding a 13-19
digit run that passes Luhn.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import sqlite_utils
import trio

from switch.cards import luhn_valid
from switch.errors import JournalError

__all__ = ["LEG_KINDS", "STATES", "Journal", "JournalWriter", "Leg"]

LEG_KINDS = (
    "acquirer_in",
    "issuer_out",
    "issuer_in",
    "acquirer_out",
    "late",
    "unmatched",
    "saf_out",
    "saf_in",
    "reversal_out",
    "reversal_in",
    "recovered",
)
STATES = (
    "in_flight",
    "approved",
    "declined",
    "rejected",
    "timed_out",
    "timed_out_reversed",
    "reversed",
    "partially_reversed",
    "reversal_pending",
)
_REVERSING = frozenset({"reversed", "partially_reversed", "timed_out_reversed"})
_PAN_RUN = re.compile(r"\d{13,19}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Leg:
    txn_id: str
    leg: str
    time_us: int
    link: str | None = None
    mti: str | None = None
    stan: str | None = None
    rrn: str | None = None
    f7: str | None = None
    terminal: str | None = None
    merchant: str | None = None
    pan_masked: str | None = None
    pan_token: str | None = None
    pan_enc: bytes | None = None
    amount: int | None = None
    currency: str | None = None
    processing_code: str | None = None
    response_code: str | None = None
    auth_code: str | None = None
    latency_us: int | None = None
    original_txn: str | None = None
    state: str | None = None
    note: str | None = None


_LEG_COLUMNS = [f.name for f in fields(Leg)]
_TXN_COLUMNS = {
    "txn_id": str,
    "created_us": int,
    "updated_us": int,
    "listener": str,
    "link": str,
    "mti": str,
    "stan": str,
    "rrn": str,
    "f7": str,
    "terminal": str,
    "merchant": str,
    "pan_masked": str,
    "pan_token": str,
    "amount": int,
    "currency": str,
    "processing_code": str,
    "response_code": str,
    "auth_code": str,
    "state": str,
    "issuer_stan": str,
    "issuer_rrn": str,
    "issuer_f7": str,
    "latency_us": int,
    "original_txn": str,
    "reversed_by": str,
}


def _holds_pan(text: str | None) -> bool:
    return bool(text) and any(luhn_valid(m) for m in _PAN_RUN.findall(text or ""))


class Journal:
    """Synchronous access to the journal file: the writer thread and queries."""

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> Journal:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(p, check_same_thread=False, isolation_level=None)
        conn.execute("pragma busy_timeout = 5000")
        db = sqlite_utils.Database(conn)
        db.enable_wal()
        conn.execute("pragma synchronous = NORMAL")
        journal = cls(db, p)
        journal._schema()
        return journal

    def _schema(self) -> None:
        legs = self.db.table("legs")
        if not legs.exists():
            cols: dict[str, Any] = {"id": int}
            for f in fields(Leg):
                cols[f.name] = {
                    "time_us": int,
                    "amount": int,
                    "latency_us": int,
                    "pan_enc": bytes,
                }.get(f.name, str)
            self.db.table("legs").create(cols, pk="id")
            for idx in (
                ["txn_id"],
                ["terminal", "stan"],
                ["rrn"],
                ["pan_token"],
                ["time_us"],
                ["leg"],
            ):
                self.db.table("legs").create_index(idx, if_not_exists=True)
        if not self.db.table("transactions").exists():
            self.db.table("transactions").create(_TXN_COLUMNS, pk="txn_id")
            for idx in (["terminal", "stan"], ["rrn"], ["pan_token"], ["created_us"], ["state"]):
                self.db.table("transactions").create_index(idx, if_not_exists=True)

    def close(self) -> None:
        self.db.conn.close()

    # -- writing ------------------------------------------------------------------

    def write_batch(self, legs: Sequence[Leg]) -> None:
        for leg in legs:
            if leg.leg not in LEG_KINDS:
                raise JournalError(f"unknown leg kind {leg.leg!r}")
            if any(_holds_pan(v) for v in (leg.rrn, leg.note, leg.terminal, leg.merchant)):
                raise JournalError(f"leg {leg.leg} of {leg.txn_id} holds a card number in clear")
        conn = self.db.conn
        try:
            conn.execute("begin")
            conn.executemany(
                f"insert into legs ({', '.join(_LEG_COLUMNS)}) values "
                f"({', '.join('?' for _ in _LEG_COLUMNS)})",
                [tuple(getattr(leg, c) for c in _LEG_COLUMNS) for leg in legs],
            )
            for leg in legs:
                self._apply(conn, leg)
            conn.execute("commit")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("rollback")
            raise JournalError(f"journal write failed: {exc}") from exc

    @staticmethod
    def _apply(conn: sqlite3.Connection, leg: Leg) -> None:
        acquirer = leg.leg.startswith("acquirer")
        issuer = leg.leg in ("issuer_out", "issuer_in")
        conn.execute(
            "insert or ignore into transactions (txn_id, created_us, updated_us, listener, link,"
            " mti, stan, rrn, f7, terminal, merchant, pan_masked, pan_token, amount, currency,"
            " processing_code, state, original_txn) values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                leg.txn_id,
                leg.time_us,
                leg.time_us,
                leg.link if acquirer else None,
                None if acquirer else leg.link,
                leg.mti,
                leg.stan if acquirer else None,
                leg.rrn,
                leg.f7 if acquirer else None,
                leg.terminal,
                leg.merchant,
                leg.pan_masked,
                leg.pan_token,
                leg.amount,
                leg.currency,
                leg.processing_code,
                "in_flight",
                leg.original_txn,
            ),
        )
        sets = ["updated_us = ?"]
        args: list[Any] = [leg.time_us]
        for col in (
            "terminal",
            "merchant",
            "pan_masked",
            "pan_token",
            "amount",
            "currency",
            "processing_code",
            "original_txn",
        ):
            value = getattr(leg, col)
            if value is not None:
                sets.append(f"{col} = coalesce({col}, ?)")
                args.append(value)
        if acquirer and leg.rrn:
            sets.append("rrn = ?")
            args.append(leg.rrn)
        if issuer:
            sets += [
                "link = ?",
                "issuer_stan = coalesce(issuer_stan, ?)",
                "issuer_rrn = coalesce(issuer_rrn, ?)",
                "issuer_f7 = coalesce(issuer_f7, ?)",
                "rrn = coalesce(rrn, ?)",
            ]
            args += [leg.link, leg.stan, leg.rrn, leg.f7, leg.rrn]
        if leg.leg == "acquirer_out":
            sets += ["response_code = ?", "auth_code = ?"]
            args += [leg.response_code, leg.auth_code]
        elif leg.leg == "issuer_in" and leg.response_code:
            sets.append("response_code = coalesce(response_code, ?)")
            args.append(leg.response_code)
        if leg.latency_us is not None:
            sets.append("latency_us = ?")
            args.append(leg.latency_us)
        if leg.state:
            sets.append("state = ?")
            args.append(leg.state)
        args.append(leg.txn_id)
        conn.execute(f"update transactions set {', '.join(sets)} where txn_id = ?", args)
        if leg.original_txn and leg.state in _REVERSING:
            conn.execute(
                "update transactions set state = ?, reversed_by = ?, updated_us = ? "
                "where txn_id = ?",
                (leg.state, leg.txn_id, leg.time_us, leg.original_txn),
            )

    # -- queries ------------------------------------------------------------------

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.db.conn.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def transaction(self, txn_id: str) -> dict[str, Any] | None:
        rows = self._rows("select * from transactions where txn_id = ?", (txn_id,))
        return rows[0] if rows else None

    def legs_of(self, txn_id: str) -> list[dict[str, Any]]:
        return self._rows("select * from legs where txn_id = ? order by time_us, id", (txn_id,))

    @staticmethod
    def _where(filters: dict[str, Any], time_col: str) -> tuple[str, list[Any]]:
        clauses, args = [], []
        for col, value in filters.items():
            if value is None:
                continue
            if col == "since_us":
                clauses.append(f"{time_col} >= ?")
            elif col == "until_us":
                clauses.append(f"{time_col} < ?")
            else:
                clauses.append(f"{col} = ?")
            args.append(value)
        return (" where " + " and ".join(clauses)) if clauses else "", args

    def find_transactions(self, *, limit: int = 100, **filters: Any) -> list[dict[str, Any]]:
        where, args = self._where(filters, "created_us")
        return self._rows(
            f"select * from transactions{where} order by created_us desc limit ?", [*args, limit]
        )

    def find_legs(self, *, limit: int = 100, **filters: Any) -> list[dict[str, Any]]:
        where, args = self._where(filters, "time_us")
        return self._rows(
            f"select * from legs{where} order by time_us desc limit ?", [*args, limit]
        )

    def find_original(
        self,
        *,
        terminal: str,
        stan: str | None = None,
        f7: str | None = None,
        mti: str | None = None,
        rrn: str | None = None,
    ) -> dict[str, Any] | None:
        """The acquirer request a reversal or duplicate refers to (newest first)."""
        clauses = ["terminal = ?", "substr(mti, 1, 2) != '04'"]
        args: list[Any] = [terminal]
        if stan is not None:
            clauses.append("stan = ?")
            args.append(stan)
        if f7 is not None:
            clauses.append("f7 = ?")
            args.append(f7)
        if mti is not None:
            clauses.append("mti = ?")
            args.append(mti)
        if rrn is not None:
            clauses.append("rrn = ?")
            args.append(rrn)
        if stan is None and rrn is None:
            return None
        rows = self._rows(
            f"select * from transactions where {' and '.join(clauses)} "
            "order by created_us desc limit 1",
            args,
        )
        return rows[0] if rows else None

    def in_doubt(self) -> list[dict[str, Any]]:
        """Requests that reached an issuer (issuer_out committed) with no recorded outcome."""
        return self._rows(
            """
            select o.txn_id, o.link, o.mti, o.stan, o.f7, o.rrn, o.amount, o.currency,
                   o.processing_code, o.terminal, o.merchant, o.pan_enc, o.pan_masked,
                   o.pan_token, t.original_txn
            from legs o join transactions t on t.txn_id = o.txn_id
            where o.leg = 'issuer_out'
              and t.state in ('in_flight')
              and not exists (select 1 from legs x where x.txn_id = o.txn_id
                              and x.leg in ('issuer_in', 'late', 'recovered'))
            order by o.time_us
            """
        )

    def stats(self, since_us: int = 0) -> dict[str, Any]:
        by_state = dict(
            self.db.conn.execute(
                "select state, count(*) from transactions where created_us >= ? group by state",
                (since_us,),
            ).fetchall()
        )
        by_code = dict(
            self.db.conn.execute(
                "select response_code, count(*) from transactions where created_us >= ? "
                "group by response_code",
                (since_us,),
            ).fetchall()
        )
        return {"by_state": by_state, "by_response_code": by_code}

    def count_legs(self) -> int:
        return int(self.db.conn.execute("select count(*) from legs").fetchone()[0])


class JournalWriter:
    """The single writer: legs arrive on a channel and are committed in groups."""

    def __init__(self, journal: Journal, *, batch: int = 256) -> None:
        self.journal = journal
        self.batch = batch
        self._send, self._receive = trio.open_memory_channel[tuple[Leg, trio.Event | None]](
            1_000_000
        )
        self._failed: JournalError | None = None
        self._errors: dict[int, JournalError] = {}
        self.committed = 0
        self.batches = 0
        self._finished = trio.Event()

    @property
    def queue_depth(self) -> int:
        return int(self._send.statistics().current_buffer_used)

    def record(self, *legs: Leg) -> None:
        """Enqueue without waiting (legs that need no write-ahead)."""
        if self._failed is not None:
            raise self._failed
        for leg in legs:
            self._send.send_nowait((leg, None))

    async def commit(self, *legs: Leg) -> None:
        """Enqueue and wait until committed: the write-ahead rule."""
        if self._failed is not None:
            raise self._failed
        done = trio.Event()
        for leg in legs[:-1]:
            self._send.send_nowait((leg, None))
        self._send.send_nowait((legs[-1], done))
        await done.wait()
        error = self._errors.pop(id(done), None)
        if error is not None:
            raise error

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await self._loop()
        finally:
            self._finished.set()

    async def _loop(self) -> None:
        receive = self._receive
        async for first in receive:
            items = [first]
            while len(items) < self.batch:
                try:
                    items.append(receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            legs = [leg for leg, _ in items]
            error: JournalError | None = None
            try:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self.journal.write_batch, legs)
                self.committed += len(legs)
                self.batches += 1
            except JournalError as exc:
                error = exc
            except Exception as exc:
                error = JournalError(f"journal write failed: {exc}")
            for _, done in items:
                if done is not None:
                    if error is not None:
                        self._errors[id(done)] = error
                    done.set()

    async def aclose(self) -> None:
        """Stop taking legs; returns once every queued leg is committed."""
        await self._send.aclose()
        await self._finished.wait()
