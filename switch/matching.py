"""Request/answer matching on one issuer link, and the link's STAN allocation.

An issuer answer is matched to its request by (MTI class, switch STAN): an
0110 answers the 0100 with the same F11, an 0410 the 0400, an 0810 the 0800.
The switch allocates its own STAN per link, never reusing one that is still
in flight, so acquirers' STANs (which collide across terminals) never reach
the matching key. Only a response MTI (function digit 1 or 3, ISO 8583:1987
4.3) answers anything: an issuer that echoes our 0100 back, or sends an 0800
of its own with the STAN of our sign-on, has answered nothing.

A request whose timeout passed is moved to a *late* table for ``late_window``
seconds: an answer that arrives then is ``late`` (journaled, and an approval
is reversed), anything else is ``unmatched``. Time is passed in as ``now``
(seconds, any monotonic origin); nothing here reads a clock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

__all__ = ["InFlight", "Match", "StanAllocator", "match_key"]

T = TypeVar("T")
Key = tuple[str, str]
_RESPONSE_FUNCTIONS = ("1", "3")  # the MTI's third digit: response, advice response


def match_key(mti: str, stan: str) -> Key:
    """Requests and answers of one class share the first two MTI digits."""
    return (mti[:2], stan)


class StanAllocator:
    """Six-digit STANs 000001..999999, wrapping, skipping those in use."""

    __slots__ = ("_next",)

    def __init__(self, start: int = 1) -> None:
        self._next = max(1, start % 1_000_000)

    def allocate(self, in_use: InFlight[object] | None = None, mti: str = "0100") -> str:
        for _ in range(1_000_000):
            stan = f"{self._next:06d}"
            self._next = self._next + 1 if self._next < 999_999 else 1
            if in_use is None or not in_use.busy(match_key(mti, stan)):
                return stan
        raise RuntimeError("all 999,999 STANs are in flight")


@dataclass(frozen=True, slots=True)
class Match(Generic[T]):
    kind: Literal["matched", "late", "unmatched"]
    item: T | None


class InFlight(Generic[T]):
    """Requests waiting for an answer, keyed by (MTI class, STAN)."""

    __slots__ = ("_late", "_live", "late_window")

    def __init__(self, late_window: float = 300.0) -> None:
        self._live: dict[Key, T] = {}
        self._late: OrderedDict[Key, tuple[float, T]] = OrderedDict()
        self.late_window = late_window

    def __len__(self) -> int:
        return len(self._live)

    def busy(self, key: Key) -> bool:
        return key in self._live or key in self._late

    def add(self, mti: str, stan: str, item: T) -> Key:
        key = match_key(mti, stan)
        if key in self._live:
            raise KeyError(f"STAN {stan} already in flight for MTI class {key[0]}")
        self._late.pop(key, None)
        self._live[key] = item
        return key

    def answer(self, mti: str, stan: str, now: float) -> Match[T]:
        """Classify an arriving answer and take its request out of the tables."""
        self._prune(now)
        if mti[2:3] not in _RESPONSE_FUNCTIONS:
            return Match("unmatched", None)
        key = match_key(mti, stan)
        item = self._live.pop(key, None)
        if item is not None:
            return Match("matched", item)
        late = self._late.pop(key, None)
        if late is not None:
            return Match("late", late[1])
        return Match("unmatched", None)

    def give_up(self, key: Key, now: float) -> T | None:
        """The request timed out: keep it as late-able for ``late_window`` seconds."""
        item = self._live.pop(key, None)
        if item is not None:
            self._late[key] = (now + self.late_window, item)
        self._prune(now)
        return item

    def forget(self, key: Key) -> T | None:
        """Drop a request without waiting for a late answer (link lost before sending)."""
        return self._live.pop(key, None)

    def drain(self) -> list[T]:
        """Every live request (the link went down): the caller fails them."""
        items = list(self._live.values())
        self._live.clear()
        return items

    def _prune(self, now: float) -> None:
        while self._late:
            key, (until, _) = next(iter(self._late.items()))
            if until > now:
                break
            del self._late[key]
