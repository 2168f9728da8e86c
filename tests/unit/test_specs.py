"""The spec registry: shipped dialects, pyiso8583 parity, and errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import iso8583.specs
import pytest

import specs
from specs import SpecError

_VALID = 'base = "iso8583-1987"\n[encoding]\nmti = "ascii"\n'


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_shipped_dialects_are_available_and_catalogs_are_not() -> None:
    assert specs.available() == ["belkart", "iso87ascii", "mastercard", "visa"]


def test_iso87ascii_is_default_ascii_field_by_field() -> None:
    ours = specs.load("iso87ascii").pyiso
    theirs = iso8583.specs.default_ascii
    assert set(ours) == set(theirs)
    for key in theirs:
        if key == "h":  # ours is a zero-length binary header either way
            continue
        mine = {k: v for k, v in ours[key].items() if k != "desc"}
        assert mine == {k: v for k, v in theirs[key].items() if k != "desc"}, key


def test_visa_packs_mti_and_numerics_as_bcd_and_text_as_ebcdic() -> None:
    pyiso = specs.load("visa").pyiso
    assert pyiso["t"]["data_enc"] == "b" and pyiso["t"]["max_len"] == 2
    pan = {k: pyiso["2"][k] for k in ("data_enc", "len_enc", "len_type", "len_count")}
    assert pan == {"data_enc": "b", "len_enc": "bcd", "len_type": 1, "len_count": "nibbles"}
    assert pyiso["41"]["data_enc"] == "cp500"
    assert pyiso["p"]["data_enc"] == "b"


def test_field_names_come_from_the_catalog() -> None:
    spec = specs.load("iso87ascii")
    assert spec.field_name("2") == "Primary Account Number (PAN)"
    assert spec.field_name("t") == "Message Type"
    assert spec.field_name("1") == "Bitmap, Secondary"


def test_each_dialect_names_its_ecommerce_field() -> None:
    places = {name: specs.load(name).ecommerce for name in specs.available()}
    assert {name: eco.field for name, eco in places.items() if eco} == {
        "belkart": "48",
        "iso87ascii": "48",
        "mastercard": "48",
        "visa": "126",
    }


def test_an_operator_adds_a_network_by_adding_a_file(tmp_path: Path) -> None:
    _write(tmp_path, "acme", _VALID + 'text = "cp500"\n')
    assert "acme" in specs.available([tmp_path])
    assert specs.load("acme", [tmp_path]).pyiso["41"]["data_enc"] == "cp500"


def test_a_file_in_spec_dirs_overrides_a_shipped_one(tmp_path: Path) -> None:
    _write(tmp_path, "visa", _VALID + '[fields.126]\nformat = "ans"\nlength = "LLL"\nmax = 9\n')
    assert specs.load("visa", [tmp_path]).fields["126"].max == 9


def test_unknown_spec_lists_the_available_ones() -> None:
    with pytest.raises(SpecError, match=r"unknown spec 'nosuch'; available: belkart, iso87ascii"):
        specs.load("nosuch")


@pytest.mark.parametrize("name", ["", "../visa", ".hidden"])
def test_names_that_are_paths_are_refused(name: str) -> None:
    with pytest.raises(SpecError, match="not a spec name"):
        specs.load(name)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('base = "iso8583-1987"\n[encoding\n', "not valid TOML"),
        (_VALID + "[fields.48]\nformat = 'q'\n", "fields.48.format"),
        (_VALID + "[fields.48]\nlength = 'LLLL'\n", "fields.48.length"),
        (_VALID + "[fields.48]\nmax = 0\n", "fields.48.max"),
        (_VALID + "[fields.48]\nmax = true\n", "fields.48.max"),
        (_VALID + "[fields.48]\ncolour = 'red'\n", "fields.48: unknown keys"),
        (_VALID + "[fields.200]\nformat = 'n'\nlength = 'fixed'\nmax = 3\n", "fields.200"),
        ('base = "iso8583-1987"\n[encoding]\nmti = "utf8"\n', "encoding.mti"),
        ('base = "iso8583-1987"\n[encoding]\nbitmap = 1\n', "encoding.bitmap"),
        ('base = "iso8583-1987"\n[encoding]\nparity = "odd"\n', "encoding.parity"),
        ('base = "iso8583-1987"\n', "encoding: missing"),
        ('base = "nope"\n[encoding]\n', "base: no field catalog 'nope'"),
        ("base = 5\n[encoding]\n", "base: expected a catalog name"),
        ("[encoding]\n", "fields: no fields"),
        ('colour = "red"\n' + _VALID, "colour: unknown key"),
        ('framing = "3x"\n' + _VALID, "framing: expected one of"),
        ("header = -1\n" + _VALID, "header: expected a byte count"),
        ('name = "other"\n' + _VALID, "name: must match the file name"),
        (
            _VALID + "[ecommerce]\nfield = 4\ncvv2 = 'C2'\neci = 'EC'\ncavv = 'AV'\n",
            "ecommerce.field",
        ),
        (_VALID + "[ecommerce]\nfield = 48\ncvv2 = 'C2'\neci = 'EC'\n", "ecommerce.cavv"),
        (_VALID + "[ecommerce]\nfield = 48\ntag_length = 9\n", "ecommerce.tag_length"),
    ],
)
def test_malformed_spec_file_error_names_the_file_and_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    _write(tmp_path, "broken", text)
    with pytest.raises(SpecError) as caught:
        specs.load("broken", [tmp_path])
    assert str(caught.value).startswith("broken.toml: ")
    assert key in str(caught.value)


def test_malformed_catalog_error_names_the_catalog_file(tmp_path: Path) -> None:
    _write(tmp_path, "mycatalog", "fields = 7\n")
    _write(tmp_path, "broken", 'base = "mycatalog"\n[encoding]\n')
    with pytest.raises(SpecError, match=r"^mycatalog\.toml: fields: expected a table"):
        specs.load("broken", [tmp_path])


def test_a_broken_file_is_still_listed_so_load_can_say_why(tmp_path: Path) -> None:
    _write(tmp_path, "broken", "[encoding\n")
    assert "broken" in specs.available([tmp_path])
