"""BIN routing: which issuer link serves a PAN. The longest prefix wins.

Routes come from ``switch.toml`` as a BIN prefix (``"4"``, ``"9112"``) or a
range of equal-width prefixes (``"51-55"``, ``"2221-2720"``). A range's
specificity is its width, so ``"9112"`` (4 digits) beats ``"4"`` and
``"2221-2720"`` beats ``"2"``. Among equally long matches the first one in the
config wins. Routing is total: every string gets an issuer or RoutingError.
"""

from __future__ import annotations

from collections.abc import Iterable

from switch.errors import RoutingError

__all__ = ["RouteTable"]


class RouteTable:
    __slots__ = ("_by_width", "_widths")

    def __init__(self, routes: Iterable[tuple[str, str]]) -> None:
        # width -> list of (low, high, issuer) in config order
        by_width: dict[int, list[tuple[int, int, str]]] = {}
        for prefix, issuer in routes:
            low, sep, high = prefix.partition("-")
            if not (low.isascii() and low.isdigit()) or (
                sep and (not (high.isascii() and high.isdigit()) or len(high) != len(low))
            ):
                raise ValueError(f"route {prefix!r}: expected digits or an equal-width range")
            by_width.setdefault(len(low), []).append((int(low), int(high or low), issuer))
        self._by_width = by_width
        self._widths = sorted(by_width, reverse=True)

    def lookup(self, pan: str) -> str | None:
        """The issuer for ``pan``, or None when no route matches."""
        for width in self._widths:
            head = pan[:width]
            if len(head) < width or not (head.isascii() and head.isdigit()):
                continue
            value = int(head)
            for low, high, issuer in self._by_width[width]:
                if low <= value <= high:
                    return issuer
        return None

    def route(self, pan: str) -> str:
        issuer = self.lookup(pan)
        if issuer is None:
            raise RoutingError(f"no route for BIN {pan[:6]}")
        return issuer
