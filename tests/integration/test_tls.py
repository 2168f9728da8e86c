"""TLS over real loopback sockets: handshake and echo, plaintext and bad certificates refused.

Each test serves in its own nursery and cancels it when done.
"""

from __future__ import annotations

import contextlib
import itertools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
import trio

from switch.framing import FrameDecoder, encode_frame
from switch.tls import client_context, server_context
from tests.integration.pki import module_pki

pki = module_pki()
other_pki = module_pki("rogue")

FRAME = b"0800\x82\x20\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00301"


@dataclass
class EchoServer:
    port: int
    refused: int = 0
    served: list[bytes] = field(default_factory=list)


async def _start(nursery: trio.Nursery, context: ssl.SSLContext) -> EchoServer:
    """A framed echo server over TLS on 127.0.0.1, port 0; counts refused connections."""
    server = EchoServer(port=0)

    async def handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
        decoder = FrameDecoder()
        try:
            while data := await stream.receive_some():
                for frame in decoder.feed(data):
                    server.served.append(frame)
                    await stream.send_all(encode_frame(frame))
        except trio.BrokenResourceError:  # the handshake failed: only this stream breaks
            server.refused += 1
        finally:
            await trio.aclose_forcefully(stream)

    serve = partial(trio.serve_ssl_over_tcp, handler, 0, context, host="127.0.0.1")
    listeners = await nursery.start(serve)
    server.port = listeners[0].transport_listener.socket.getsockname()[1]
    return server


@asynccontextmanager
async def _connect(
    port: int, context: ssl.SSLContext
) -> AsyncIterator[trio.SSLStream[trio.SocketStream]]:
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(tcp, context, server_hostname="127.0.0.1")
    try:
        await stream.do_handshake()
        yield stream
    finally:
        await trio.aclose_forcefully(stream)


@asynccontextmanager
async def _serving(context: ssl.SSLContext) -> AsyncIterator[EchoServer]:
    async with trio.open_nursery() as nursery:
        yield await _start(nursery, context)
        nursery.cancel_scope.cancel()


async def _echo(stream: trio.SSLStream[trio.SocketStream]) -> bytes:
    await stream.send_all(encode_frame(FRAME))
    decoder = FrameDecoder()
    while True:
        data = await stream.receive_some()
        if not data:
            return b""  # the server closed the connection
        frames = decoder.feed(data)
        if frames:
            return frames[0]


async def _is_refused(attempt: Callable[[], Awaitable[object]]) -> bool:
    """True when the attempt breaks (handshake, or the first read under TLS 1.3) or reads EOF."""
    try:
        return await attempt() == b""
    except trio.BrokenResourceError:
        return True


async def test_handshake_at_tls_12_or_better_and_echo(pki: dict[str, Path]) -> None:
    context = server_context(pki["server_cert"], pki["server_key"])
    with trio.fail_after(10):
        async with (
            _serving(context) as server,
            _connect(server.port, client_context(pki["ca_cert"])) as client,
        ):
            assert client.version() in ("TLSv1.2", "TLSv1.3")
            assert await _echo(client) == FRAME
            assert server.served == [FRAME]


async def test_a_plaintext_client_is_refused_and_a_tls_client_carries_on(
    pki: dict[str, Path],
) -> None:
    context = server_context(pki["server_cert"], pki["server_key"])
    with trio.fail_after(10):
        async with (
            _serving(context) as server,
            _connect(server.port, client_context(pki["ca_cert"])) as good,
        ):
            assert await _echo(good) == FRAME
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as plain:
                await plain.send_all(encode_frame(FRAME))

                async def read_to_eof() -> bytes:
                    while await plain.receive_some():
                        pass  # a TLS alert, then the close
                    return b""

                assert await _is_refused(read_to_eof)
            assert await _echo(good) == FRAME
            assert server.served == [FRAME, FRAME]
            assert server.refused == 1


async def test_client_certificates_when_required(
    pki: dict[str, Path], other_pki: dict[str, Path]
) -> None:
    context = server_context(pki["server_cert"], pki["server_key"], pki["ca_cert"])
    ours = client_context(pki["ca_cert"], pki["client_cert"], pki["client_key"])
    rogue = client_context(pki["ca_cert"], other_pki["client_cert"], other_pki["client_key"])
    without = client_context(pki["ca_cert"])
    with trio.fail_after(10):
        async with _serving(context) as server, _connect(server.port, ours) as good:
            assert await _echo(good) == FRAME
            for refused in (rogue, without):

                async def attempt(client: ssl.SSLContext = refused) -> bytes:
                    async with _connect(server.port, client) as stream:
                        return await _echo(stream)

                assert await _is_refused(attempt)
            assert server.refused == 2
            assert await _echo(good) == FRAME


async def test_the_client_refuses_a_server_from_another_ca(
    pki: dict[str, Path], other_pki: dict[str, Path]
) -> None:
    context = server_context(pki["server_cert"], pki["server_key"])
    with trio.fail_after(10):
        async with _serving(context) as server:
            with pytest.raises(trio.BrokenResourceError):
                async with _connect(server.port, client_context(other_pki["ca_cert"])):
                    pass


async def test_contexts_refuse_below_tls_12(pki: dict[str, Path]) -> None:
    server = server_context(pki["server_cert"], pki["server_key"])
    client = client_context(pki["ca_cert"])
    assert server.minimum_version == client.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED


def test_test_pki_keys_are_private(pki: dict[str, Path]) -> None:
    for name in ("ca_key", "server_key", "client_key"):
        assert pki[name].stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"listeners": [{"name": "gw", "port": 0, "tls_cert": "no.pem", "tls_key": "no.key"}]},
            r"listener gw: cannot load tls_cert .*no\.pem and tls_key .*no\.key: No such file",
        ),
        (
            {"issuers": {"visa": {"spec": "visa", "endpoints": ["h:1"], "tls_ca": "no-ca.pem"}}},
            r"issuer visa: cannot load tls_ca .*no-ca\.pem: No such file",
        ),
    ],
)
def test_a_tls_file_that_cannot_be_loaded_stops_the_switch_naming_it(
    tmp_path: Path, raw: dict[str, object], message: str
) -> None:
    from switch.config import parse_config
    from switch.errors import ConfigError
    from switch.server import Server

    with pytest.raises(ConfigError, match=message):
        Server(parse_config(raw, tmp_path))


async def test_an_issuer_link_checks_the_certificate_before_it_counts_as_connected(
    pki: dict[str, Path], other_pki: dict[str, Path]
) -> None:
    from switch.config import Endpoint, IssuerConfig
    from switch.issuer_link import IssuerLink

    context = server_context(pki["server_cert"], pki["server_key"])
    with trio.fail_after(10):
        async with _serving(context) as server, trio.open_nursery() as nursery:
            config = IssuerConfig(
                name="visa",
                spec="visa",
                endpoints=(Endpoint(host="127.0.0.1", port=server.port),),
                sign_on=False,
            )
            link = IssuerLink(config, ssl_context=client_context(other_pki["ca_cert"]))
            await nursery.start(link.run)
            while not link.is_up and link.stats.last_error is None:
                await trio.sleep(0.01)
            assert not link.is_up
            assert link.stats.connected_to is None
            assert "certificate verify failed" in (link.stats.last_error or "")
            nursery.cancel_scope.cancel()


async def test_an_issuer_link_refused_for_its_client_certificate_backs_off_and_says_why(
    pki: dict[str, Path],
) -> None:
    from switch.config import Endpoint, IssuerConfig
    from switch.issuer_link import IssuerLink

    context = server_context(pki["server_cert"], pki["server_key"], pki["ca_cert"])
    attempts: list[float] = []

    async def handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
        attempts.append(trio.current_time())
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.do_handshake()  # no client certificate: refused
        await trio.aclose_forcefully(stream)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            serve = partial(trio.serve_ssl_over_tcp, handler, 0, context, host="127.0.0.1")
            [listener] = await nursery.start(serve)
            config = IssuerConfig(
                name="visa",
                spec="visa",
                endpoints=(
                    Endpoint(
                        host="127.0.0.1", port=listener.transport_listener.socket.getsockname()[1]
                    ),
                ),
                reconnect_min=0.05,
                reconnect_max=0.4,
            )
            link = IssuerLink(config, ssl_context=client_context(pki["ca_cert"]))
            await nursery.start(link.run)
            while len(attempts) < 5:
                await trio.sleep(0.01)
            assert not link.is_up
            assert "SSL" in (link.stats.last_error or "")  # the TLS error, not a bare class name
            # Each try waits at least twice as long as the one before, up to reconnect_max.
            gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
            assert all(gap >= min(0.05 * 2**i, 0.4) for i, gap in enumerate(gaps)), gaps
            nursery.cancel_scope.cancel()
