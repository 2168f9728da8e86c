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
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

__all__ = ["SEP", "SLICES", "Key", "RecentTransactions", "duplicate_key", "joined"]

SLICES = 8  # slices a table is cut into: it holds up to 1/SLICES more than it finds
SEP = "\x00"  # between the parts of a joined key (and of a packed transaction)

T = TypeVar("T")
Key = str | tuple[str, ...]


def joined(*parts: str) -> Key:
    """``parts`` as one string, which the garbage collector never tracks.

    A tuple is tracked from birth until a collection sees it; a table adding
    several per transaction made every young collection walk thousands of
    them (2-8 ms once a second at 1,000 TPS). Parts holding ``SEP`` (a NUL:
    no acquirer should send one, but the codec does not refuse it) stay a
    tuple, so no two different lists of parts ever give the same key.
    """
    key = SEP.join(parts)
    return key if key.count(SEP) == len(parts) - 1 else parts


def duplicate_key(listener: str, request: Mapping[str, str]) -> Key:
    # 0401 is a repeat of 0400: same class, same key, so it finds the first one.
    return joined(
        listener,
        request.get("t", "")[:2],
        request.get("41", ""),
        request.get("11", ""),
        request.get("7", "") or request.get("37", ""),
    )


class _Slice:
    """Consecutive entries of the table, with their own indexes (key -> handle).

    An entry is its time in ``born`` and its item in ``items`` at the same
    place (two lists, no pair per entry for the collector to meet); a STAN
    maps to one handle, or to a tuple of them once it repeats.
    """

    __slots__ = ("base", "born", "by_dup", "by_rrn", "by_stan", "items")

    def __init__(self, base: int) -> None:
        self.base = base  # handle of born[0] / items[0]
        self.born: list[float] = []  # time added
        self.items: list[Any] = []
        self.by_dup: dict[Key, int] = {}
        self.by_stan: dict[Key, int | tuple[int, ...]] = {}
        self.by_rrn: dict[Key, int] = {}

    def item(self, handle: int) -> Any:
        return self.items[handle - self.base]

    def release(self, count: int) -> bool:
        """Drop up to ``count`` entries and keys; True once nothing is left."""
        keep = max(0, len(self.items) - count)
        del self.born[keep:]
        del self.items[keep:]
        for index in (self.by_dup, self.by_stan, self.by_rrn):
            for _ in range(min(count, len(index))):
                index.popitem()
        return not (self.items or self.by_dup or self.by_stan or self.by_rrn)


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

    Nothing an entry adds is tracked by the garbage collector: keys are
    joined strings (:func:`joined`), times and items sit in two lists, a
    STAN's handle is an int; once its item is a string too (the switch
    packs a finished transaction into one), a young collection has nothing
    of it to walk, and neither has a full one.
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
        young = bisect.bisect_right(oldest.born, self._now - self.window)
        first = max(oldest.base + young, floor)
        return self._seq - first

    def add(self, listener: str, request: Mapping[str, str], item: T, now: float) -> int:
        """Index ``item`` under the keys of ``request``; returns the entry's handle."""
        self._now = now
        slices = self._slices
        current = slices[-1] if slices else None
        if (
            current is None
            or len(current.items) >= self._slice_size
            or current.born[0] + self._slice_span <= now
        ):
            current = _Slice(self._seq)
            slices.append(current)
        handle = self._seq
        self._seq += 1
        current.born.append(now)
        current.items.append(item)
        terminal = request.get("41", "")
        current.by_dup[duplicate_key(listener, request)] = handle
        stan_key = joined(terminal, request.get("11", ""))
        before = current.by_stan.get(stan_key)
        current.by_stan[stan_key] = handle if before is None else (*_handles(before), handle)
        rrn = request.get("37")
        if rrn:
            current.by_rrn[joined(terminal, rrn)] = handle
        self._drop(now)
        return handle

    def set_rrn(self, handle: int, terminal: str, rrn: str) -> None:
        """Index entry ``handle`` under a switch-assigned RRN (the acquirer sent none)."""
        found = self._slice_of(handle)
        key = joined(terminal, rrn)
        if found is not None and found.by_rrn.get(key, -1) < handle:
            found.by_rrn[key] = handle

    def replace(self, handle: int, item: T) -> None:
        """Put ``item`` in place of entry ``handle``'s item, under every key it holds."""
        found = self._slice_of(handle)
        if found is not None:
            found.items[handle - found.base] = item

    def duplicate_of(self, listener: str, request: Mapping[str, str]) -> T | None:
        key = duplicate_key(listener, request)
        for piece in reversed(self._slices):  # the newest entry under the key decides
            handle = piece.by_dup.get(key)
            if handle is not None:
                return piece.item(handle) if self._visible(piece, handle) else None
        return None

    def by_stan(self, terminal: str, stan: str) -> list[T]:
        key = joined(terminal, stan)
        return [
            piece.item(handle)
            for piece in self._slices
            for handle in _handles(piece.by_stan.get(key, ()))
            if self._visible(piece, handle)
        ]

    def by_rrn(self, terminal: str, rrn: str) -> T | None:
        key = joined(terminal, rrn)
        for piece in reversed(self._slices):
            handle = piece.by_rrn.get(key)
            if handle is not None:
                return piece.item(handle) if self._visible(piece, handle) else None
        return None

    def _visible(self, piece: _Slice, handle: int) -> bool:
        return (
            handle >= self._seq - self.limit
            and piece.born[handle - piece.base] + self.window > self._now
        )

    def _slice_of(self, handle: int) -> _Slice | None:
        for piece in reversed(self._slices):
            if handle >= piece.base:
                return piece if handle - piece.base < len(piece.items) else None
        return None

    def _drop(self, now: float) -> None:
        """Move slices none of whose entries is visible to ``_dying``; release some of those."""
        slices = self._slices
        floor = self._seq - self.limit
        while len(slices) > 1:  # the newest holds the entry just added
            oldest = slices[0]
            if oldest.base + len(oldest.items) > floor and oldest.born[-1] + self.window > now:
                break
            self._dying.append(slices.pop(0))
        if self._dying and self._dying[0].release(self._RELEASE):
            del self._dying[0]


def _handles(found: int | tuple[int, ...]) -> tuple[int, ...]:
    return (found,) if isinstance(found, int) else found
