"""The daemon's own security wiring: acquirer MAC (63 when bad or missing), PIN
translation between zone PIN keys, and refusal of a PIN it cannot translate."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
import trio

import specs
from switch import mac
from switch.client import build_request
from switch.keys import KeyStore
from switch.pin import decode_pin, encode_pin_block
from tests.integration.netfixture import network

ACQ_ZPK = "acquirer-zpk"
VISA_ZPK = "visa-zpk"
ACQ_MAC = "acquirer-zak"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KeyStore:
    master = secrets.token_bytes(32)
    monkeypatch.setenv("SWITCH_MASTER_KEY", master.hex())
    keys = KeyStore.create(tmp_path / "var" / "keys.json", master)
    for name, kind in ((ACQ_ZPK, "ZPK"), (VISA_ZPK, "ZPK"), (ACQ_MAC, "ZAK")):
        keys.generate(name, kind)
    return keys


def _secure(raw: dict[str, Any], *, listener_mac: bool = False, visa_pin: bool = True) -> None:
    raw["listeners"][0]["pin_key"] = ACQ_ZPK
    if listener_mac:
        raw["listeners"][0]["mac_key"] = ACQ_MAC
    if visa_pin:
        raw["issuers"]["visa"]["pin_key"] = VISA_ZPK


async def test_unsigned_or_badly_signed_request_gets_63_and_signed_one_passes(
    tmp_path: Path, store: KeyStore
) -> None:
    spec = specs.load("iso87ascii")
    with trio.fail_after(20):
        async with network(tmp_path, tweak=lambda raw: _secure(raw, listener_mac=True)) as net:
            client = await net.client()
            unsigned = await client.request(build_request(pan="4111111111111111", amount=100))
            assert unsigned is not None and unsigned["39"] == "63"
            assert net.server.links["visa"].stats.sent == 0

            # A forged MAC (zeros) is refused...
            forged = build_request(pan="4111111111111111", amount=100, extra={"64": "0" * 16})
            answer = await client.request(forged)
            assert answer is not None and answer["39"] == "63"
            assert net.server.links["visa"].stats.sent == 0
            # ...and the real one is approved; the answer carries a good MAC too.
            signed = build_request(pan="4111111111111111", amount=100)
            ex = await client.submit(signed, message=mac.sign(signed, spec, store.get(ACQ_MAC)))
            await ex.done.wait()
            assert ex.answer is not None and ex.answer["39"] == "00"
            assert "64" in ex.answer
            unsigned_answer = {k: v for k, v in ex.answer.items() if k != "64"}
            expected = mac.sign(unsigned_answer, spec, store.get(ACQ_MAC))
            assert expected.endswith(ex.answer["64"].encode())


async def test_pin_block_is_translated_to_the_issuer_zone_key(
    tmp_path: Path, store: KeyStore
) -> None:
    seen: list[str] = []
    with trio.fail_after(20):
        async with network(tmp_path, tweak=_secure) as net:
            link = net.server.links["visa"]
            original = link.exchange

            async def spy(message: dict[str, str], **kw: Any) -> dict[str, str]:
                seen.append(message["52"])
                return await original(message, **kw)

            link.exchange = spy  # type: ignore[method-assign]
            client = await net.client()
            pan = "4111111111111111"
            block = encode_pin_block("1234", pan, store.get(ACQ_ZPK))
            answer = await client.request(build_request(pan=pan, amount=100, extra={"52": block}))
            assert answer is not None and answer["39"] == "00"
            assert seen and seen[0] != block
            assert decode_pin(seen[0], pan, store.get(VISA_ZPK)) == "1234"


async def test_pin_that_cannot_be_translated_is_refused_with_63(
    tmp_path: Path, store: KeyStore
) -> None:
    with trio.fail_after(20):
        async with network(tmp_path, tweak=lambda raw: _secure(raw, visa_pin=False)) as net:
            client = await net.client()
            pan = "4111111111111111"
            block = encode_pin_block("1234", pan, store.get(ACQ_ZPK))
            answer = await client.request(build_request(pan=pan, amount=100, extra={"52": block}))
            assert answer is not None and answer["39"] == "63"
            assert net.server.links["visa"].stats.sent == 0
