"""Acquirers that break the wire: each is answered or closed, and every other
connection carries on. Real loopback sockets, the switch and its simulators in
one trio run (tests/integration/netfixture.py)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest
import trio

import specs
from switch import codec
from switch import listener as listener_module
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


async def test_an_acquirer_that_never_reads_its_answers_is_closed_and_others_carry_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def short_idle(raw: dict[str, Any]) -> None:
        raw["listeners"][0]["idle_timeout"] = 1.0

    caplog.set_level(logging.INFO, logger="switch.listener")
    # Echoes are answered by the switch itself: cheap to send by the thousand.
    echo = encode_frame(codec.encode({"t": "0800", "11": "000001", "70": "301"}, SPEC))
    with trio.fail_after(30):
        async with network(tmp_path, tweak=short_idle) as net:
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect(("127.0.0.1", net.port))
            stream = trio.SocketStream(sock)
            listener = net.server.listeners[0]
            # Until the switch gives up on it, its answers fill every buffer on
            # the way; writes go on until the switch stops reading and closes.
            with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
                while True:
                    await stream.send_all(echo * 1000)
            await _approved_on_another_connection(net)
            while listener.connections > 1:  # the other one is the approval's
                await trio.sleep(0.01)
            await stream.aclose()
            assert listener.closed_for_errors == 1
            assert "closed: took no answer for 1s" in caplog.text


async def test_a_connection_never_has_more_requests_in_the_switch_than_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener_module, "_MAX_INFLIGHT", 3)
    running = peak = 0
    process = listener_module.Listener._process

    async def counted(self: Any, frame: bytes, conn: Any, read_at: float) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await process(self, frame, conn, read_at)
        finally:
            running -= 1

    monkeypatch.setattr(listener_module.Listener, "_process", counted)
    requests = [
        build_request(pan="4111111111111111", amount=100, stan=f"{n:06d}") for n in range(1, 13)
    ]
    with trio.fail_after(20):
        async with network(tmp_path) as net:
            stream = await trio.open_tcp_stream("127.0.0.1", net.port)
            # Twelve in one write: the switch reads them at once, starts three.
            await stream.send_all(b"".join(encode_frame(codec.encode(r, SPEC)) for r in requests))
            decoder = FrameDecoder()
            answers: list[dict[str, str]] = []
            while len(answers) < len(requests):
                data = await stream.receive_some(65536)
                answers += [codec.decode(f, SPEC) for f in decoder.feed(bytes(data))]
            await stream.aclose()
    assert sorted((a["11"], a["39"]) for a in answers) == [(r["11"], "00") for r in requests]
    assert peak == 3
