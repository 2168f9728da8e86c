"""Outbox: one sender per stream, and messages ready together leave in one send_all."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from switch.outbox import Outbox


class _Recorder(trio.abc.SendStream):
    """A send stream that keeps each send_all's bytes; it can be made to fail."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []
        self.fail = False
        self.gate: trio.Event | None = None  # when set: send_all waits for it

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise trio.BrokenResourceError("gone")
        self.sends.append(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_messages_sent_by_tasks_woken_together_leave_in_one_send_all() -> None:
    stream = _Recorder()
    outbox = Outbox(stream)
    go = trio.Event()

    async def answer(i: int) -> None:
        await go.wait()
        await outbox.send(b"%d;" % i)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(answer, i)
            await trio.testing.wait_all_tasks_blocked()
            go.set()
    assert len(stream.sends) == 1
    assert sorted(stream.sends[0].split(b";")[:-1]) == sorted(b"%d" % i for i in range(10))


async def test_a_send_during_a_flush_returns_at_once_and_the_flush_carries_it() -> None:
    stream = _Recorder()
    stream.gate = trio.Event()
    outbox = Outbox(stream, gather=False)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outbox.send, b"a")
            await trio.testing.wait_all_tasks_blocked()  # "a" is inside send_all
            await outbox.send(b"b")  # returns at once: the running flush will carry it
            outbox.put(b"c")
            assert stream.sends == [] and len(outbox) == 2
            stream.gate.set()
    assert stream.sends == [b"a", b"bc"]
    assert len(outbox) == 0


async def test_a_stream_error_reaches_the_flushing_task() -> None:
    stream = _Recorder()
    stream.fail = True
    outbox = Outbox(stream)
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
        await outbox.send(b"x")
    stream.fail = False
    with trio.fail_after(5):
        await outbox.send(b"y")  # the outbox is usable again: no flush left running
    assert stream.sends == [b"y"]


async def test_sending_since_says_since_when_a_send_all_has_waited(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stream = _Recorder()
    stream.gate = trio.Event()  # a peer that does not read
    outbox = Outbox(stream, gather=False)
    assert outbox.sending_since is None
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await trio.sleep(5)
            nursery.start_soon(outbox.send, b"a")
            await trio.testing.wait_all_tasks_blocked()
            assert outbox.sending_since == pytest.approx(5.0)
            await trio.sleep(30)
            assert outbox.sending_since == pytest.approx(5.0)  # still the same send
            stream.gate.set()
    assert outbox.sending_since is None
    assert stream.sends == [b"a"]


async def test_wait_below_waits_while_messages_pile_up_behind_a_stalled_flush() -> None:
    stream = _Recorder()
    stream.gate = trio.Event()
    outbox = Outbox(stream, gather=False)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outbox.send, b"a")
            await trio.testing.wait_all_tasks_blocked()  # "a" is inside send_all
            await outbox.wait_below(2)  # one queued: returns at once
            for data in (b"b", b"c"):
                await outbox.send(data)
            done = trio.Event()

            async def reader_side() -> None:
                await outbox.wait_below(2)
                done.set()

            nursery.start_soon(reader_side)
            await trio.testing.wait_all_tasks_blocked()
            assert not done.is_set()  # two queued behind "a": the stream takes nothing
            stream.gate.set()
            await done.wait()
    assert stream.sends == [b"a", b"bc"]
