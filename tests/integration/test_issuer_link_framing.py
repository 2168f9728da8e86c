"""An issuer that breaks the framing: the link answers what arrived whole, then
drops that connection at once (and reconnects) instead of sending more
requests into a stream it can no longer read. A fake issuer on a real
loopback socket."""

from __future__ import annotations

import functools

import trio

import specs
from switch import codec
from switch.config import Endpoint, IssuerConfig
from switch.framing import FrameDecoder, Framing, encode_frame
from switch.issuer_link import IssuerLink

SPEC = specs.load("iso87ascii")


async def _answer_then_garbage(stream: trio.SocketStream) -> None:
    decoder = FrameDecoder(Framing())
    while data := await stream.receive_some(65536):
        for frame in decoder.feed(bytes(data)):
            request = codec.decode(frame, SPEC)
            answer = {"t": "0110", "11": request["11"], "39": "00", "41": request["41"]}
            # One write: the answer and a length over max_frame.
            await stream.send_all(encode_frame(codec.encode(answer, SPEC)) + b"\xff\xff")


async def test_garbage_after_an_answer_drops_the_connection_at_once() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, _answer_then_garbage, 0, host="127.0.0.1")
            [listener] = await nursery.start(serve)
            config = IssuerConfig(
                name="sloppy",
                spec="iso87ascii",
                endpoints=(Endpoint(host="127.0.0.1", port=listener.socket.getsockname()[1]),),
                sign_on=False,
            )
            link = IssuerLink(config)
            await nursery.start(link.run)
            while not link.is_up:
                await trio.sleep(0.01)
            request = {"t": "0100", "11": link.allocate_stan("0100"), "41": "TERM0001"}
            answer = await link.exchange(request)
            assert answer["39"] == "00"
            while link.stats.reconnects < 1:  # the issuer sends nothing more: no read needed
                await trio.sleep(0.01)
            assert (link.stats.last_error or "").startswith("framing:")
            nursery.cancel_scope.cancel()
