"""The journal: every leg of every transaction, in SQLite, written by one task.

What this module owns: the journal schema, the rule by which legs update the
``transactions`` table, the queries the daemon and the operator tools run, and
the single writer (:class:`JournalWriter`) that commits legs in groups.

Schema (one SQLite file, WAL, ``synchronous=NORMAL``; ``Journal.open`` creates
it and is idempotent)::

    legs          one row per leg
      id INTEGER PRIMARY KEY, txn_id, leg, time_us, link, mti, stan, rrn, f7,
      terminal, merchant, pan_masked, pan_token, pan_enc BLOB, amount,
      currency, processing_code, response_code, auth_code, latency_us,
      original_txn, state, note, replacement_amount
      index: txn_id (a leg is found through its transaction: every search
      the daemon and the operator tools run goes to ``transactions`` first,
      so further leg indexes would cost each insert and serve no query)
      replacement_amount: on the acquirer_in and issuer_out legs of a
      partial reversal only, the minor units the acquirer says were spent
      (F95's first 12 digits), so crash recovery re-sends the reversal as
      partial; NULL on every other leg. ``Journal.open`` adds the column to
      a file made before it (its old rows read back with NULL).

    transactions  one row per switch transaction, with its current state
      txn_id PRIMARY KEY, created_us, updated_us, listener, link, mti, stan,
      rrn, f7, terminal, merchant, pan_masked, pan_token, amount, currency,
      processing_code, response_code, auth_code, state, issuer_stan,
      issuer_rrn, issuer_f7, latency_us, original_txn, reversed_by
      indexes: (terminal, stan); rrn; pan_token; created_us; state

Times are wall-clock microseconds since the epoch, passed in by the caller
(nothing here reads a clock). Amounts are minor units. Leg kinds are
:data:`LEG_KINDS`, states are :data:`STATES`; anything else is refused.

How a leg updates its transaction (``write_batch``, ONE SQL transaction per
batch, legs applied in order; consecutive legs of one transaction, such as the
two of a ``commit()``, are folded into one upsert with the same result):

- The first leg of a ``txn_id`` creates the row (``created_us`` = its time,
  state ``in_flight`` unless the leg sets one) with its descriptive fields.
- Later legs fill descriptive columns that are still NULL (terminal,
  merchant, masked PAN, token, amount, currency, processing code, mti,
  original_txn) and always move ``updated_us`` forward.
- Acquirer legs (``acquirer_in``/``acquirer_out``) own the acquirer side:
  ``listener`` (the leg's link), ``stan`` and ``f7`` are the acquirer's F11
  and F7; their ``rrn`` becomes the transaction's RRN (the acquirer's F37 or
  the one the switch assigned). ``acquirer_out`` sets ``response_code`` and
  ``auth_code``: the transaction shows what the acquirer heard.
- Issuer legs (``issuer_out``/``issuer_in``) set ``link`` (the last issuer
  link used) and fill ``issuer_stan``/``issuer_rrn``/``issuer_f7`` - the
  values the issuer knows, which a reversal must quote. ``issuer_in`` fills
  ``response_code``/``auth_code`` only while the acquirer answer is not yet
  recorded.
- SAF, late, unmatched and reversal legs change only ``state``,
  ``latency_us`` and ``updated_us``: the issuer's answer to a reversal is not
  the transaction's response code.
- A leg's ``latency_us`` replaces the transaction's; a leg's ``state``
  becomes the transaction's state.
- Reversals: a leg with ``original_txn`` and a reversing state
  (``reversed``, ``partially_reversed``, ``timed_out_reversed``) also sets
  that state on the ORIGINAL transaction and records this leg's ``txn_id``
  in the original's ``reversed_by``. So an acquirer reversal R of O ends
  with R.state = O.state = "reversed" and O.reversed_by = R. Other states
  (``reversal_pending``, ``declined``) do not touch the original. A SAF
  reversal journaled on the original's own txn_id just sets its state.

A request's row may wait for its outcome. The daemon's write-ahead commit
(``JournalWriter.commit(..., row_later=True)``: the ``acquirer_in`` and
``issuer_out`` legs of a request about to be sent) puts the LEGS on disk
and holds their upsert in memory; the transaction's next legs (the answer,
the timeout, the reject) are then folded with them into ONE upsert. The
row of a request in flight appears when its outcome is journaled (or when
the writer closes); the legs, which are the write-ahead record, are on disk
before the send either way. Holding is worth it: a row written twice costs
two upserts through six indexes, the first rewritten milliseconds later.
After a crash, held legs are legs without a row: ``JournalWriter.run``
folds them into rows (:meth:`Journal.repair_rows`) before recovery reads
``in_doubt``. The search is bounded by ``journal_state.held_since``, a txn
id (ids begin with their creation time) at or below every id held, moved
forward once every ``_HELD_SINCE_STEP_US``.

In doubt (:meth:`Journal.in_doubt`): a transaction whose ``issuer_out`` leg
is committed, that has no ``issuer_in``, ``late`` or ``recovered`` leg, and
whose state is still ``in_flight``. Every other state means the switch
reached a decision, and where that decision owes the issuer a reversal
(timed_out, reversal_pending) the daemon puts it in the SAF before the leg
carrying the state is journaled. A ``recovered`` leg marks a transaction
whose reversal crash recovery already queued, so a second restart does not
report it again (the SAF's idempotent add would absorb it anyway).

Never a clear PAN, CVV2, PIN block or track data: the PAN is masked (6+4),
tokenised (keyed HMAC) and, on issuer-out legs only, AES-GCM encrypted for
crash recovery. As defence in depth, ``write_batch`` (and the writer, before
queueing) refuses a leg whose free-text columns (rrn, terminal, merchant,
pan_masked, note) hold a 13-19 digit run that passes Luhn. The writer
checks each leg once, when it is queued.

Connections: queries use ``Journal.db`` (sqlite-utils); ``write_batch`` uses
its own connection, so a reader never sees a half-written batch and the
write-ahead promise ("committed") means visible to any other connection.
"""

from __future__ import annotations

import logging
import math
import operator
import queue
import re
import sqlite3
import threading
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypedDict, Unpack

import sqlite_utils
import trio

from switch.cards import luhn_valid
from switch.errors import JournalError
from switch.walcheckpoint import WalCheckpointer, begin_immediate, manual_checkpoints

__all__ = [
    "LEG_KINDS",
    "STATES",
    "Journal",
    "JournalWriter",
    "Leg",
    "LegFilters",
    "TxnFilters",
    "check_leg",
]

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
log = logging.getLogger("switch.journal")

_REVERSING = frozenset({"reversed", "partially_reversed", "timed_out_reversed"})
_ACQUIRER_LEGS = frozenset({"acquirer_in", "acquirer_out"})
_ISSUER_LEGS = frozenset({"issuer_out", "issuer_in"})
# A PAN standing alone in text: 13-19 digits not glued to other digits.
_PAN_RUN = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")
_TEXT_COLUMNS = ("rrn", "terminal", "merchant", "pan_masked", "note")


@dataclass(slots=True, kw_only=True)
class Leg:
    """One message (or event) of a transaction, as journaled.

    Treat a leg as immutable once built: it is checked when queued and
    written later. Not ``frozen`` only for speed -- a frozen dataclass's
    ``__init__`` sets each of these 24 fields through ``object.__setattr__``
    (about 4x the cost; four to six legs are built per transaction).
    """

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
    # Last, as ``add_column`` puts it in a file made before it: one column order.
    replacement_amount: int | None = None


_LEG_COLUMNS = tuple(f.name for f in fields(Leg))
_LEG_TYPES: dict[str, Any] = {
    name: {
        "time_us": int,
        "amount": int,
        "latency_us": int,
        "pan_enc": bytes,
        "replacement_amount": int,
    }.get(name, str)
    for name in _LEG_COLUMNS
}
_TXN_COLUMNS: dict[str, Any] = {
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
_LEG_INDEXES = (["txn_id"],)
_TXN_INDEXES = (["terminal", "stan"], ["rrn"], ["pan_token"], ["created_us"], ["state"])
# Columns any later leg may fill while still NULL.
_FILL = (
    "terminal",
    "merchant",
    "pan_masked",
    "pan_token",
    "amount",
    "currency",
    "processing_code",
    "mti",
    "original_txn",
)


class TxnFilters(TypedDict, total=False):
    """Filters of ``find_transactions`` (each ``column = value``; None means any).

    ``since_us``/``until_us`` bound the creation time: since <= t < until.
    """

    rrn: str | None
    stan: str | None
    terminal: str | None
    merchant: str | None
    pan_masked: str | None
    pan_token: str | None
    response_code: str | None
    state: str | None
    link: str | None
    mti: str | None
    f7: str | None
    since_us: int | None
    until_us: int | None


class LegFilters(TxnFilters, total=False):
    """Filters of ``find_legs``: those of a transaction, plus the leg kind and txn id."""

    leg: str | None
    txn_id: str | None


_TXN_FILTERS = frozenset(TxnFilters.__annotations__)
_LEG_FILTERS = frozenset(LegFilters.__annotations__)


# Texts already found clean (merchant ids, masked PANs, notes repeat from leg
# to leg and card to card): a dict lookup instead of a search. Bounded.
_CLEAN: dict[str, None] = {}
_CLEAN_LIMIT = 4096


def _holds_pan(text: str | None) -> bool:
    # Shorter than any PAN (an RRN, a terminal id): nothing to search.
    if text is None or len(text) < 13 or text in _CLEAN:
        return False
    if any(luhn_valid(m) for m in _PAN_RUN.findall(text)):
        return True
    if len(_CLEAN) >= _CLEAN_LIMIT:
        _CLEAN.clear()
    _CLEAN[text] = None
    return False


def check_leg(leg: Leg) -> None:
    """Refuse a leg the journal must not store; JournalError says why (never the value)."""
    if leg.leg not in LEG_KINDS:
        raise JournalError(f"unknown leg kind {leg.leg!r}")
    if leg.state is not None and leg.state not in STATES:
        raise JournalError(f"unknown transaction state {leg.state!r}")
    for column in _TEXT_COLUMNS:
        if _holds_pan(getattr(leg, column)):
            raise JournalError(
                f"leg {leg.leg} of {leg.txn_id}: {column} holds a card number in clear"
            )


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread
    # off because the writer's own thread writes on a connection opened here.
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("pragma busy_timeout = 5000")
    conn.execute("pragma journal_mode = wal")
    conn.execute("pragma synchronous = NORMAL")
    return conn


class Journal:
    """Synchronous access to the journal file: ``write_batch`` for the writer, and queries."""

    def __init__(self, db: sqlite_utils.Database, writer: sqlite3.Connection, path: Path) -> None:
        self.db = db  # queries (read connection)
        self.path = path
        self._writer = writer
        self._checkpointer = WalCheckpointer(path)
        # Write-ahead runs whose upsert waits for the transaction's next legs,
        # by txn id, in the order held (module docstring).
        self._held: dict[str, list[Leg]] = {}
        self._held_since = ""  # journal_state.held_since as last written
        self._last_us = 0  # the latest leg time written (this module reads no clock)

    @classmethod
    def open(cls, path: str | Path) -> Journal:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite_utils.Database(_connect(p))
            _create_schema(db)
            writer = _connect(p)
            # The writer's own page cache: hot index pages stay in memory
            # rather than being read back per insert (default 2 MiB).
            writer.execute("pragma cache_size = -16384")
            # The writer waits for the lock in begin_immediate's 0.1 ms steps,
            # never in SQLite's 1-2-5-10 ms ones (switch.walcheckpoint).
            writer.execute("pragma busy_timeout = 0")
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {p}: {exc}") from exc
        return cls(db, writer, p)

    def close(self) -> None:
        self._checkpointer.close()
        self._writer.close()
        self.db.conn.close()

    def manual_checkpoints(self) -> None:
        """The writer connection stops checkpointing the WAL on commit: call
        :meth:`checkpoint` instead, from a thread that may block (why:
        :mod:`switch.walcheckpoint`)."""
        manual_checkpoints(self._writer)

    def checkpoint(self, restart_frames: int = 0) -> None:
        """Copy the WAL back into the database; start it over once it holds
        ``restart_frames`` frames (0: every time). From a thread that may
        block; a RESTART holds the write lock, so ``write_now`` finds it busy
        and the writer's thread waits (:mod:`switch.walcheckpoint`)."""
        try:
            self._checkpointer.checkpoint(restart_frames)
        except sqlite3.Error as exc:
            raise JournalError(f"journal checkpoint failed: {exc}") from exc

    @property
    def held(self) -> int:
        """Transactions whose row waits for their next legs."""
        return len(self._held)

    def write_rows_held(self) -> None:
        """Write the row of every held transaction now (the writer, closing)."""
        if self._held:
            self._write_checked([])

    # -- writing ------------------------------------------------------------------

    def write_batch(self, legs: Sequence[Leg]) -> None:
        """Insert ``legs`` and apply them to ``transactions`` in ONE SQL transaction."""
        for leg in legs:
            check_leg(leg)
        self._write_checked(legs)

    def write_now(self, legs: Sequence[Leg], hold: Collection[str] = ()) -> bool:
        """``write_batch`` for legs through :func:`check_leg` that never waits for
        the lock: False, with nothing written, when another connection (the
        SAF's) holds it. For a caller that must not block (the event loop)."""
        return self._write_checked(legs, hold, wait=False)

    def _write_checked(
        self, legs: Sequence[Leg], hold: Collection[str] = (), *, wait: bool = True
    ) -> bool:
        """``write_batch`` for legs already through :func:`check_leg` (the writer's).

        ``hold``: txn ids whose run in ``legs`` (a write-ahead: the txn's first
        legs) is inserted as legs now and upserted with the transaction's next
        run; ``legs`` empty writes every held row. ``wait`` False: give up
        (False, nothing written) rather than wait when the lock is held.
        """
        flush = not legs
        if flush and not self._held:
            return True
        conn = self._writer
        try:
            # IMMEDIATE takes the write lock up front: no deadlock with the SAF's
            # connection upgrading a read to a write on the same file.
            if wait:
                begin_immediate(conn)
            else:
                conn.execute("begin immediate")
        except sqlite3.Error as exc:
            if not wait and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                return False
            raise JournalError(f"journal write failed: {exc}") from exc
        held = self._held
        try:
            if legs:
                conn.executemany(_INSERT_LEG, [_row(leg) for leg in legs])
                self._last_us = max(self._last_us, legs[-1].time_us)
            for run in _runs(legs):
                txn_id = run[0].txn_id
                if txn_id in hold and txn_id not in held:
                    held[txn_id] = run
                    continue
                for leg in run:  # a reversal updates its original's row: write that first
                    if leg.original_txn in held:
                        _apply(conn, held.pop(leg.original_txn))
                earlier = held.pop(txn_id, None)
                _apply(conn, earlier + run if earlier else run)
            if flush:
                for run in held.values():
                    _apply(conn, run)
                held.clear()
            self._mark_held_since(conn)
            conn.execute("commit")
        except sqlite3.Error as exc:
            # ``held`` is not restored: a failed write stops the writer for good,
            # and the legs of every held run are on disk for the next start's
            # repair_rows (those of this batch were never committed).
            if conn.in_transaction:
                conn.execute("rollback")
            raise JournalError(f"journal write failed: {exc}") from exc
        return True

    def _mark_held_since(self, conn: sqlite3.Connection) -> None:
        """Keep ``journal_state.held_since`` at or below every held txn id.

        The first held is the oldest, give or take the milliseconds between a
        request's id and its write-ahead; the mark sits a step below it (or
        below now) and is rewritten once a step, not per commit.
        """
        oldest = next(iter(self._held), None)
        if oldest is None:
            since_us = self._last_us
        elif _TIMED_ID.match(oldest):
            since_us = int(oldest[:13], 16)
        else:
            since_us = 0  # an id that says nothing of its time: search everything
        mark = f"{max(0, since_us - _HELD_SINCE_STEP_US):013x}"
        current = self._held_since
        if current and current <= mark < f"{int(current, 16) + _HELD_SINCE_STEP_US:013x}":
            return
        conn.execute(
            "insert into journal_state (key, value) values ('held_since', ?)"
            " on conflict (key) do update set value = excluded.value",
            (mark,),
        )
        self._held_since = mark

    def repair_rows(self) -> int:
        """Fold legs that have no transaction row into rows; how many transactions.

        After a crash these are the write-ahead legs the writer held (never
        more than the ids from ``journal_state.held_since`` on are searched).
        """
        conn = self._writer
        try:
            row = conn.execute(
                "select value from journal_state where key = 'held_since'"
            ).fetchone()
            cursor = conn.execute(
                f"select {', '.join(_LEG_COLUMNS)} from legs l where l.txn_id >= ?"
                " and not exists (select 1 from transactions t where t.txn_id = l.txn_id)"
                " order by l.id",
                (row[0] if row else "",),
            )
            legs = [Leg(**dict(zip(_LEG_COLUMNS, values, strict=True))) for values in cursor]
            if not legs:
                return 0
            begin_immediate(conn)
            for run in _runs(legs):
                _apply(conn, run)
            conn.execute("commit")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("rollback")
            raise JournalError(f"journal repair failed: {exc}") from exc
        return len({leg.txn_id for leg in legs})

    # -- queries ------------------------------------------------------------------

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.db.conn.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def columns(self, table: str) -> list[str]:
        """The columns of ``table`` (``transactions``, ``legs``) in ``select *`` order."""
        return [c.name for c in self.db.table(table).columns]

    def transaction(self, txn_id: str) -> dict[str, Any] | None:
        rows = self._rows("select * from transactions where txn_id = ?", (txn_id,))
        return rows[0] if rows else None

    def legs_of(self, txn_id: str) -> list[dict[str, Any]]:
        """Every leg of a transaction, in the order they happened."""
        return self._rows("select * from legs where txn_id = ? order by time_us, id", (txn_id,))

    def find_transactions(
        self, *, limit: int = 100, **filters: Unpack[TxnFilters]
    ) -> list[dict[str, Any]]:
        """Transactions matching every given filter (see :class:`TxnFilters`), newest first."""
        where, args = _where(filters, "created_us", allowed=_TXN_FILTERS)
        return self._rows(
            f"select * from transactions{where} order by created_us desc, txn_id desc limit ?",
            [*args, limit],
        )

    def find_legs(self, *, limit: int = 100, **filters: Unpack[LegFilters]) -> list[dict[str, Any]]:
        """Legs matching every given filter (see :class:`LegFilters`), newest first."""
        where, args = _where(filters, "time_us", allowed=_LEG_FILTERS)
        return self._rows(
            f"select * from legs{where} order by time_us desc, id desc limit ?", [*args, limit]
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
        """The acquirer request a reversal or a duplicate refers to, newest first.

        By F41 + F11 (+ F7) (+ MTI), or by F41 + F37. Reversal transactions
        (MTI 04xx) are never an original. None when neither STAN nor RRN is given.
        """
        if stan is None and rrn is None:
            return None
        clauses = ["terminal = ?", "substr(mti, 1, 2) != '04'"]
        args: list[Any] = [terminal]
        for column, value in (("stan", stan), ("f7", f7), ("mti", mti), ("rrn", rrn)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        rows = self._rows(
            f"select * from transactions where {' and '.join(clauses)} "
            "order by created_us desc limit 1",
            args,
        )
        return rows[0] if rows else None

    def in_doubt(self) -> list[dict[str, Any]]:
        """Requests that reached an issuer (issuer_out committed) with no recorded outcome.

        One row per transaction, oldest first, with its latest issuer_out leg's
        issuer-side values (link, mti, stan, f7, rrn, amount, currency,
        processing_code, terminal, merchant, pan_enc, pan_masked, pan_token)
        and ``replacement_amount``, and the transaction's ``original_txn``:
        enough to build a reversal.
        (stan, f7, rrn are the issuer-side values; descriptive fields missing
        on the leg come from the transaction row.)
        """
        return self._rows(
            """
            select o.txn_id, o.time_us, o.link, o.mti, o.stan, o.f7, o.rrn,
                   coalesce(o.amount, t.amount) as amount,
                   coalesce(o.currency, t.currency) as currency,
                   coalesce(o.processing_code, t.processing_code) as processing_code,
                   coalesce(o.terminal, t.terminal) as terminal,
                   coalesce(o.merchant, t.merchant) as merchant,
                   o.pan_enc, o.replacement_amount,
                   coalesce(o.pan_masked, t.pan_masked) as pan_masked,
                   coalesce(o.pan_token, t.pan_token) as pan_token,
                   t.original_txn, t.state
            from legs o join transactions t on t.txn_id = o.txn_id
            where o.id = (select max(id) from legs l
                          where l.txn_id = o.txn_id and l.leg = 'issuer_out')
              and coalesce(t.state, 'in_flight') = 'in_flight'
              and not exists (select 1 from legs x where x.txn_id = o.txn_id
                              and x.leg in ('issuer_in', 'late', 'recovered'))
            order by o.time_us, o.id
            """
        )

    def stats(self, since_us: int = 0) -> dict[str, Any]:
        """Counts by state, response code and link, and latency percentiles (µs)."""
        conn = self.db.conn

        def counts(column: str) -> dict[str | None, int]:
            return dict(
                conn.execute(
                    f"select {column}, count(*) from transactions where created_us >= ? "
                    f"group by {column} order by {column}",
                    (since_us,),
                ).fetchall()
            )

        latencies = [
            int(r[0])
            for r in conn.execute(
                "select latency_us from transactions where created_us >= ? "
                "and latency_us is not null order by latency_us",
                (since_us,),
            )
        ]
        total = conn.execute(
            "select count(*) from transactions where created_us >= ?", (since_us,)
        ).fetchone()[0]
        return {
            "since_us": since_us,
            "transactions": int(total),
            "by_state": counts("state"),
            "by_response_code": counts("response_code"),
            "by_link": counts("link"),
            "latency_us": {
                "count": len(latencies),
                "p50": _percentile(latencies, 50),
                "p90": _percentile(latencies, 90),
                "p99": _percentile(latencies, 99),
                "max": latencies[-1] if latencies else None,
            },
        }

    def count_legs(self) -> int:
        return int(self.db.conn.execute("select count(*) from legs").fetchone()[0])


def _create_schema(db: sqlite_utils.Database) -> None:
    # Create-if-missing, index-if-missing: opening is idempotent and repairs
    # a file that lost an index.
    legs = db.table("legs")
    if not legs.exists():
        legs.create({"id": int, **_LEG_TYPES}, pk="id")
    else:  # a file made before a column was added: add it (NULL in the old rows)
        have = set(legs.columns_dict)
        for name, kind in _LEG_TYPES.items():
            if name not in have:
                legs.add_column(name, kind)
    for idx in _LEG_INDEXES:
        legs.create_index(idx, if_not_exists=True)
    state = db.table("journal_state")
    if not state.exists():
        state.create({"key": str, "value": str}, pk="key")
    txns = db.table("transactions")
    if not txns.exists():
        txns.create(_TXN_COLUMNS, pk="txn_id")
    for idx in _TXN_INDEXES:
        txns.create_index(idx, if_not_exists=True)


_row = operator.attrgetter(*_LEG_COLUMNS)
_INSERT_LEG = (
    f"insert into legs ({', '.join(_LEG_COLUMNS)}) values ({', '.join('?' for _ in _LEG_COLUMNS)})"
)
# A txn id that begins with its creation time (13 hex digits of microseconds).
_TIMED_ID = re.compile(r"[0-9a-f]{13}")
_HELD_SINCE_STEP_US = 60_000_000


def _runs(legs: Sequence[Leg]) -> list[list[Leg]]:
    """``legs`` cut into runs of consecutive legs of one transaction, in order."""
    runs: list[list[Leg]] = []
    for leg in legs:
        if runs and runs[-1][0].txn_id == leg.txn_id:
            runs[-1].append(leg)
        else:
            runs.append([leg])
    return runs


def _ops_of(kind: str) -> tuple[tuple[str, str, bool], ...]:
    """(transaction column, leg attribute, assign?) in the order a leg of ``kind`` applies them.

    Not assign means fill: the column takes the value only while still NULL.
    """
    ops = [(column, column, False) for column in _FILL]
    if kind in _ACQUIRER_LEGS:
        ops += [("listener", "link", False), ("stan", "stan", False), ("f7", "f7", False)]
        ops += [("rrn", "rrn", True)]
    elif kind in _ISSUER_LEGS:
        ops += [("link", "link", True), ("issuer_stan", "stan", False)]
        ops += [("issuer_rrn", "rrn", False), ("issuer_f7", "f7", False), ("rrn", "rrn", False)]
    else:
        ops += [("link", "link", False)]
    if kind == "acquirer_out":
        ops += [("response_code", "response_code", True), ("auth_code", "auth_code", True)]
    elif kind == "issuer_in":
        ops += [("response_code", "response_code", False), ("auth_code", "auth_code", False)]
    ops += [("latency_us", "latency_us", True)]
    return tuple(ops)


_OPS = {kind: _ops_of(kind) for kind in LEG_KINDS}
# Upsert SQL by shape (columns, which assign, whether the state is set): built once.
_UPSERTS: dict[tuple[tuple[str, ...], tuple[bool, ...], bool], str] = {}


def _upsert_sql(columns: tuple[str, ...], assigns: tuple[bool, ...], sets_state: bool) -> str:
    names = ["txn_id", "created_us", "updated_us", "state", *columns]
    sets = ["updated_us = max(coalesce(updated_us, 0), excluded.updated_us)"]
    sets += [
        f"{column} = excluded.{column}"
        if assign
        else f"{column} = coalesce({column}, excluded.{column})"
        for column, assign in zip(columns, assigns, strict=True)
    ]
    if sets_state:
        sets.append("state = excluded.state")
    return (
        f"insert into transactions ({', '.join(names)}) values ({', '.join('?' * len(names))})"
        f" on conflict(txn_id) do update set {', '.join(sets)}"
    )


def _apply(conn: sqlite3.Connection, run: Sequence[Leg]) -> None:
    """Upsert a run of legs of one transaction into its row (rules: module docstring).

    One ``insert ... on conflict do update`` for the whole run: applying the
    legs one by one is the same as applying their composition, because each
    leg either *fills* a column (``coalesce``: the first non-NULL value wins)
    or *assigns* it (the last value wins), and fill-then-assign is an assign,
    assign-then-fill an assign, fill-then-fill the first fill. A new row gets
    exactly the values the update would have given it (every filled or
    assigned column is NULL before). The update of a reversed original touches
    another row, so it commutes with this one and follows it, in leg order.
    """
    first = run[0]
    txn_id = first.txn_id
    ops: dict[str, tuple[bool, Any]] = {}  # column -> (assign?, value), never None
    state: str | None = None
    updated = first.time_us
    for leg in run:
        for column, attr, assign in _OPS[leg.leg]:
            value = getattr(leg, attr)
            if value is not None and (assign or column not in ops):
                ops[column] = (assign, value)
        if leg.state is not None:
            state = leg.state
        updated = max(updated, leg.time_us)
    shape = (tuple(ops), tuple(assign for assign, _ in ops.values()), state is not None)
    sql = _UPSERTS.get(shape)
    if sql is None:
        if len(_UPSERTS) >= 1024:
            _UPSERTS.clear()
        sql = _UPSERTS[shape] = _upsert_sql(*shape)
    conn.execute(
        sql, [txn_id, first.time_us, updated, state or "in_flight", *(v for _, v in ops.values())]
    )
    for leg in run:
        if leg.original_txn and leg.original_txn != txn_id and leg.state in _REVERSING:
            conn.execute(
                "update transactions set state = ?, reversed_by = ?,"
                " updated_us = max(coalesce(updated_us, 0), ?) where txn_id = ?",
                (leg.state, txn_id, leg.time_us, leg.original_txn),
            )


def _where(
    filters: Mapping[str, Any], time_column: str, *, allowed: frozenset[str]
) -> tuple[str, list[Any]]:
    # Column names are checked against our own filter names: never SQL from a caller.
    unknown = set(filters) - allowed
    if unknown:
        raise TypeError(f"unknown filter(s): {', '.join(sorted(unknown))}")
    clauses, args = [], []
    for name, value in filters.items():
        if value is None:
            continue
        if name == "since_us":
            clauses.append(f"{time_column} >= ?")
        elif name == "until_us":
            clauses.append(f"{time_column} < ?")
        else:
            clauses.append(f"{name} = ?")
        args.append(value)
    return (" where " + " and ".join(clauses)) if clauses else "", args


def _percentile(ordered: Sequence[int], pct: float) -> int | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


# -- the single writer (trio shell) --------------------------------------------------


class _Waiter:
    """A ``commit()`` caller waiting for its batch."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: JournalError | None = None

    def fail(self, error: JournalError) -> None:
        self.error = error
        self.done.set()


_Item = tuple[Leg, _Waiter | None]
_Job = tuple[list[Leg], set[str] | None]
_QUEUE_LIMIT = 1_000_000


class JournalWriter:
    """The single writer: legs are queued in memory and committed in groups.

    Each loop takes what is queued (at least one leg, at most ``batch``,
    never waiting to fill a batch: it only lets the tasks already runnable
    queue theirs first), writes it, then wakes the ``commit()`` callers of
    that batch. A write failure is sticky: the
    failing batch's waiters and everything still queued get the JournalError,
    later ``record``/``commit`` raise it, and ``run`` returns. A journal that
    cannot write must stop the switch sending to issuers (write-ahead), not
    retry into a failing disk. ``aclose`` flushes what is queued and stops.

    The queue is a plain deque, not a memory channel: one writer task and
    callers that never wait to queue need no more than a wake-up event.

    Where a batch is written: on the event loop itself (``inline``, the
    default) when the database lock is free - a commit in WAL mode with
    ``synchronous=NORMAL`` is page writes into the OS cache, no fsync, and
    costs less than handing it over - else by a thread of the writer's own,
    which waits for the lock. That thread, started by ``run`` and fed through
    a ``SimpleQueue`` (one ``run_sync_soon`` back; ``trio.to_thread`` costs
    several times that), also runs the WAL checkpoints, the only part of
    journaling that fsyncs: the writer connection never checkpoints on
    commit, the loop asks the thread for one every ``checkpoint_pages``
    (estimated) pages written. One transaction arriving alone then costs no
    thread hop, no futex and no wake-up socket.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        batch: int = 256,
        inline: bool = True,
        checkpoint_pages: int = 1000,
        restart_pages: int = 64_000,  # a WAL of ~256 MiB at most (why: switch.walcheckpoint)
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.journal = journal
        self.batch = batch
        self.inline = inline
        self.checkpoint_pages = checkpoint_pages
        self.restart_pages = restart_pages  # Journal.checkpoint: WAL length that restarts it
        self._pages = 0  # estimated WAL pages written since the last checkpoint request
        self._checkpoint_asked = False
        self.checkpoints = 0
        self.handed_over = 0  # batches the thread wrote (lock busy, or not inline)
        self._queue: deque[_Item] = deque()
        self._wake = trio.Event()
        self._closing = False  # aclose(): write what is queued, then stop
        self._stopped = False  # run() ended: refuse legs
        self.failed: JournalError | None = None
        self.committed = 0
        self.batches = 0
        self._started = False
        self._finished = trio.Event()
        # (legs, ids held) to write, ([], None) for a checkpoint, None to stop
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._hold: set[str] = set()  # txn ids whose row may wait (commit(row_later=True))
        self._written = trio.Event()
        self._write_error: BaseException | None = None

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def _enqueue(self, legs: Sequence[Leg], waiter: _Waiter | None) -> None:
        if self.failed is not None:
            raise self.failed
        if self._stopped or self._closing:
            raise JournalError("journal writer is stopped")
        for leg in legs:
            check_leg(leg)  # a bad leg fails its caller, not a whole batch
        queue = self._queue
        if len(queue) + len(legs) > _QUEUE_LIMIT:
            raise JournalError(f"journal queue full ({_QUEUE_LIMIT} legs)")
        for leg in legs[:-1]:
            queue.append((leg, None))
        queue.append((legs[-1], waiter))
        self._wake.set()

    def record(self, *legs: Leg) -> None:
        """Enqueue without waiting (legs that need no write-ahead); never blocks."""
        if legs:
            self._enqueue(legs, None)
        elif self.failed is not None:
            raise self.failed

    async def commit(self, *legs: Leg, row_later: bool = False) -> None:
        """Enqueue and return once committed: the write-ahead rule. Raises JournalError.

        ``row_later``: ``legs`` are their transaction's first and its next legs
        follow; the legs are committed, the transaction's row is written with
        those next legs (module docstring).
        """
        if not legs:
            await trio.lowlevel.checkpoint()
            return
        waiter = _Waiter()
        self._enqueue(legs, waiter)
        if row_later:
            self._hold.add(legs[0].txn_id)
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._started = True
        token = trio.lowlevel.current_trio_token()
        thread = threading.Thread(
            target=self._thread, args=(token,), name="journal-writer", daemon=True
        )
        thread.start()
        if self.inline:
            self.journal.manual_checkpoints()
        try:
            repaired = self.journal.repair_rows()
            if repaired:
                log.warning("journal: %d transaction row(s) rebuilt from their legs", repaired)
        except JournalError as exc:
            self.failed = JournalError(f"journal writer failed: {exc}")
            log.error("%s; refusing new legs", self.failed)
        task_status.started()
        try:
            if self.failed is None:
                await self._loop()
        finally:
            # Cancelled, failed or closed: nobody is left waiting forever.
            self._jobs.put(None)
            self._stop(self.failed or JournalError("journal writer stopped"))
            # A checkpoint may still be running there: the journal must not be
            # closed under it. (No batch is: the loop waits for each, shielded.)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.join)
            self._finished.set()

    def _thread(self, token: trio.lowlevel.TrioToken) -> None:
        """The writer's thread: write each batch handed over, report back to trio."""
        while (job := self._jobs.get()) is not None:
            legs, hold = job
            error: BaseException | None = None
            if hold is None:
                self._checkpoint()
                continue
            try:
                self.journal._write_checked(legs, hold)
            except BaseException as exc:  # reported to the writer task, which decides
                error = exc
            try:
                token.run_sync_soon(self._report, error)
            except trio.RunFinishedError:
                return

    def _checkpoint(self) -> None:
        try:
            self.journal.checkpoint(self.restart_pages)
        except JournalError as exc:  # the next one may succeed; the WAL only grows meanwhile
            log.warning("%s", exc)
        self.checkpoints += 1
        self._checkpoint_asked = False

    def _written_pages(self, legs: int) -> None:
        """Count a commit's WAL pages (about 4 per commit plus 1 per 4 legs:
        table and index leaves); past ``checkpoint_pages``, ask for a checkpoint."""
        if not self.inline:
            return  # the connection checkpoints itself on commit
        self._pages += 4 + legs // 4
        if self._pages >= self.checkpoint_pages and not self._checkpoint_asked:
            self._pages = 0
            self._checkpoint_asked = True
            self._jobs.put(([], None))

    def _report(self, error: BaseException | None) -> None:
        self._write_error = error
        self._written.set()

    async def _write(self, legs: list[Leg], hold: set[str]) -> None:
        """One thread hop: hand ``legs`` to the writer's thread and wait for its report."""
        self._written = trio.Event()
        self._jobs.put((legs, hold))
        await self._written.wait()
        if self._write_error is not None:
            raise self._write_error

    async def _loop(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._closing:
                    # Held rows are written before the writer stops (else the
                    # next start rebuilds them from their legs).
                    try:
                        with trio.CancelScope(shield=True):
                            await self._write([], set())
                    except JournalError as exc:
                        log.error("%s; the next start rebuilds the rows from their legs", exc)
                    return
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            # Let the tasks already runnable queue their legs first (answers
            # that arrived together commit together), and honour a cancel.
            await trio.lowlevel.checkpoint()
            items = [queue.popleft() for _ in range(min(len(queue), self.batch))]
            legs = [leg for leg, _ in items]
            try:
                # Shielded: a batch handed to the thread is finished and its
                # waiters told, even when the writer is being cancelled.
                with trio.CancelScope(shield=True):
                    hold = self._hold
                    if not (self.inline and self.journal.write_now(legs, hold)):
                        self.handed_over += 1
                        await self._write(legs, hold)
                for leg in legs:
                    hold.discard(leg.txn_id)
                self._written_pages(len(legs))
            except Exception as exc:
                error = exc if isinstance(exc, JournalError) else JournalError(str(exc))
                self.failed = JournalError(f"journal writer failed: {error}")
                log.error("%s; %d leg(s) lost, refusing new legs", self.failed, len(legs))
                for _, waiter in items:
                    if waiter is not None:
                        waiter.fail(error)
                return
            self.committed += len(legs)
            self.batches += 1
            for _, waiter in items:
                if waiter is not None:
                    waiter.done.set()

    def _stop(self, error: JournalError) -> None:
        """Fail everything still queued and refuse new legs (no checkpoint: no race)."""
        self._stopped = True
        queue = self._queue
        while queue:
            _, waiter = queue.popleft()
            if waiter is not None:
                waiter.fail(error)

    async def aclose(self) -> None:
        """Stop taking legs; return once every queued leg is committed (or failed)."""
        self._closing = True
        self._wake.set()
        if not self._started:  # nobody will ever write what is queued
            self._stop(JournalError("journal writer was never started"))
            return
        await self._finished.wait()
