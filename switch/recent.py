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

from collections import OrderedDict
from collections.abc import Mapping
from typing import Generic, TypeVar

__all__ = ["RecentTransactions", "duplicate_key"]

T = TypeVar("T")


def duplicate_key(listener: str, request: Mapping[str, str]) -> tuple[str, ...]:
    mti = request.get("t", "")
    # 0401 is a repeat of 0400: same class, same key, so it finds the first one.
    return (
        listener,
        mti[:2],
        request.get("41", ""),
        request.get("11", ""),
        request.get("7", "") or request.get("37", ""),
    )


class RecentTransactions(Generic[T]):
    """The last ``window`` seconds of transactions (at most ``limit``), by their keys.

    Every key an entry is indexed under -- including an RRN the switch assigns
    later (:meth:`set_rrn`) -- is remembered with it, so pruning the entry
    removes all of them; a key already taken over by a newer entry is left to
    that entry. Memory is therefore bounded by ``limit`` whatever the traffic.
    """

    __slots__ = ("_by_dup", "_by_rrn", "_by_stan", "_order", "limit", "window")

    def __init__(self, window: float = 300.0, limit: int = 50_000) -> None:
        self.window = window
        self.limit = limit
        # id(item) -> (time added, item, the keys it is indexed under)
        self._order: OrderedDict[int, tuple[float, T, list[tuple[str, ...]]]] = OrderedDict()
        self._by_dup: dict[tuple[str, ...], T] = {}
        self._by_stan: dict[tuple[str, str], list[T]] = {}
        self._by_rrn: dict[tuple[str, ...], T] = {}

    def __len__(self) -> int:
        return len(self._order)

    def add(self, listener: str, request: Mapping[str, str], item: T, now: float) -> None:
        self._prune(now)
        dup = duplicate_key(listener, request)
        terminal = request.get("41", "")
        stan_key = (terminal, request.get("11", ""))
        rrn = request.get("37")
        self._by_dup[dup] = item
        self._by_stan.setdefault(stan_key, []).append(item)
        keys: list[tuple[str, ...]] = [("dup", *dup), ("stan", *stan_key)]
        if rrn:
            self._by_rrn[(terminal, rrn)] = item
            keys.append(("rrn", terminal, rrn))
        self._order[id(item)] = (now, item, keys)

    def set_rrn(self, terminal: str, rrn: str, item: T) -> None:
        """Index a switch-assigned RRN (the acquirer sent none)."""
        self._by_rrn[(terminal, rrn)] = item
        entry = self._order.get(id(item))
        if entry is not None and entry[1] is item:
            entry[2].append(("rrn", terminal, rrn))

    def duplicate_of(self, listener: str, request: Mapping[str, str]) -> T | None:
        return self._by_dup.get(duplicate_key(listener, request))

    def by_stan(self, terminal: str, stan: str) -> list[T]:
        return list(self._by_stan.get((terminal, stan), ()))

    def by_rrn(self, terminal: str, rrn: str) -> T | None:
        return self._by_rrn.get((terminal, rrn))

    def _prune(self, now: float) -> None:
        order = self._order
        while order:
            ident, (born, item, keys) = next(iter(order.items()))
            if born + self.window > now and len(order) < self.limit:
                break
            del order[ident]
            for kind, *rest in keys:
                if kind == "stan":
                    stan_key = (rest[0], rest[1])
                    bucket = self._by_stan.get(stan_key)
                    if bucket is not None:
                        bucket[:] = [t for t in bucket if t is not item]
                        if not bucket:
                            del self._by_stan[stan_key]
                    continue
                index = self._by_dup if kind == "dup" else self._by_rrn
                if index.get(tuple(rest)) is item:
                    del index[tuple(rest)]
