"""Security between the switch and the issuer simulators, end to end over loopback.

The simulators verify what an issuer verifies: the PIN under their own zone
PIN key, the MAC of every request under the link's MAC key, the 3-D Secure
CAVV of enrolled cards; they take a new zone PIN key over key exchange
(0800/161) and can serve TLS. Each side has its own key store file; they
share key *values* only, as two real parties do after a key ceremony.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import specs
from simulators.security import cavv_for
from switch import admin, codec, mac, tls
from switch.client import AcquirerClient, build_request
from switch.errors import SecurityError
from switch.framing import Framing, encode_frame
from switch.keys import KeyStore
from switch.pin import encode_pin_block
from tests.integration.netfixture import NETWORKS, network

ACQ_ZPK = "acquirer-zpk"
Signed = tuple[dict[str, str], bytes]  # a request and its MAC'd bytes
PIN_CARDS = {
    "visa": "4111111111111111",
    "mastercard": "5555555555554444",
    "belkart": "9112000000000006",
}
ENROLLED = {
    "visa": "4000000000000200",
    "mastercard": "5200000000000007",
    "belkart": "9112000000000022",
}


class Stores:
    """The switch's key store and each simulator's, under one master key."""

    def __init__(self, tmp: Path) -> None:
        master = secrets.token_bytes(32)
        self.master = master
        self.switch = KeyStore.create(tmp / "var" / "keys.json", master)
        self.sims = {
            name: KeyStore.create(tmp / "var" / f"sim-{name}-keys.json", master)
            for name in NETWORKS
        }
        self.switch.generate(ACQ_ZPK, "ZPK")

    def shared(
        self, network: str, name: str, key_type: str, *, sim_value: bytes | None = None
    ) -> None:
        """Key ``name`` on both sides of ``network``'s link (or a different value at the issuer)."""
        entry = self.switch.generate(name, key_type)
        value = sim_value if sim_value is not None else self.switch.get(name)
        self.sims[network].import_key(name, key_type, value.hex(), algorithm=entry.algorithm)


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stores:
    made = Stores(tmp_path)
    monkeypatch.setenv("SWITCH_MASTER_KEY", made.master.hex())
    return made


def _keys(**per_side: dict[str, str]) -> Callable[[dict[str, Any]], None]:
    """A config tweak: key names per network for the switch's link and the simulator."""

    def tweak(raw: dict[str, Any]) -> None:
        raw["listeners"][0]["pin_key"] = ACQ_ZPK
        for side, names in per_side.items():
            table, network = (
                ("issuers", side[len("link_") :])
                if side.startswith("link_")
                else (
                    "simulators",
                    side[len("sim_") :],
                )
            )
            raw[table][network].update(names)

    return tweak


def _pin_request(stores: Stores, pan: str, pin: str, amount: int = 100) -> dict[str, str]:
    block = encode_pin_block(pin, pan, stores.switch.get(ACQ_ZPK))
    return build_request(pan=pan, amount=amount, extra={"52": block})


async def _code(client: AcquirerClient, request: dict[str, str]) -> str:
    answer = await client.request(request)
    assert answer is not None
    return answer["39"]


def _pin_tweak(stores: Stores, *, kek: bool = False) -> Callable[[dict[str, Any]], None]:
    sides: dict[str, dict[str, str]] = {}
    for net in NETWORKS:
        stores.shared(net, f"{net}-zpk", "ZPK")
        names = {"pin_key": f"{net}-zpk"}
        if kek:
            names["kek_key"] = f"{net}-kek"
        sides[f"link_{net}"] = sides[f"sim_{net}"] = names
    return _keys(**sides)


async def test_each_issuer_verifies_the_translated_pin(tmp_path: Path, stores: Stores) -> None:
    with trio.fail_after(30):
        async with network(tmp_path, tweak=_pin_tweak(stores)) as net:
            client = await net.client()
            for name, pan in PIN_CARDS.items():
                assert await _code(client, _pin_request(stores, pan, "1234")) == "00", name
                assert await _code(client, _pin_request(stores, pan, "4321")) == "55", name
                assert await _code(client, _pin_request(stores, pan, "12345")) == "55", name


async def test_key_exchange_gives_the_issuer_the_new_pin_key(
    tmp_path: Path, stores: Stores
) -> None:
    for name in NETWORKS:
        stores.shared(name, f"{name}-kek", "KEK")
    with trio.fail_after(30):
        async with network(tmp_path, tweak=_pin_tweak(stores, kek=True)) as net:
            client = await net.client()
            for name, pan in PIN_CARDS.items():
                before = stores.switch.entry(f"{name}-zpk")
                kcv = await net.server.links[name].exchange_key()
                assert kcv != before.kcv
                sim_store = KeyStore.open(stores.sims[name].path, stores.master)
                assert sim_store.entry(f"{name}-zpk").kcv == kcv
                assert sim_store.entry(f"{name}-zpk").version == before.version + 1
                # Traffic goes on under the new key: right PIN 00, wrong 55.
                assert await _code(client, _pin_request(stores, pan, "1234")) == "00", name
                assert await _code(client, _pin_request(stores, pan, "9999")) == "55", name


async def test_key_exchange_under_a_wrong_kek_is_refused_and_the_old_key_stays(
    tmp_path: Path, stores: Stores
) -> None:
    stores.shared("visa", "visa-zpk", "ZPK")
    stores.shared("visa", "visa-kek", "KEK", sim_value=secrets.token_bytes(32))
    names = {"pin_key": "visa-zpk", "kek_key": "visa-kek"}
    with trio.fail_after(30):
        async with network(tmp_path, tweak=_keys(link_visa=names, sim_visa=names)) as net:
            before = stores.switch.entry("visa-zpk")
            with pytest.raises(SecurityError, match="refused"):
                await net.server.links["visa"].exchange_key()
            after = KeyStore.open(stores.switch.path, stores.master).entry("visa-zpk")
            assert after.kcv == before.kcv
            sim_after = KeyStore.open(stores.sims["visa"].path, stores.master).entry("visa-zpk")
            assert sim_after.kcv == before.kcv and sim_after.version == before.version
            client = await net.client()
            assert await _code(client, _pin_request(stores, PIN_CARDS["visa"], "1234")) == "00"


@pytest.mark.parametrize("mac_on", ["both", "issuer_only", "different_keys"])
async def test_issuer_link_mac(tmp_path: Path, stores: Stores, mac_on: str) -> None:
    sides: dict[str, dict[str, str]] = {}
    for name in NETWORKS:
        other = secrets.token_bytes(16) if mac_on == "different_keys" else None
        stores.shared(name, f"{name}-zak", "ZAK", sim_value=other)
        sides[f"sim_{name}"] = {"mac_key": f"{name}-zak"}
        if mac_on != "issuer_only":
            sides[f"link_{name}"] = {"mac_key": f"{name}-zak"}
    # Sign-on off: an issuer that wants a MAC the switch does not send would refuse it too.
    expected = {"both": "00", "issuer_only": "63", "different_keys": "63"}[mac_on]
    with trio.fail_after(30):
        async with network(tmp_path, tweak=_keys(**sides), sign_on=False) as net:
            client = await net.client()
            for name, pan in PIN_CARDS.items():
                # issuer_only: the issuer refuses the unsigned request (63, passed on);
                # different_keys: it refuses ours, and its signed answer fails our
                # check too: never acted on, the acquirer hears 63 and the request
                # is reversed (an issuer may have acted on it).
                code = await _code(client, build_request(pan=pan, amount=100))
                assert code == expected, (name, code)
                assert net.server.links[name].stats.sent >= 1, name
            if mac_on == "different_keys":
                # Their reversals wait in SAF: the issuer's answers to them fail the MAC too.
                assert net.server.saf.depth() == len(PIN_CARDS)


async def test_3d_secure_cavv_is_checked_for_enrolled_cards(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with network(tmp_path) as net:
            client = await net.client()
            for name, pan in ENROLLED.items():

                def eco(cavv: str | None, amount: int = 2500, card: str = pan) -> dict[str, str]:
                    return build_request(
                        pan=card, amount=amount, ecommerce=True, eci="05", cavv=cavv
                    )

                assert await _code(client, eco(cavv_for(pan, 2500))) == "00", name
                assert await _code(client, eco(cavv_for(pan, 2600))) == "05", name  # other amount
                assert await _code(client, eco("A" * 28)) == "05", name
                assert await _code(client, eco(None)) == "05", name
                # Not e-commerce (a card-present sale): no CAVV asked for.
                plain = build_request(pan=pan, amount=2500)
                assert await _code(client, plain) == "00", name
            # A card that is not enrolled needs none.
            eco_plain = build_request(pan="4111111111111111", amount=2500, ecommerce=True)
            assert await _code(client, eco_plain) == "00"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    return tls.make_test_pki(tmp_path / "pki", name="issuer")


async def test_issuer_links_over_mutual_tls_and_other_peers_do_not_disturb(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    def tweak(raw: dict[str, Any]) -> None:
        for name in NETWORKS:
            raw["simulators"][name]["tls_cert"] = str(pki["server_cert"])
            raw["simulators"][name]["tls_key"] = str(pki["server_key"])
            raw["simulators"][name]["tls_client_ca"] = str(pki["ca_cert"])
            raw["issuers"][name]["tls_ca"] = str(pki["ca_cert"])
            raw["issuers"][name]["tls_cert"] = str(pki["client_cert"])
            raw["issuers"][name]["tls_key"] = str(pki["client_key"])

    with trio.fail_after(30):
        async with network(tmp_path, tweak=tweak) as net:
            client = await net.client()
            for name, pan in PIN_CARDS.items():
                assert await _code(client, build_request(pan=pan, amount=100)) == "00", name
            # A plaintext peer on the Visa issuer's TLS port is dropped...
            plain = await trio.open_tcp_stream("127.0.0.1", net.sim_ports["visa"])
            await plain.send_all(encode_frame(b"0800" + b"0" * 16, Framing(kind="2b")))
            with trio.fail_after(5):
                while await plain.receive_some(4096):
                    pass
            await plain.aclose()
            # ...so is a TLS peer without a client certificate: its echo goes unanswered.
            echo = {"t": "0800", "7": "1129000000", "11": "000001", "70": "301"}
            got = b""
            stream = await trio.open_ssl_over_tcp_stream(
                "127.0.0.1", net.sim_ports["visa"], ssl_context=tls.client_context(pki["ca_cert"])
            )
            try:
                with trio.fail_after(5):
                    try:
                        frame = codec.encode(echo, specs.load("visa"))
                        await stream.send_all(encode_frame(frame, Framing(kind="2b")))
                        while data := await stream.receive_some(4096):
                            got += data
                    except trio.BrokenResourceError:
                        pass  # the handshake's certificate alert
            finally:
                await trio.aclose_forcefully(stream)
            assert got == b""
            # ...and the switch's TLS link carries on.
            assert await _code(client, build_request(pan=PIN_CARDS["visa"], amount=100)) == "00"
            assert all(link.up_event.is_set() for link in net.server.links.values())


async def test_key_rotation_and_reload_keep_traffic_flowing(tmp_path: Path, stores: Stores) -> None:
    """Rotate the acquirer's MAC and PIN keys under a running switch: nothing is refused
    in the grace time, new keys work at once, and a key past its grace is refused."""
    stores.switch.generate("acquirer-zak", "ZAK")
    stores.shared("visa", "visa-zpk", "ZPK")
    tweak = _keys(link_visa={"pin_key": "visa-zpk"}, sim_visa={"pin_key": "visa-zpk"})

    def with_mac(raw: dict[str, Any]) -> None:
        tweak(raw)
        raw["listeners"][0]["mac_key"] = "acquirer-zak"

    pan = PIN_CARDS["visa"]
    spec = specs.load("iso87ascii")

    def signed(mac_key: bytes, zpk: bytes, pin: str = "1234") -> Signed:
        request = build_request(pan=pan, amount=100, extra={"52": encode_pin_block(pin, pan, zpk)})
        return request, mac.sign(request, spec, mac_key)

    async def send_all(
        client: AcquirerClient, batch: list[tuple[dict[str, str], bytes]]
    ) -> list[str]:
        exchanges = [await client.submit(r, message=m) for r, m in batch]
        codes = []
        for ex in exchanges:
            with trio.fail_after(10):
                await ex.done.wait()
            assert ex.answer is not None
            codes.append(ex.answer["39"])
        return codes

    async def reload(net: Any) -> None:
        answer = await trio.to_thread.run_sync(
            lambda: admin.call(net.config.switch.admin_socket, {"cmd": "keys_reload"})
        )
        assert answer["ok"], answer

    with trio.fail_after(60):
        async with network(tmp_path, tweak=with_mac) as net:
            client = await net.client()
            old_mac, old_zpk = stores.switch.get("acquirer-zak"), stores.switch.get(ACQ_ZPK)
            # Requests built under the old keys, some sent before and some after the rotation.
            before = [signed(old_mac, old_zpk) for _ in range(10)]
            in_flight = [await client.submit(r, message=m) for r, m in before[:5]]
            operator = KeyStore.open(stores.switch.path, stores.master)  # `switch keys rotate`
            operator.rotate("acquirer-zak")
            operator.rotate(ACQ_ZPK)
            await reload(net)
            for ex in in_flight:
                with trio.fail_after(10):
                    await ex.done.wait()
                assert ex.answer is not None and ex.answer["39"] == "00"
            assert await send_all(client, before[5:]) == ["00"] * 5  # old keys, in grace
            new_mac, new_zpk = operator.get("acquirer-zak"), operator.get(ACQ_ZPK)
            assert (new_mac, new_zpk) != (old_mac, old_zpk)
            assert await send_all(client, [signed(new_mac, new_zpk)]) == ["00"]
            assert await send_all(client, [signed(new_mac, new_zpk, "0000")]) == ["55"]
            # A second rotation with no grace: the first key is gone, the second
            # is refused at once (63 for a MAC the switch cannot verify).
            operator.rotate("acquirer-zak", grace=dt.timedelta(0))
            await reload(net)
            assert await send_all(client, [signed(new_mac, new_zpk)]) == ["63"]
            assert await send_all(client, [signed(operator.get("acquirer-zak"), new_zpk)]) == ["00"]


async def test_a_reversal_answered_with_a_bad_mac_goes_to_saf_and_the_switch_stays_up(
    tmp_path: Path, stores: Stores
) -> None:
    # The issuer signs with another key: its 0410 proves nothing, so the reversal is
    # the SAF's to deliver, as when the issuer does not answer it.
    stores.shared("mastercard", "mastercard-zak", "ZAK", sim_value=secrets.token_bytes(16))
    sides = {"sim_mastercard": {"mac_key": "mastercard-zak"}}
    sides["link_mastercard"] = {"mac_key": "mastercard-zak"}
    with trio.fail_after(30):
        async with network(tmp_path, tweak=_keys(**sides), sign_on=False) as net:
            client = await net.client()
            sale = build_request(pan=PIN_CARDS["mastercard"], amount=100)
            assert await _code(client, sale) == "63"
            f90 = "0100" + sale["11"] + sale["7"] + "0" * 22
            reversal = build_request(
                mti="0400", pan=PIN_CARDS["mastercard"], amount=100, extra={"90": f90}
            )
            assert await _code(client, reversal) == "00"
            assert await _code(client, build_request(pan=PIN_CARDS["visa"], amount=100)) == "00"
            pending = net.server.saf.pending("mastercard")
            assert {entry.reason for entry in pending} == {"auto", "acquirer"}
