"""One simulator's ledger: card balances and every request with its decision, in SQLite.

Tables (sqlite-utils creates them; WAL mode):

    cards         pan_token (key), pan_masked, network, balance, currency
    transactions  one row per request answered or not: mti, processing_code,
                  stan, rrn, transmission_time (F7), acquirer_id (F32),
                  terminal, merchant, pan_token, pan_masked, amount, currency,
                  response_code, auth_code, reason, request_time, answer_time,
                  business_day, balance_change, reversed, reversed_amount,
                  original_id (a reversal's row -> its original)

Invariants:
- A card is known by its PAN token (switch.vault, shared with the switch) and
  masked PAN only: no clear PAN, CVV2, PIN block, track data or CAVV is ever
  written here.
- The decision, the ledger row and the balance change happen in one
  ``BEGIN IMMEDIATE`` transaction: the card's state is read, the caller's pure
  decision function runs, the row and the balance update are written, then
  COMMIT. Concurrent requests for one card therefore see each other's debits
  and can never overdraw it, even from several processes.
- The business day is the UTC date of the request.

The simulator calls the ledger on its trio thread (short transactions under
WAL with synchronous=NORMAL); a simulator is a test double, so it trades a
little event-loop latency for decisions made in arrival order. The requests
that arrive together (one read from a connection) are decided in one
:meth:`Ledger.batch` -- one COMMIT for all of them, each request still
atomic on its own (a SAVEPOINT) -- and answer times are written in groups
(:meth:`Ledger.answered` queues, :meth:`Ledger.flush` writes), which is where
most of a simulator's CPU went.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from simulators.cardbook import CardBook
from simulators.decisions import CardState, Decision, Original
from switch.cards import mask_pan
from switch.messages import (
    F_ACQUIRER_ID,
    F_AMOUNT,
    F_CURRENCY,
    F_MERCHANT,
    F_ORIGINAL_DATA,
    F_PAN,
    F_PROCESSING_CODE,
    F_RRN,
    F_STAN,
    F_TERMINAL,
    F_TRANSMISSION_TIME,
    original_mti,
)
from switch.vault import Vault
from switch.walcheckpoint import WalCheckpointer, begin_immediate, manual_checkpoints

__all__ = ["Ledger", "iso_utc"]


def iso_utc(when: dt.datetime) -> str:
    """ISO 8601 UTC with microseconds, e.g. ``2025-03-01T10:00:00.000000+00:00``."""
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


class Ledger:
    __slots__ = ("_batch", "_checkpointer", "_unflushed", "commits", "db", "path", "vault")

    def __init__(self, db: sqlite_utils.Database, vault: Vault, path: Path | None) -> None:
        self.db = db
        self.vault = vault
        self.path = path
        self._batch = False
        self._unflushed: list[tuple[str, int]] = []  # (answer_time, row id) not written yet
        self._checkpointer = WalCheckpointer(path) if path is not None else None
        self.commits = 0  # COMMITs so far: how a server knows when to checkpoint

    @classmethod
    def open(cls, path: Path, vault: Vault, cards: CardBook | None = None) -> Ledger:
        """Open (creating) the ledger and add any card of ``cards`` it does not hold yet.

        A card already in the ledger keeps its balance: the card book seeds, the
        ledger remembers.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        ledger = cls(sqlite_utils.Database(conn), vault, path)
        ledger._create()
        if cards is not None:
            ledger.add_cards(cards)
        # From here on every write starts with begin_immediate, which waits for
        # the lock (a checkpoint's RESTART) in 0.1 ms steps, never SQLite's
        # 1-2-5-10 ms ones: the event loop waits in it (switch.walcheckpoint).
        conn.execute("PRAGMA busy_timeout=0")
        return ledger

    def close(self) -> None:
        self.flush()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.db.conn.close()

    def manual_checkpoints(self) -> None:
        """Commits stop checkpointing the WAL: a server calls :meth:`checkpoint`
        from a thread instead (why: :mod:`switch.walcheckpoint`)."""
        manual_checkpoints(self.db.conn)

    def checkpoint(self, restart_frames: int) -> int:
        """Checkpoint the WAL on a connection of its own (any one thread); its frames."""
        if self._checkpointer is None:
            return 0
        return self._checkpointer.checkpoint(restart_frames)

    def _create(self) -> None:
        self.db.table("cards").create(
            {
                "pan_token": str,
                "pan_masked": str,
                "network": str,
                "balance": int,
                "currency": str,
            },
            pk="pan_token",
            if_not_exists=True,
        )
        txns = self.db.table("transactions")
        txns.create(
            {
                "id": int,
                "mti": str,
                "processing_code": str,
                "stan": str,
                "rrn": str,
                "transmission_time": str,
                "acquirer_id": str,
                "terminal": str,
                "merchant": str,
                "pan_token": str,
                "pan_masked": str,
                "amount": int,
                "currency": str,
                "response_code": str,
                "auth_code": str,
                "reason": str,
                "request_time": str,
                "answer_time": str,
                "business_day": str,
                "balance_change": int,
                "reversed": int,
                "reversed_amount": int,
                "original_id": int,
            },
            pk="id",
            if_not_exists=True,
            defaults={"reversed": 0, "reversed_amount": 0, "balance_change": 0},
        )
        for columns in (
            ["pan_token", "business_day"],
            ["stan", "transmission_time"],
            ["rrn", "terminal"],
            ["business_day"],
        ):
            txns.create_index(columns, if_not_exists=True)

    def add_cards(self, cards: CardBook) -> None:
        rows = [
            {
                "pan_token": self.vault.token(c.pan),
                "pan_masked": c.masked,
                "network": c.network,
                "balance": c.balance,
                "currency": c.currency,
            }
            for c in cards
        ]
        with self._transaction():
            self.db.table("cards").insert_all(rows, ignore=True)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Decide several requests under one COMMIT (each still atomic: a SAVEPOINT)."""
        if self._batch:
            yield
            return
        conn = self.db.conn
        begin_immediate(conn)
        self._batch = True
        try:
            yield
            self._write_answered(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            self._batch = False
        conn.execute("COMMIT")
        self.commits += 1

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        if self._batch:
            conn.execute("SAVEPOINT request")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO request")
                conn.execute("RELEASE request")
                raise
            conn.execute("RELEASE request")
            return
        begin_immediate(conn)
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self.commits += 1

    # -- reads -----------------------------------------------------------------------

    def balance(self, pan: str) -> int | None:
        row = self.db.execute(
            "SELECT balance FROM cards WHERE pan_token = ?", [self.vault.token(pan)]
        ).fetchone()
        return None if row is None else int(row[0])

    def row(self, row_id: int) -> dict[str, Any]:
        return dict(self.db.table("transactions").get(row_id))

    def rows(self, where: str = "1", params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.flush()  # answer times noted but not written yet: a reader sees them too
        return list(self.db.table("transactions").rows_where(where, params or {}, order_by="id"))

    def _state(self, conn: sqlite3.Connection, token: str, day: str, daily: bool) -> CardState:
        row = conn.execute("SELECT balance FROM cards WHERE pan_token = ?", [token]).fetchone()
        balance = int(row[0]) if row else 0
        if not daily:  # the day's spend is a sum over the day's rows: only when a limit asks
            return CardState(balance=balance)
        # The day's purchases (0100/0200 debits) less what reversals released; a
        # reversal that takes a refund back debits the card but buys nothing.
        spent = conn.execute(
            "SELECT COALESCE(SUM(-balance_change - reversed_amount), 0) FROM transactions "
            "WHERE pan_token = ? AND business_day = ? AND balance_change < 0 "
            "AND substr(mti, 1, 2) IN ('01', '02')",
            [token, day],
        ).fetchone()[0]
        return CardState(balance=balance, spent_today=int(spent))

    # -- writes ----------------------------------------------------------------------

    def authorize(
        self,
        request: Mapping[str, str],
        now: dt.datetime,
        decide: Callable[[CardState], Decision],
        *,
        daily: bool = True,
    ) -> tuple[int, Decision]:
        """Read the card's state, decide, record the row and the balance change: one transaction.

        ``daily=False`` (a card without a daily limit) skips summing the day's spend.
        """
        pan = request.get(F_PAN, "")
        token = self.vault.token(pan) if pan else ""
        day = now.astimezone(dt.UTC).date().isoformat()
        with self._transaction() as conn:
            decision = decide(self._state(conn, token, day, daily))
            row_id = self._insert(conn, request, now, decision, token=token, pan=pan)
            if decision.balance_change:
                conn.execute(
                    "UPDATE cards SET balance = balance + ? WHERE pan_token = ?",
                    [decision.balance_change, token],
                )
        return row_id, decision

    def reverse(
        self,
        request: Mapping[str, str],
        now: dt.datetime,
        decide: Callable[[Original | None], Decision],
    ) -> tuple[int, Decision]:
        """Find the original, decide, record the reversal and release: one transaction."""
        with self._transaction() as conn:
            found = self._find_original(conn, request)
            original = None
            if found is not None:
                original = Original(
                    row_id=found["id"],
                    response_code=found["response_code"] or "",
                    amount=found["amount"] or 0,
                    balance_change=found["balance_change"] or 0,
                    reversed=bool(found["reversed"]),
                )
            decision = decide(original)
            pan = request.get(F_PAN, "")
            token = found["pan_token"] if found else (self.vault.token(pan) if pan else "")
            row_id = self._insert(
                conn,
                request,
                now,
                decision,
                token=token,
                pan=pan,
                masked=found["pan_masked"] if found else None,
                original_id=original.row_id if original else None,
            )
            if original is not None and decision.approved and decision.balance_change:
                conn.execute(
                    "UPDATE transactions SET reversed = 1, reversed_amount = ? WHERE id = ?",
                    [abs(decision.balance_change), original.row_id],
                )
                conn.execute(
                    "UPDATE cards SET balance = balance + ? WHERE pan_token = ?",
                    [decision.balance_change, token],
                )
        return row_id, decision

    def record(self, request: Mapping[str, str], now: dt.datetime, decision: Decision) -> int:
        """A row for a request decided without card state (format errors, 0800)."""
        pan = request.get(F_PAN, "")
        token = self.vault.token(pan) if pan.isdigit() else ""
        with self._transaction() as conn:
            return self._insert(conn, request, now, decision, token=token, pan=pan)

    def answered(self, row_id: int, when: dt.datetime) -> None:
        """Note when row ``row_id``'s answer went out; written by the next batch or flush."""
        self._unflushed.append((iso_utc(when), row_id))

    @property
    def unflushed(self) -> int:
        return len(self._unflushed)

    def flush(self) -> None:
        """Write the answer times noted so far (one transaction)."""
        if self._unflushed:
            with self._transaction() as conn:
                self._write_answered(conn)

    def _write_answered(self, conn: sqlite3.Connection) -> None:
        if self._unflushed:
            pending, self._unflushed = self._unflushed, []
            conn.executemany("UPDATE transactions SET answer_time = ? WHERE id = ?", pending)

    def _insert(
        self,
        conn: sqlite3.Connection,
        request: Mapping[str, str],
        now: dt.datetime,
        decision: Decision,
        *,
        token: str,
        pan: str,
        masked: str | None = None,
        original_id: int | None = None,
    ) -> int:
        amount = request.get(F_AMOUNT, "")
        row = {
            "mti": request.get("t", ""),
            "processing_code": request.get(F_PROCESSING_CODE, ""),
            "stan": request.get(F_STAN, ""),
            "rrn": request.get(F_RRN, ""),
            "transmission_time": request.get(F_TRANSMISSION_TIME, ""),
            "acquirer_id": request.get(F_ACQUIRER_ID, ""),
            "terminal": request.get(F_TERMINAL, ""),
            "merchant": request.get(F_MERCHANT, ""),
            "pan_token": token,
            "pan_masked": masked if masked is not None else mask_pan(pan),
            "amount": int(amount) if amount.isdigit() else 0,
            "currency": request.get(F_CURRENCY, ""),
            "response_code": decision.response_code,
            "auth_code": decision.auth_code or "",
            "reason": decision.reason,
            "request_time": iso_utc(now),
            "business_day": now.astimezone(dt.UTC).date().isoformat(),
            "balance_change": decision.balance_change,
            "original_id": original_id,
        }
        cursor = conn.execute(
            f"INSERT INTO transactions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
        return int(cursor.lastrowid or 0)

    def _find_original(
        self, conn: sqlite3.Connection, request: Mapping[str, str]
    ) -> dict[str, Any] | None:
        """By F90 (original MTI, STAN, F7, and F32 when given), else by F37 + F41."""
        f90 = request.get(F_ORIGINAL_DATA, "")
        if len(f90) >= 20 and f90[:20].isdigit():
            mti, stan, f7 = f90[0:4], f90[4:10], f90[10:20]
            acquirer = f90[20:31].lstrip("0")
            rows = conn.execute(
                "SELECT * FROM transactions WHERE stan = ? AND transmission_time = ? "
                "AND mti NOT LIKE '04%' AND mti NOT LIKE '08%' ORDER BY id DESC",
                [stan, f7],
            )
        else:
            rrn, terminal = request.get(F_RRN), request.get(F_TERMINAL, "")
            if not rrn:
                return None
            mti, acquirer = "", ""
            rows = conn.execute(
                "SELECT * FROM transactions WHERE rrn = ? AND terminal = ? "
                "AND mti NOT LIKE '04%' AND mti NOT LIKE '08%' ORDER BY id DESC",
                [rrn, terminal],
            )
        names = [d[0] for d in rows.description]
        for values in rows:
            found = dict(zip(names, values, strict=True))
            if mti and original_mti(found["mti"]) != original_mti(mti):
                continue
            if acquirer and found["acquirer_id"] and found["acquirer_id"].lstrip("0") != acquirer:
                continue
            return found  # the latest request with these keys
        return None

    def settlement_rows(self, day: str) -> list[dict[str, Any]]:
        """The business day's authorization, financial and reversal rows, in arrival order."""
        return self.rows(
            "business_day = :day AND substr(mti, 1, 2) IN ('01', '02', '04')", {"day": day}
        )
