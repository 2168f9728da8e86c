"""The frame relay: the benchmark's "plumbing only" baseline.

A separate small trio program (``python -m switch.relay`` or ``switch
bench-relay``) that stands where the switch stands and does the least a
switch must do with bytes: for each acquirer connection it opens one
connection to the issuer, cuts the incoming stream into frames
(switch.framing) and forwards each batch of frames that arrived together with
one ``send_all``, in both directions. It never decodes a message, so the
load generator speaks the issuer's dialect through it.

One upstream connection per downstream connection keeps answers on the
connection their requests came from without reading F11: multiplexing would
need a decode, and then it would not be a relay.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import trio

from switch.errors import FramingError
from switch.framing import FrameDecoder, Framing, encode_frame

__all__ = ["Relay", "main", "run"]

log = logging.getLogger("switch.relay")


class Relay:
    """Listen on ``listen_port``; pipe frames to ``upstream`` per connection."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        framing_in: Framing | None = None,
        framing_out: Framing | None = None,
    ) -> None:
        self.upstream = upstream
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.framing_in = framing_in or Framing()
        self.framing_out = framing_out or Framing()
        self.frames = 0

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.listen_port, host=self.listen_host)
        port = int(listeners[0].socket.getsockname()[1])
        task_status.started(port)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, downstream: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(*self.upstream)
        except OSError as exc:
            log.warning("relay: cannot reach %s:%s: %s", *self.upstream, exc)
            await downstream.aclose()
            return
        async with downstream, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(
                self._pump, downstream, upstream, self.framing_in, self.framing_out, nursery
            )
            nursery.start_soon(
                self._pump, upstream, downstream, self.framing_out, self.framing_in, nursery
            )

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        framing_from: Framing,
        framing_to: Framing,
        nursery: trio.Nursery,
    ) -> None:
        decoder = FrameDecoder(framing_from)
        try:
            while data := await source.receive_some(65536):
                frames = decoder.feed(bytes(data))
                if frames:
                    self.frames += len(frames)
                    await sink.send_all(b"".join(encode_frame(f, framing_to) for f in frames))
        except (FramingError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info("relay: connection closed: %s", exc)
        nursery.cancel_scope.cancel()  # either side gone: close the pair


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m switch.relay --listen PORT --to HOST:PORT [--framing 2b]``."""
    parser = argparse.ArgumentParser(prog="switch.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True, help="port to listen on (0: any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--to", required=True, type=_endpoint, help="issuer HOST:PORT")
    parser.add_argument("--framing", default="2b", help="framing on both sides (2b, 4a, ...)")
    args = parser.parse_args(argv)
    run(args.to, listen_port=args.listen, host=args.host, framing=args.framing)


def run(upstream: tuple[str, int], *, listen_port: int, host: str, framing: str) -> None:
    relay = Relay(
        upstream,
        listen_host=host,
        listen_port=listen_port,
        framing_in=Framing(kind=framing),
        framing_out=Framing(kind=framing),
    )

    async def serve() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(relay.run)
                print(f"relay listening on {host}:{port}", flush=True)
                async for _ in signals:  # SIGTERM is a normal stop: exit 0
                    nursery.cancel_scope.cancel()
                    break

    trio.run(serve)


if __name__ == "__main__":
    main(sys.argv[1:])
