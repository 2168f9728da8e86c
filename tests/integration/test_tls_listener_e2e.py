"""TLS on the daemon's acquirer listener, end to end through the in-process network.

The listener gets ``tls_cert``/``tls_key`` (and ``tls_client_ca``) in its
config, as an operator would write them; clients are ``AcquirerClient`` over
``trio.SSLStream``. Approvals come back from the simulators; a plaintext
client, a client without a certificate and one with a certificate from
another CA are refused, and the TLS clients' traffic carries on meanwhile.
The test PKIs are tests.integration.pki's (fresh CAs per module).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import specs
from switch import codec
from switch.client import AcquirerClient, build_request
from switch.framing import Framing, encode_frame
from switch.tls import client_context
from tests.integration.netfixture import Network, network
from tests.integration.pki import module_pki

pki = module_pki()
other_pki = module_pki("rogue")

APPROVALS = {
    "visa": "4111111111111111",
    "mastercard": "5555555555554444",
    "belkart": "9112000000000006",
}


def _tls_listener(
    pki: dict[str, Path], *, client_ca: bool = False
) -> Callable[[dict[str, Any]], None]:
    def tweak(raw: dict[str, Any]) -> None:
        listener = raw["listeners"][0]
        listener["tls_cert"] = str(pki["server_cert"])
        listener["tls_key"] = str(pki["server_key"])
        if client_ca:
            listener["tls_client_ca"] = str(pki["ca_cert"])

    return tweak


async def _tls_client(net: Network, context: ssl.SSLContext) -> AcquirerClient:
    """An acquirer client over TLS, closed with the network; BrokenResourceError if the
    handshake fails (a TLS 1.3 server refuses a client certificate only after it)."""
    tcp = await trio.open_tcp_stream("127.0.0.1", net.port)
    stream = trio.SSLStream(tcp, context, server_hostname="127.0.0.1")
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError:
        await trio.aclose_forcefully(stream)
        raise
    client = AcquirerClient(stream, specs.load("iso87ascii"), Framing(kind="2b"))
    await net.nursery.start(client.run)
    net.clients.append(client)
    return client


async def _approved(client: AcquirerClient, pan: str) -> bool:
    answer = await client.request(build_request(pan=pan, amount=1500))
    return answer is not None and answer["39"] == "00"


async def _is_refused(net: Network, context: ssl.SSLContext) -> bool:
    """True when the switch closes the connection instead of answering a request."""
    try:
        client = await _tls_client(net, context)
        ex = await client.submit(build_request(pan=APPROVALS["visa"], amount=1500))
    except trio.BrokenResourceError:
        return True  # refused in the handshake (TLS 1.2) or before the request went out
    await client.closed.wait()  # TLS 1.3: the refusal arrives as an alert on the first read
    return ex.answer is None


async def test_a_tls_client_gets_approvals_from_every_network(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    with trio.fail_after(20):
        async with network(tmp_path, tweak=_tls_listener(pki)) as net:
            client = await _tls_client(net, client_context(pki["ca_cert"]))
            for pan in APPROVALS.values():
                assert await _approved(client, pan)
            assert isinstance(client.stream, trio.SSLStream)
            assert client.stream.version() in ("TLSv1.2", "TLSv1.3")
            [listener] = net.server.status()["listeners"]
            assert listener["tls"] is True and listener["connections"] == 1


async def test_a_plaintext_client_is_refused_while_tls_traffic_carries_on(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    spec = specs.load("iso87ascii")
    with trio.fail_after(20):
        async with network(tmp_path, tweak=_tls_listener(pki)) as net:
            client = await _tls_client(net, client_context(pki["ca_cert"]))
            assert await _approved(client, APPROVALS["visa"])
            # Requests in flight on the TLS connection while the plaintext client tries.
            pending = [
                await client.submit(build_request(pan=pan, amount=700))
                for pan in APPROVALS.values()
            ]
            plain_request = build_request(pan=APPROVALS["mastercard"], amount=999)
            async with await trio.open_tcp_stream("127.0.0.1", net.port) as plain:
                await plain.send_all(encode_frame(codec.encode(plain_request, spec)))
                received = b""
                try:
                    while data := await plain.receive_some():
                        received += data  # at most a TLS alert, never an answer
                except trio.BrokenResourceError:
                    pass  # reset by the switch
            assert received[:1] in (b"", b"\x15")  # nothing, or a TLS alert: never an answer
            for ex in pending:
                await ex.done.wait()
                assert ex.answer is not None and ex.answer["39"] == "00"
            assert await _approved(client, APPROVALS["belkart"])
            assert not net.server.journal.find_transactions(stan=plain_request["11"])
            assert net.server.listeners[0].accepted == 2
            assert net.server.status()["listeners"][0]["connections"] == 1


async def test_a_client_certificate_from_the_client_ca_is_required(
    tmp_path: Path, pki: dict[str, Path], other_pki: dict[str, Path]
) -> None:
    ours = client_context(pki["ca_cert"], pki["client_cert"], pki["client_key"])
    foreign = client_context(pki["ca_cert"], other_pki["client_cert"], other_pki["client_key"])
    without = client_context(pki["ca_cert"])
    with trio.fail_after(20):
        async with network(tmp_path, tweak=_tls_listener(pki, client_ca=True)) as net:
            good = await _tls_client(net, ours)
            assert await _approved(good, APPROVALS["visa"])
            for context in (foreign, without):
                assert await _is_refused(net, context)
            assert await _approved(good, APPROVALS["mastercard"])
            assert net.server.links["visa"].stats.sent >= 1
            assert len(net.server.journal.find_transactions()) == 2


async def test_a_client_refuses_a_listener_certificate_from_another_ca(
    tmp_path: Path, pki: dict[str, Path], other_pki: dict[str, Path]
) -> None:
    with trio.fail_after(20):
        async with network(tmp_path, tweak=_tls_listener(pki)) as net:
            with pytest.raises(trio.BrokenResourceError):
                await _tls_client(net, client_context(other_pki["ca_cert"]))
            assert not net.server.journal.find_transactions()


async def test_a_refused_handshake_is_logged_with_its_tls_error(
    tmp_path: Path, pki: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="switch.listener")

    def closed() -> list[str]:
        return [r.getMessage() for r in caplog.records if "closed:" in r.getMessage()]

    with trio.fail_after(20):
        async with network(tmp_path, tweak=_tls_listener(pki)) as net:
            async with await trio.open_tcp_stream("127.0.0.1", net.port) as plain:
                await plain.send_all(encode_frame(b"0800"))
                with contextlib.suppress(trio.BrokenResourceError):
                    while await plain.receive_some():
                        pass
            while not closed():
                await trio.sleep(0.01)
    assert "SSL" in closed()[0]  # the handshake's error, not an empty "connection error: "
