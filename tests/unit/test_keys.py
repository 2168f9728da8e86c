"""Key store: encrypted at rest, KCVs, rotation with a grace time, TR-31, master key."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import psec
import pytest

from switch.config import SecurityConfig
from switch.errors import SecurityError
from switch.keys import (
    KeyStore,
    check_value,
    load_master_key,
    tdes_decrypt,
    tdes_encrypt,
)

MASTER = bytes(range(32))
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
# psec's published TDES KCV example (ANSI X9.24 KCV: encrypt 8 zero bytes).
KNOWN_TDES = "0123456789ABCDEFFEDCBA9876543210"


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore.create(tmp_path / "keys.json", MASTER)


def test_tdes_kcv_is_the_first_three_bytes_of_zeros_encrypted() -> None:
    assert check_value(bytes.fromhex(KNOWN_TDES), "tdes2") == "08D7B4"


def test_aes_kcv_is_five_bytes_of_cmac_over_zeros() -> None:
    kcv = check_value(bytes(32), "aes256")
    assert len(kcv) == 10
    assert kcv == check_value(bytes(32), "aes256")
    assert kcv != check_value(bytes([1]) + bytes(31), "aes256")


def test_tdes_helpers_round_trip_and_a_16_byte_key_is_k1_k2_k1() -> None:
    key = bytes.fromhex(KNOWN_TDES)
    block = bytes.fromhex("0412AC89ABCDEF67")
    assert tdes_decrypt(key, tdes_encrypt(key, block)) == block
    assert tdes_encrypt(key, block) == tdes_encrypt(key + key[:8], block)


def test_values_are_encrypted_at_rest_and_never_in_the_file(store: KeyStore) -> None:
    store.import_key("acq.zpk", "ZPK", KNOWN_TDES, kcv="08D7B4", now=T0)
    text = store.path.read_text()
    assert KNOWN_TDES.lower() not in text.lower()
    assert "08D7B4" in text
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"
    again = KeyStore.open(store.path, MASTER)
    assert again.get("acq.zpk") == bytes.fromhex(KNOWN_TDES)


def test_entries_show_metadata_only(store: KeyStore) -> None:
    store.generate("visa.zak", "MAC", now=T0)
    store.generate("visa.kek", "ZMK", now=T0)
    entries = store.entries()
    assert [(e.name, e.type, e.algorithm, e.version) for e in entries] == [
        ("visa.kek", "KEK", "aes256", 1),
        ("visa.zak", "ZAK", "tdes2", 1),
    ]
    assert entries[1].kcv == check_value(store.get("visa.zak"), "tdes2")
    assert entries[1].created == "2025-03-01T12:00:00+00:00"
    shown = repr(store) + repr(entries) + json.dumps([e.as_dict() for e in entries])
    for name in ("visa.zak", "visa.kek"):
        assert store.get(name).hex() not in shown.lower()


def test_generated_tdes_keys_have_odd_parity(store: KeyStore) -> None:
    store.generate("z", "ZPK", "tdes3")
    value = store.get("z")
    assert len(value) == 24
    assert all(bin(b).count("1") % 2 == 1 for b in value)


def test_a_wrong_master_key_does_not_open_the_store(store: KeyStore) -> None:
    with pytest.raises(SecurityError, match="does not open under this master key"):
        KeyStore.open(store.path, bytes(32))


def test_an_entry_moved_to_another_name_does_not_open(store: KeyStore) -> None:
    store.generate("a", "ZPK")
    store.generate("b", "ZPK")
    doc = json.loads(store.path.read_text())
    doc["keys"]["b"]["current"]["value"] = doc["keys"]["a"]["current"]["value"]
    store.path.write_text(json.dumps(doc))
    tampered = KeyStore.open(store.path, MASTER)
    with pytest.raises(SecurityError, match="tampered"):
        tampered.get("b")


def test_import_checks_the_kcv_without_echoing_the_value(store: KeyStore) -> None:
    with pytest.raises(SecurityError) as caught:
        store.import_key("z", "ZPK", KNOWN_TDES, kcv="000000")
    assert "check value" in str(caught.value)
    assert KNOWN_TDES.lower() not in str(caught.value).lower()
    assert "z" not in store


@pytest.mark.parametrize(
    ("key_type", "value", "problem"),
    [
        ("ZPK", "00" * 32, "ZPK key is tdes2 or tdes3"),
        ("ZAK", "0123456789ABCDEF" * 3, "ZAK key is tdes2"),
        ("PVK", KNOWN_TDES, "unknown key type"),
        ("ZPK", "xyz", "hex digits"),
        ("ZPK", "0123456789ABCDEF" * 2, "single DES"),
    ],
)
def test_import_refuses_keys_that_do_not_fit(
    store: KeyStore, key_type: str, value: str, problem: str
) -> None:
    with pytest.raises(SecurityError, match=problem):
        store.import_key("z", key_type, value)


def test_names_are_unique_and_checked(store: KeyStore) -> None:
    store.generate("z", "ZPK")
    with pytest.raises(SecurityError, match="use rotate"):
        store.generate("z", "ZPK")
    with pytest.raises(SecurityError, match="bad key name"):
        store.generate("../x", "ZPK")
    with pytest.raises(SecurityError, match="no key named"):
        store.get("nope")


def test_rotation_keeps_the_previous_version_for_the_grace_time(store: KeyStore) -> None:
    store.generate("z", "ZAK", now=T0)
    old = store.get("z")
    entry = store.rotate("z", grace=dt.timedelta(hours=1), now=T0)
    new = store.get("z")
    assert new != old
    assert (entry.version, entry.previous_version) == (2, 1)
    assert entry.previous_kcv == check_value(old, "tdes2")
    assert store.candidates("z", T0 + dt.timedelta(minutes=59)) == [new, old]
    assert store.candidates("z", T0 + dt.timedelta(hours=1)) == [new]
    # Persisted: a reopened store agrees.
    assert KeyStore.open(store.path, MASTER).candidates("z", T0) == [new, old]


def test_a_second_rotation_drops_the_oldest(store: KeyStore) -> None:
    store.generate("z", "ZPK", now=T0)
    store.rotate("z", now=T0)
    middle = store.get("z")
    entry = store.rotate("z", now=T0)
    assert entry.version == 3
    assert store.candidates("z", T0)[1:] == [middle]


def test_tr31_round_trip_under_an_aes_kek_rotates_the_receiver(
    store: KeyStore, tmp_path: Path
) -> None:
    store.generate("kek", "KEK", now=T0)
    store.generate("visa.zpk", "ZPK", now=T0)
    block = store.export_tr31("visa.zpk", "kek")
    assert block.startswith("D") and block[5:7] == "P0"
    other = KeyStore.create(tmp_path / "other.json", MASTER)
    other.import_key("kek", "KEK", store.get("kek").hex())
    other.generate("visa.zpk", "ZPK", now=T0)
    first = other.get("visa.zpk")
    entry = other.import_tr31("visa.zpk", block, "kek", now=T0)
    assert other.get("visa.zpk") == store.get("visa.zpk")
    assert entry.version == 2
    assert other.candidates("visa.zpk", T0)[1] == first


def test_tr31_under_a_tdes_kek_is_version_b_and_creates_new_names(store: KeyStore) -> None:
    store.generate("kek", "KEK", "tdes2")
    store.generate("mc.zak", "ZAK")
    block = store.export_tr31("mc.zak", "kek")
    assert block.startswith("B") and block[5:7] == "M3"
    entry = store.import_tr31("mc.zak.copy", block, "kek")
    assert (entry.type, entry.algorithm) == ("ZAK", "tdes2")
    assert store.get("mc.zak.copy") == store.get("mc.zak")


def test_tr31_opens_a_block_wrapped_by_psec_directly(store: KeyStore) -> None:
    kek, zpk = bytes(range(32)), bytes.fromhex(KNOWN_TDES)
    store.import_key("kek", "KEK", kek.hex())
    block = psec.tr31.wrap(kek, "D0000P0TB00E0000", zpk)
    entry = store.import_tr31("zpk", block, "kek")
    assert (entry.type, entry.kcv) == ("ZPK", "08D7B4")


def test_tr31_errors_do_not_quote_the_block(store: KeyStore) -> None:
    store.generate("kek", "KEK")
    store.generate("wrong", "KEK")
    store.generate("z", "ZPK")
    block = store.export_tr31("z", "kek")
    with pytest.raises(SecurityError) as caught:
        store.import_tr31("z2", block, "wrong")
    assert block[16:40] not in str(caught.value)
    with pytest.raises(SecurityError, match="not a KEK"):
        store.export_tr31("z", "z")


def test_create_refuses_an_existing_store(store: KeyStore) -> None:
    with pytest.raises(SecurityError, match="already exists"):
        KeyStore.create(store.path, MASTER)


def test_open_names_a_missing_or_broken_store(tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match="keys init"):
        KeyStore.open(tmp_path / "none.json", MASTER)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SecurityError, match="unreadable"):
        KeyStore.open(tmp_path / "bad.json", MASTER)


def test_master_key_comes_from_the_environment_first(tmp_path: Path) -> None:
    security = SecurityConfig(keystore=tmp_path / "keys.json", master_key_env="MK")
    assert load_master_key(security, environ={"MK": MASTER.hex()}) == MASTER
    with pytest.raises(SecurityError, match="64 hex digits") as caught:
        load_master_key(security, environ={"MK": "abcd"})
    assert "abcd" not in str(caught.value)


def test_master_key_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(MASTER.hex() + "\n")
    security = SecurityConfig(keystore=tmp_path / "keys.json")
    os.chmod(path, 0o644)
    with pytest.raises(SecurityError, match="must be 0600"):
        load_master_key(security, environ={})
    os.chmod(path, 0o600)
    assert load_master_key(security, environ={}) == MASTER


def test_no_master_key_says_where_to_put_one() -> None:
    with pytest.raises(SecurityError, match="set SWITCH_MASTER_KEY"):
        load_master_key(SecurityConfig(), environ={})


def test_psec_agrees_on_the_tdes_kcv() -> None:
    import warnings

    key = bytes.fromhex(KNOWN_TDES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = psec.des.generate_kcv(key, 3).hex().upper()
    assert check_value(key, "tdes2") == expected
