"""Recent transactions by the keys acquirers use to refer back to them.

Two questions come up on every request and need an answer in memory:
- is this a *duplicate* of a request already in flight or answered?
  (same listener, MTI class, F41, F11 and F7 — or F37 when F7 is absent);
- which transaction does this *reversal* reverse? (F41 + original STAN (+F7)
  from F90, or F41 + F37).

Entries live ``window`` seconds (``now`` is passed in); older ones are found
in the journal instead. Pure: no trio, no sqlite.
"""

from __future__ import annotations

import bisect
import math
import sys
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

__all__ = ["SLICES", "RecentTransactions", "duplicate_key"]

SLICES = 8  # slices a table is cut into: it holds up to 1/SLICES more than it finds

T = TypeVar("T")


def duplicate_key(listener: str, request: Mapping[str, str]) -> tuple[str, ...]:
    # 0401 is a repeat of 0400: same class, same key, so it finds the first one.
    # Interned: one string per MTI class, not one per entry kept for minutes.
    return (
        listener,
        sys.intern(request.get("t", "")[:2]),
        request.get("41", ""),
        request.get("11", ""),
        request.get("7", "") or request.get("37", ""),
    )


class _Slice:
    """Consecutive entries of the table, with their own indexes (key -> handle)."""

    __slots__ = ("base", "by_dup", "by_rrn", "by_stan", "entries")

    def __init__(self, base: int) -> None:
        self.base = base  # handle of entries[0]
        self.entries: list[tuple[float, Any]] = []  # (time added, item)
        self.by_dup: dict[tuple[str, ...], int] = {}
        self.by_stan: dict[tuple[str, str], tuple[int, ...]] = {}
        self.by_rrn: dict[tuple[str, str], int] = {}

    def item(self, handle: int) -> Any:
        return self.entries[handle - self.base][1]

    def release(self, count: int) -> bool:
        """Drop up to ``count`` entries and keys; True once nothing is left."""
        entries = self.entries
        del entries[max(0, len(entries) - count) :]
        for index in (self.by_dup, self.by_stan, self.by_rrn):
            for _ in range(min(count, len(index))):
                index.popitem()
        return not (entries or self.by_dup or self.by_stan or self.by_rrn)


class RecentTransactions(Generic[T]):
    """The last ``window`` seconds of transactions (at most ``limit``), by their keys.

    ``add`` returns a handle for the entry: :meth:`set_rrn` indexes it under
    an RRN the switch assigns later, :meth:`replace` swaps in another item
    (a finished transaction's compact form).

    The table is cut into ``slices`` slices of consecutive entries, each
    with its own dicts (key -> handle), filled and then dropped whole. One
    set of dicts with an entry in and an entry out per transaction would
    rebuild its hash tables every ~87,000 transactions, and the first
    rebuild of a full table doubles them (CPython sizes a rebuilt table at
    three times what it holds): measured, +10 MiB of RSS a minute and a half
    after the table was full, and the holes the later rebuilds leave. Slices
    only grow, and each new one takes the same sizes the dropped one had.

    What a lookup sees is exact all the same: an entry is visible while it
    is among the last ``limit`` added and younger than ``window`` at the
    latest ``add``. A slice leaves once none of its entries is visible, so
    the slices in use hold at most ``limit`` plus one slice of entries. A
    dropped slice is released ``_RELEASE`` entries per ``add``, not all at
    once (freeing thousands of transactions in one go is a pause of
    milliseconds), so while it goes memory holds up to one slice more: it is
    gone long before the next one is dropped.

    Entries and buckets are flat tuples: once its item is a flat tuple of
    strings too, the collector untracks all of an entry at its first
    collection, and a full one no longer walks tens of thousands of them.
    """

    __slots__ = (
        "_dying",
        "_now",
        "_seq",
        "_slice_size",
        "_slice_span",
        "_slices",
        "limit",
        "window",
    )

    _RELEASE = 8  # entries (and keys) of a dropped slice released per add

    def __init__(self, window: float = 300.0, limit: int = 50_000, slices: int = SLICES) -> None:
        self.window = window
        self.limit = limit
        self._slice_size = max(1, math.ceil(limit / slices))
        self._slice_span = window / slices
        self._slices: list[_Slice] = []  # oldest first; handles count up across them
        self._dying: list[_Slice] = []  # dropped, still being released
        self._seq = 0  # the next handle
        self._now = -math.inf  # the latest add's time

    def __len__(self) -> int:
        """Entries visible now."""
        if not self._slices:
            return 0
        floor = self._seq - self.limit
        oldest = self._slices[0]
        young = bisect.bisect_right(oldest.entries, self._now - self.window, key=_born)
        first = max(oldest.base + young, floor)
        return self._seq - first

    def add(self, listener: str, request: Mapping[str, str], item: T, now: float) -> int:
        """Index ``item`` under the keys of ``request``; returns the entry's handle."""
        self._now = now
        slices = self._slices
        current = slices[-1] if slices else None
        if (
            current is None
            or len(current.entries) >= self._slice_size
            or current.entries[0][0] + self._slice_span <= now
        ):
            current = _Slice(self._seq)
            slices.append(current)
        handle = self._seq
        self._seq += 1
        current.entries.append((now, item))
        terminal = request.get("41", "")
        current.by_dup[duplicate_key(listener, request)] = handle
        stan_key = (terminal, request.get("11", ""))
        current.by_stan[stan_key] = (*current.by_stan.get(stan_key, ()), handle)
        rrn = request.get("37")
        if rrn:
            current.by_rrn[(terminal, rrn)] = handle
        self._drop(now)
        return handle

    def set_rrn(self, handle: int, terminal: str, rrn: str) -> None:
        """Index entry ``handle`` under a switch-assigned RRN (the acquirer sent none)."""
        found = self._slice_of(handle)
        if found is not None and found.by_rrn.get((terminal, rrn), -1) < handle:
            found.by_rrn[(terminal, rrn)] = handle

    def replace(self, handle: int, item: T) -> None:
        """Put ``item`` in place of entry ``handle``'s item, under every key it holds."""
        found = self._slice_of(handle)
        if found is not None:
            at = handle - found.base
            found.entries[at] = (found.entries[at][0], item)

    def duplicate_of(self, listener: str, request: Mapping[str, str]) -> T | None:
        key = duplicate_key(listener, request)
        for piece in reversed(self._slices):  # the newest entry under the key decides
            handle = piece.by_dup.get(key)
            if handle is not None:
                return piece.item(handle) if self._visible(piece, handle) else None
        return None

    def by_stan(self, terminal: str, stan: str) -> list[T]:
        key = (terminal, stan)
        return [
            piece.item(handle)
            for piece in self._slices
            for handle in piece.by_stan.get(key, ())
            if self._visible(piece, handle)
        ]

    def by_rrn(self, terminal: str, rrn: str) -> T | None:
        key = (terminal, rrn)
        for piece in reversed(self._slices):
            handle = piece.by_rrn.get(key)
            if handle is not None:
                return piece.item(handle) if self._visible(piece, handle) else None
        return None

    def _visible(self, piece: _Slice, handle: int) -> bool:
        return (
            handle >= self._seq - self.limit
            and piece.entries[handle - piece.base][0] + self.window > self._now
        )

    def _slice_of(self, handle: int) -> _Slice | None:
        for piece in reversed(self._slices):
            if handle >= piece.base:
                return piece if handle - piece.base < len(piece.entries) else None
        return None

    def _drop(self, now: float) -> None:
        """Move slices none of whose entries is visible to ``_dying``; release some of those."""
        slices = self._slices
        floor = self._seq - self.limit
        while len(slices) > 1:  # the newest holds the entry just added
            oldest = slices[0]
            if (
                oldest.base + len(oldest.entries) > floor
                and oldest.entries[-1][0] + self.window > now
            ):
                break
            self._dying.append(slices.pop(0))
        if self._dying and self._dying[0].release(self._RELEASE):
            del self._dying[0]


def _born(entry: tuple[float, Any]) -> float:
    return entry[0]
