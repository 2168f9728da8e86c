"""Issuer link timeouts: one expiry task per link, deadlines in sending order.

A fake issuer on a real loopback socket holds every request until the test
answers it. Times are only ever checked from below (never early), with an
absolute fail_after on each test: nothing depends on the machine's speed.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

import specs
from switch import codec
from switch.config import Endpoint, IssuerConfig
from switch.errors import IssuerTimeout
from switch.framing import FrameDecoder, Framing, encode_frame
from switch.issuer_link import IssuerLink

SPEC = specs.load("iso87ascii")
TIMEOUT = 0.3


class _HoldingIssuer:
    """Reads requests and answers one only when the test says so."""

    def __init__(self) -> None:
        self.held: dict[str, dict[str, str]] = {}
        self.arrived = trio.Event()
        self.stream: trio.SocketStream | None = None

    async def handle(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        decoder = FrameDecoder(Framing())
        while data := await stream.receive_some(65536):
            for frame in decoder.feed(bytes(data)):
                request = codec.decode(frame, SPEC)
                self.held[request["11"]] = request
                self.arrived.set()

    async def answer(self, stan: str) -> None:
        request = self.held.pop(stan)
        answer = {"t": "0110", "11": stan, "39": "00", "41": request["41"]}
        assert self.stream is not None
        await self.stream.send_all(encode_frame(codec.encode(answer, SPEC)))


@asynccontextmanager
async def _link() -> AsyncIterator[tuple[IssuerLink, _HoldingIssuer]]:
    issuer = _HoldingIssuer()
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, issuer.handle, 0, host="127.0.0.1")
        [listener] = await nursery.start(serve)
        port = listener.socket.getsockname()[1]
        config = IssuerConfig(
            name="held",
            spec="iso87ascii",
            endpoints=(Endpoint(host="127.0.0.1", port=port),),
            timeout=TIMEOUT,
            sign_on=False,
        )
        link = IssuerLink(config)
        await nursery.start(link.run)
        while not link.is_up:
            await trio.sleep(0.01)
        yield link, issuer
        nursery.cancel_scope.cancel()


def _request(link: IssuerLink) -> dict[str, str]:
    return {"t": "0100", "11": link.allocate_stan("0100"), "41": "TERM0001"}


async def test_requests_time_out_no_sooner_than_their_deadline_in_sending_order() -> None:
    timed_out: list[tuple[str, float]] = []

    async def send(link: IssuerLink, request: dict[str, str]) -> None:
        sent = trio.current_time()
        with pytest.raises(IssuerTimeout):
            await link.exchange(request)
        timed_out.append((request["11"], trio.current_time() - sent))

    with trio.fail_after(10):
        async with _link() as (link, _issuer), trio.open_nursery() as nursery:
            first, second = _request(link), _request(link)
            nursery.start_soon(send, link, first)
            await trio.sleep(TIMEOUT / 3)
            nursery.start_soon(send, link, second)
    assert [stan for stan, _ in timed_out] == [first["11"], second["11"]]
    assert all(waited >= TIMEOUT for _, waited in timed_out)
    assert len(link._deadlines) == 0
    assert link.stats.timeouts == 2 and len(link.in_flight) == 0


async def test_an_answer_in_time_is_returned_and_nothing_is_left_waiting() -> None:
    with trio.fail_after(10):
        async with _link() as (link, issuer):
            answers: list[dict[str, str]] = []

            async def send(request: dict[str, str]) -> None:
                answers.append(await link.exchange(request))

            async with trio.open_nursery() as nursery:
                request = _request(link)
                nursery.start_soon(send, request)
                await issuer.arrived.wait()
                await issuer.answer(request["11"])
            assert answers[0]["39"] == "00" and answers[0]["11"] == request["11"]
            assert len(link._deadlines) == 0
            # A later request still times out: the expiry task is alive and re-armed.
            with pytest.raises(IssuerTimeout):
                await link.exchange(_request(link))
