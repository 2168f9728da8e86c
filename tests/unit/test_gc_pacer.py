"""The daemon's young-collection pacer (switch.server.pace_young_collections)."""

from __future__ import annotations

import gc
import platform

import pytest
import trio
import trio.testing

from switch import server
from switch.server import pace_young_collections


async def test_young_objects_are_collected_every_second_even_when_allocations_balance(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # With allocations and frees in balance CPython never starts a young
    # collection (here: automatic collection off), and long-lived objects
    # pile up on the young list until the pacer's collections meet them.
    gc.disable()
    try:
        kept = [(f"txn{i}", "approved") for i in range(1_000)]
        assert all(gc.is_tracked(t) for t in kept)
        before = gc.get_stats()[0]["collections"]
        with trio.move_on_after(5.5):
            await pace_young_collections(every=1.0)
        assert gc.get_stats()[0]["collections"] - before == 5
        assert not any(gc.is_tracked(t) for t in kept)  # met by a collection, untracked
    finally:
        gc.enable()


async def test_the_c_heap_is_trimmed_once_a_minute(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    monkeypatch.setattr(server, "_malloc_trim", lambda: trim)
    with trio.move_on_after(125.5):
        await server.pace_young_collections(every=1.0)
    assert calls == [0, 0]


def test_malloc_trim_is_found_on_glibc() -> None:
    trim = server._malloc_trim()
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    assert trim is not None and trim(0) in (0, 1)
