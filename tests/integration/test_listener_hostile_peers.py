"""Acquirers that break the wire: each is answered or closed, and every other
connection carries on. Real loopback sockets, the switch and its simulators in
one trio run (tests/integration/netfixture.py)."""

from __future__ import annotations

from pathlib import Path

import trio

import specs
from switch import codec
from switch.client import build_request
from switch.framing import FrameDecoder, encode_frame
from tests.integration.netfixture import Network, network

SPEC = specs.load("iso87ascii")


async def _read_until_closed(stream: trio.SocketStream) -> list[dict[str, str]]:
    decoder = FrameDecoder()
    frames: list[bytes] = []
    while data := await stream.receive_some(65536):
        frames += decoder.feed(bytes(data))
    return [codec.decode(frame, SPEC) for frame in frames]


async def _approved_on_another_connection(net: Network) -> None:
    client = await net.client()
    answer = await client.request(build_request(pan="4111111111111111", amount=100))
    assert answer is not None and answer["39"] == "00"


async def test_a_bad_prefix_after_a_good_frame_answers_the_frame_then_closes(
    tmp_path: Path,
) -> None:
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            request = build_request(pan="4111111111111111", amount=100)
            stream = await trio.open_tcp_stream("127.0.0.1", net.port)
            # One write: the good frame and a length over max_frame arrive in one read.
            await stream.send_all(encode_frame(codec.encode(request, SPEC)) + b"\xff\xff")
            [answer] = await _read_until_closed(stream)  # closed at once, not after idle
            assert (answer["11"], answer["39"]) == (request["11"], "00")
            await stream.aclose()
            assert net.server.listeners[0].closed_for_errors == 1
            await _approved_on_another_connection(net)
