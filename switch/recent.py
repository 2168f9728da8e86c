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

import sys
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

__all__ = ["RecentTransactions", "duplicate_key"]

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


class RecentTransactions(Generic[T]):
    """The last ``window`` seconds of transactions (at most ``limit``), by their keys.

    ``add`` returns a handle for the entry: :meth:`set_rrn` indexes it under
    an RRN the switch assigns later, :meth:`replace` swaps in another item
    (a finished transaction's compact form) wherever the entry's item is
    indexed. Every key an entry is indexed under is remembered with it, so
    pruning the entry removes all of them; a key already taken over by a
    newer entry is left to that entry. Memory is therefore bounded by
    ``limit`` whatever the traffic.

    Entries and buckets are flat tuples, not lists: once its item is a flat
    tuple of strings too, the collector untracks all of an entry at its
    first collection, and a full one no longer walks tens of thousands of
    them (it untracks a tuple only when the tuples inside it are untracked
    already, so nesting would keep some tracked).
    """

    __slots__ = ("_by_dup", "_by_rrn", "_by_stan", "_oldest", "_order", "_seq", "limit", "window")

    def __init__(self, window: float = 300.0, limit: int = 50_000) -> None:
        self.window = window
        self.limit = limit
        # handle -> (time added, item, duplicate key, STAN key, RRN keys...).
        # Handles count up and entries leave oldest first, so the oldest is
        # always entry ``_oldest``: a plain dict, no linked list to keep.
        self._order: dict[int, tuple[Any, ...]] = {}
        self._oldest = 0
        self._by_dup: dict[tuple[str, ...], T] = {}
        self._by_stan: dict[tuple[str, ...], tuple[T, ...]] = {}
        self._by_rrn: dict[tuple[str, ...], T] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._order)

    def add(self, listener: str, request: Mapping[str, str], item: T, now: float) -> int:
        """Index ``item`` under the keys of ``request``; returns the entry's handle."""
        self._prune(now)
        dup = duplicate_key(listener, request)
        terminal = request.get("41", "")
        stan_key = (terminal, request.get("11", ""))
        self._by_dup[dup] = item
        self._by_stan[stan_key] = (*self._by_stan.get(stan_key, ()), item)
        handle = self._seq
        self._seq += 1
        rrn = request.get("37")
        if rrn:
            rrn_key = (terminal, rrn)
            self._by_rrn[rrn_key] = item
            self._order[handle] = (now, item, dup, stan_key, rrn_key)
        else:
            self._order[handle] = (now, item, dup, stan_key)
        return handle

    def set_rrn(self, handle: int, terminal: str, rrn: str) -> None:
        """Index entry ``handle`` under a switch-assigned RRN (the acquirer sent none)."""
        entry = self._order.get(handle)
        if entry is None:  # pruned already
            return
        rrn_key = (terminal, rrn)
        self._by_rrn[rrn_key] = entry[1]
        self._order[handle] = (*entry, rrn_key)

    def replace(self, handle: int, item: T) -> None:
        """Put ``item`` in place of entry ``handle``'s item, under every key it still holds."""
        entry = self._order.get(handle)
        if entry is None:
            return
        born, old, dup, stan_key, *rrn_keys = entry
        self._order[handle] = (born, item, *entry[2:])
        if self._by_dup.get(dup) is old:
            self._by_dup[dup] = item
        bucket = self._by_stan.get(stan_key)
        if bucket is not None:
            self._by_stan[stan_key] = (
                (item,)
                if len(bucket) == 1 and bucket[0] is old
                else tuple(item if t is old else t for t in bucket)
            )
        for key in rrn_keys:
            if self._by_rrn.get(key) is old:
                self._by_rrn[key] = item

    def duplicate_of(self, listener: str, request: Mapping[str, str]) -> T | None:
        return self._by_dup.get(duplicate_key(listener, request))

    def by_stan(self, terminal: str, stan: str) -> list[T]:
        return list(self._by_stan.get((terminal, stan), ()))

    def by_rrn(self, terminal: str, rrn: str) -> T | None:
        return self._by_rrn.get((terminal, rrn))

    def _prune(self, now: float) -> None:
        order = self._order
        while order:
            born, item, dup, stan_key, *rrn_keys = order[self._oldest]
            if born + self.window > now and len(order) < self.limit:
                break
            del order[self._oldest]
            self._oldest += 1
            if self._by_dup.get(dup) is item:
                del self._by_dup[dup]
            bucket = self._by_stan.get(stan_key)
            if bucket is not None:
                rest = tuple(t for t in bucket if t is not item)
                if rest:
                    self._by_stan[stan_key] = rest
                else:
                    del self._by_stan[stan_key]
            for key in rrn_keys:
                if self._by_rrn.get(key) is item:
                    del self._by_rrn[key]
