"""No card data at rest: after a broad mix of traffic, no file the switch, its
tools or the simulators wrote holds a PAN, CVV2, PIN block or CAVV.

Every card of the shipped card book goes through the in-process network
(netfixture) with CVV2 (F48 C2), e-commerce ECI/CAVV (F48 EC/AV), track 2
(F35), ICC data holding the PAN (F55) and PIN blocks (F52, translated between
zone keys), as approvals, declines, refunds, acquirer reversals and issuer
timeouts whose reversals wait in the SAF. The switch and the simulators log
at debug level to a file; the operator commands then write their reports and
exports to files. Every byte of every file under the test's folder (journal,
its -wal/-shm, SAF, ledgers, settlement, log, reports) is then searched for
each secret in the forms a program might write it: ASCII, packed BCD,
EBCDIC (cp500), hex upper and lower, raw bytes, and the dialects' TLV forms.

The shipped card book is the one file allowed to hold them; it is not under
the test's folder. Failures name the file and the kind of secret, never the
value.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import re
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner, Result

import specs
from simulators.cardbook import Card, CardBook
from simulators.cardbook import load as load_cardbook
from simulators.security import cavv_for
from switch.cli import main
from switch.client import AcquirerClient, Exchange, build_request
from switch.ecommerce import build_tlv, parse_tlv
from switch.keys import KeyStore
from switch.pin import encode_pin_block
from switch.server import setup_logging
from tests.integration.netfixture import NETWORKS, Network, network

ROOT = Path(__file__).resolve().parents[2]
ACQ_ZPK = "acquirer-zpk"
AMOUNT = 1000
SPECS = ("iso87ascii", *NETWORKS)


# -- the scanner --------------------------------------------------------------------


@dataclass
class Secrets:
    """What must never be at rest, each as the byte strings it could be written as."""

    needles: dict[bytes, str] = field(default_factory=dict)  # bytes -> kind (never the value)
    cvv2s: set[str] = field(default_factory=set)

    def text(self, kind: str, value: str) -> None:
        for form in {value, value.upper(), value.lower()}:
            self.needles[form.encode("ascii")] = kind
            self.needles[form.encode("cp500")] = f"{kind} (EBCDIC)"

    def pan(self, pan: str) -> None:
        self.text("PAN", pan)
        digits = pan if len(pan) % 2 == 0 else pan + "F"
        self.needles[bytes.fromhex(digits)] = "PAN (packed BCD)"
        if len(pan) % 2:
            self.needles[bytes.fromhex("0" + pan)] = "PAN (packed BCD)"

    def pin_block(self, block: str) -> None:
        self.text("PIN block", block)
        self.needles[bytes.fromhex(block)] = "PIN block (binary)"

    def cavv(self, cavv: str) -> None:
        self.text("CAVV", cavv)
        self.needles[base64.b64decode(cavv)] = "CAVV (binary)"

    def cvv2(self, cvv2: str) -> None:
        # Three digits occur everywhere by chance: look for them where a program
        # would put a CVV2, in each dialect's TLV, and next to a name (find()).
        self.cvv2s.add(cvv2)
        for name in SPECS:
            eco = specs.load(name).ecommerce
            assert eco is not None
            tlv = build_tlv([(eco.tags["cvv2"], cvv2)], eco.length_digits)
            self.text(f"CVV2 ({name} TLV)", tlv)

    def find(self, data: bytes) -> list[str]:
        hits = {kind for needle, kind in self.needles.items() if needle in data}
        if self.cvv2s:
            values = b"|".join(re.escape(v.encode()) for v in sorted(self.cvv2s))
            named = re.compile(rb"(?:cvv2?|cvc2?|\bc2)\W{0,8}(?:" + values + rb")(?!\d)")
            if named.search(data.lower()):  # lower() once: far faster than (?i)
                hits.add("CVV2")
        return sorted(hits)


def scan(folder: Path, wanted: Secrets) -> dict[str, list[str]]:
    """Every file under ``folder`` that holds a secret: relative path -> kinds found."""
    found: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            hits = wanted.find(path.read_bytes())
            if hits:
                found[str(path.relative_to(folder))] = hits
    return found


def test_the_scanner_finds_a_planted_pan_cvv2_pin_block_and_cavv(tmp_path: Path) -> None:
    pan, block = "4111111111111111", "0123456789ABCDEF"
    cavv = cavv_for(pan, AMOUNT)
    wanted = Secrets()
    wanted.pan(pan)
    wanted.pin_block(block)
    wanted.cavv(cavv)
    wanted.cvv2("123")
    plants = {
        "ascii.txt": f"x {pan} y".encode(),
        "bcd.bin": b"\x00" + bytes.fromhex(pan) + b"\x00",
        "ebcdic.bin": pan.encode("cp500"),
        "block-lower.log": block.lower().encode(),
        "cavv.json": f'{{"cavv": "{cavv}"}}'.encode(),
        "f48.txt": b"EC00205C2003123",
        "named.log": b"cvv2=123 ok",
        "deep/nested.db": b"\x01" * 4096 + block.encode() + b"\x02" * 10,
    }
    for name, data in plants.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "clean.txt").write_text("411111******1111 amount 123.00 at 12:30:00")
    found = scan(tmp_path, wanted)
    assert set(found) == set(plants)
    assert found["bcd.bin"] == ["PAN (packed BCD)"]
    assert found["ebcdic.bin"] == ["PAN (EBCDIC)"]
    assert found["f48.txt"] in (["CVV2 (belkart TLV)"], ["CVV2 (iso87ascii TLV)"])  # same bytes
    assert found["named.log"] == ["CVV2"]


# -- the traffic --------------------------------------------------------------------


@dataclass
class Keys:
    store: KeyStore
    zpk: dict[str, str]  # network -> key name of its zone PIN key


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Keys:
    master = secrets.token_bytes(32)
    monkeypatch.setenv("SWITCH_MASTER_KEY", master.hex())
    store = KeyStore.create(tmp_path / "var" / "keys.json", master)
    zpk = {name: f"{name}-zpk" for name in NETWORKS}
    for name in (ACQ_ZPK, *zpk.values()):
        store.generate(name, "ZPK")
    return Keys(store, zpk)


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """Everything logged, at debug level, into var/switch.log through the daemon's own setup."""
    path = tmp_path / "var" / "switch.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging("debug", path)
    try:
        yield path
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = handlers, level


def _track2(card: Card) -> str:
    return f"{card.pan}D{card.expiry}1010000012300000"  # BCD-safe separator


def _icc(card: Card) -> str:
    """EMV data as a terminal sends it: cryptogram (9F26) and the PAN in BCD (5A)."""
    return "9F2608" + secrets.token_hex(8).upper() + f"5A{len(card.pan) // 2:02X}{card.pan}"


@dataclass
class Traffic:
    keys: Keys
    wanted: Secrets = field(default_factory=Secrets)
    exchanges: list[Exchange] = field(default_factory=list)

    def remember(self, card: Card, request: dict[str, str]) -> None:
        self.wanted.pan(card.pan)
        self.wanted.text("track 2", _track2(card))
        if "52" in request:
            self.wanted.pin_block(request["52"])
            network_zpk = self.keys.store.get(self.keys.zpk[card.network])
            assert card.pin is not None
            self.wanted.pin_block(encode_pin_block(card.pin, card.pan, network_zpk))
        if "55" in request:
            self.wanted.text("ICC data", request["55"])
        for tag, value in parse_tlv(request.get("48", ""), 2, 3):
            if tag == "C2":
                self.wanted.cvv2(value)
            elif tag == "AV":
                self.wanted.cavv(value)

    async def send(self, client: AcquirerClient, card: Card, **kw: Any) -> Exchange:
        request = build_request(pan=card.pan, amount=kw.pop("amount", AMOUNT), **kw)
        self.remember(card, request)
        ex = await client.submit(request)
        self.exchanges.append(ex)
        return ex

    async def settle(self) -> None:
        for ex in self.exchanges:
            await ex.done.wait()


async def _first_round(traffic: Traffic, client: AcquirerClient, book: CardBook) -> None:
    """Every card: a purchase with CVV2, a card-present one with track 2, ICC and PIN,
    and an e-commerce one with ECI and CAVV (a wrong CAVV too for enrolled cards)."""
    for card in book:
        await traffic.send(client, card, cvv2=card.cvv2 or "123")
        present: dict[str, str] = {"35": _track2(card), "55": _icc(card), "22": "051"}
        if card.pin:
            zpk = traffic.keys.store.get(ACQ_ZPK)
            present["52"] = encode_pin_block(card.pin, card.pan, zpk)
        await traffic.send(client, card, mti="0200", expiry=None, extra=present)
        await traffic.send(
            client,
            card,
            ecommerce=True,
            cvv2=card.cvv2 or "123",
            eci="05",
            cavv=cavv_for(card.pan, AMOUNT),
        )
        if card.three_ds_enrolled:
            await traffic.send(
                client, card, ecommerce=True, eci="05", cavv=cavv_for(card.pan, AMOUNT + 1)
            )
    wrong_cvv2 = next(c for c in book if c.note.startswith("CVV2"))
    await traffic.send(client, wrong_cvv2, cvv2="987")


async def _second_round(traffic: Traffic, client: AcquirerClient, book: CardBook) -> int:
    """Refunds on every card, and acquirer reversals of the first round's approvals."""
    approved = [ex for ex in traffic.exchanges if ex.answer and ex.answer.get("39") == "00"]
    for card in book:
        if not (card.answer_delay or card.never_answers):
            await traffic.send(client, card, mti="0200", processing_code="200000", cvv2="123")
    for ex in approved[::3]:
        original = ex.request
        reversed_card = book.get(original["2"])
        assert reversed_card is not None
        f90 = original["t"] + original["11"] + original["7"] + "0" * 22
        await traffic.send(
            client,
            reversed_card,
            mti="0400",
            amount=int(original["4"]),
            processing_code=original["3"],
            extra={"90": f90},
        )
    return len(approved[::3])


# Requests the switch cannot carry: whatever it does with them (a decline, a
# closed connection), the values must not end up in an error text at rest.
MALFORMED = (
    {"48": "C2005123"},  # a TLV that runs past the end of F48
    {"35": "4000000000000002=30121010000012300000"},  # "=" has no packed-BCD form
    {"48": "AV003abcC2003123EC00205"},  # a CAVV of the wrong length
)


async def _malformed_round(traffic: Traffic, net: Network, book: CardBook) -> None:
    """Each on its own connection, as the switch may close it."""
    card = next(iter(book))
    for extra in MALFORMED:
        client = await net.client()
        request = build_request(pan=card.pan, amount=AMOUNT, extra=extra)
        traffic.wanted.pan(card.pan)
        for value in extra.values():
            traffic.wanted.text("malformed field", value)
        ex = await client.submit(request)
        await ex.done.wait()  # the answer, or the connection closed


def _secure(raw: dict[str, Any], keys: Keys) -> None:
    raw["listeners"][0]["pin_key"] = ACQ_ZPK
    for name, zpk in keys.zpk.items():
        raw["issuers"][name]["pin_key"] = zpk
        # The simulators hold the same zone keys (same store file, read only).
        raw["simulators"][name].update(keystore="var/keys.json", pin_key=zpk)


def _cli(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code in (0, 1), result.output  # 1: recon found breaks
    assert "Traceback" not in result.output
    return result


def _operator_outputs(config: Path, out: Path, txn_ids: list[str]) -> None:
    """What an operator writes to files: journal exports, reports, settlement, recon."""
    c = ("--config", str(config))
    day = dt.datetime.now(dt.UTC).date().isoformat()
    out.mkdir()
    exports = {
        "journal.json": ("journal", "--json", "--limit", "1000"),
        "journal.csv": ("journal", "--csv", "--limit", "1000"),
        "legs.csv": ("journal", "--legs", "--csv", "--limit", "1000"),
        "legs.txt": ("journal", "--legs", "--limit", "1000"),
        "report.txt": ("report",),
    }
    for name, args in exports.items():
        (out / name).write_text(_cli(*args, *c).output)
    for txn_id in txn_ids:
        (out / f"show-{txn_id}.json").write_text(
            _cli("journal", "show", txn_id, "--json", *c).output
        )
        (out / f"show-{txn_id}.txt").write_text(_cli("journal", "show", txn_id, *c).output)
    for fmt in ("json", "csv", "html"):
        _cli("report", "--format", fmt, "--out", str(out / f"report.{fmt}"), *c)
    for name in NETWORKS:
        _cli("sim", "settlement", "-n", name, "--date", day, "-o", str(out / f"{name}.csv"), *c)
    _cli("recon", "--date", day, "--out", str(out / "breaks.json"), *c)
    _cli("recon", "--date", day, "--out", str(out / "breaks.csv"), *c)


async def test_no_card_data_at_rest_after_every_kind_of_traffic(
    tmp_path: Path, keys: Keys, log_file: Path
) -> None:
    book = load_cardbook()
    traffic = Traffic(keys)
    config = tmp_path / "switch.toml"
    shutil.copy(ROOT / "switch.toml", config)  # same var/ paths as the network's; ports unused
    with trio.fail_after(30):
        async with network(tmp_path, tweak=lambda raw: _secure(raw, keys)) as net:
            client = await net.client()
            await _first_round(traffic, client, book)
            await traffic.settle()
            reversals = await _second_round(traffic, client, book)
            await traffic.settle()
            codes = [ex.answer["39"] if ex.answer else None for ex in traffic.exchanges]
            await _malformed_round(traffic, net, book)
            txn_ids = [row["txn_id"] for row in net.server.journal.find_transactions(limit=1000)]
            _revealed_is_the_card(config, net, txn_ids)
            await trio.to_thread.run_sync(_operator_outputs, config, tmp_path / "out", txn_ids[:5])
            assert (tmp_path / "var" / "journal.db-wal").exists()
            while_running = scan(tmp_path, traffic.wanted)
    after = scan(tmp_path, traffic.wanted)

    # The mix really happened: approvals, the declines the card book promises,
    # timeouts, reversals, and logs and files worth searching.
    assert None not in codes, "every request is answered"
    for code in ("00", "05", "41", "51", "54", "57", "91", "N7"):
        assert code in codes, f"no {code} in the mix"
    assert reversals >= 3
    with contextlib.closing(sqlite3.connect(tmp_path / "var" / "journal.db")) as db:
        assert db.execute("select count(*) from saf").fetchone()[0] >= 2  # the timeouts'
    assert len(txn_ids) >= len(traffic.exchanges)
    assert len(log_file.read_text().splitlines()) > 100
    assert {"journal.db", "sim-visa.db", "sim-belkart.db"} <= {p.name for p in tmp_path.rglob("*")}
    assert len(list((tmp_path / "out").iterdir())) >= 20
    assert len(traffic.wanted.needles) > 100

    assert while_running == {}, f"card data at rest (kinds per file): {while_running}"
    assert after == {}, f"card data at rest after shutdown (kinds per file): {after}"


def _revealed_is_the_card(config: Path, net: Network, txn_ids: list[str]) -> None:
    """`switch journal reveal` opens an issuer-routed transaction's PAN (stdout only)."""
    routed = [t for t in txn_ids if any(leg["pan_enc"] for leg in net.server.journal.legs_of(t))]
    result = CliRunner().invoke(main, ["journal", "reveal", routed[0], "--config", str(config)])
    assert result.exit_code == 0, result.stderr
    row = net.server.journal.transaction(routed[0])
    assert row is not None and net.vault.token(result.stdout.strip()) == row["pan_token"]
