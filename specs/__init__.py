"""Network dialects as data: the registry that turns spec files into codecs.

A dialect is one TOML file in this folder (or in a folder named by
``switch.toml``'s ``switch.spec_dirs``). It names a field catalog (``base``,
normally ``iso8583-1987``), the wire encodings of MTI, bitmap, numeric, text,
binary and length parts, a default framing, optional per-field overrides, and
where the network carries e-commerce data (CVV2, ECI, CAVV). From that we
build the field dictionary pyiso8583 encodes with, so adding a network is
adding a file, not code.

Invariants:
- A message is a ``dict[str, str]`` in pyiso8583's decoded form whatever the
  dialect: ``"t"`` the MTI, ``"2"``.. ``"128"`` field values, binary fields
  as hex strings. Translating between dialects is therefore field mapping,
  never re-encoding by hand.
- A malformed spec file raises :class:`SpecError` naming the file and the key.

This package imports nothing of ours (shared STYLE.md, section 1).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SPEC_DIR",
    "Ecommerce",
    "FieldDef",
    "Spec",
    "SpecError",
    "available",
    "load",
]

SPEC_DIR = Path(__file__).resolve().parent

_FORMATS = frozenset({"n", "an", "ans", "b", "z"})
_LENGTHS = {"fixed": 0, "LL": 2, "LLL": 3}
_MTI_ENCODINGS = frozenset({"ascii", "cp500", "bcd"})
_BITMAPS = frozenset({"hex", "binary"})
_NUMERIC = frozenset({"ascii", "cp500", "bcd"})
_TEXT = frozenset({"ascii", "cp500", "latin-1"})
_BINARY = frozenset({"hex", "raw"})
_LENGTH_ENCODINGS = frozenset({"ascii", "cp500", "bcd", "binary"})
FRAMINGS = frozenset({"2b", "4a", "2bcd", "4b"})
_TOP_KEYS = frozenset(
    {"name", "description", "base", "framing", "header", "encoding", "fields", "ecommerce"}
)


_NON_FIELD_NAMES = {
    "t": "Message Type",
    "p": "Bitmap, Primary",
    "1": "Bitmap, Secondary",
    "h": "Header",
}


class SpecError(ValueError):
    """A spec file is missing or malformed; the message names file and key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldDef:
    number: int
    format: str
    length: str
    max: int
    name: str

    @property
    def numeric(self) -> bool:
        return self.format == "n"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ecommerce:
    """Where a network carries CVV2, ECI and CAVV: tag-length-value in one field."""

    field: str
    tag_length: int
    length_digits: int
    tags: Mapping[str, str]  # role ("cvv2", "eci", "cavv") -> tag on the wire


@dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    name: str
    description: str
    framing: str
    header_length: int
    fields: Mapping[str, FieldDef]
    pyiso: dict[str, dict[str, Any]]
    ecommerce: Ecommerce | None
    source: Path = field(compare=False)

    def field_name(self, number: str) -> str:
        fd = self.fields.get(number)
        if fd is not None:
            return fd.name
        return _NON_FIELD_NAMES.get(number, number)


def _fail(path: Path, key: str, problem: str) -> SpecError:
    return SpecError(f"{path.name}: {key}: {problem}")


def _choice(
    path: Path, table: Mapping[str, Any], key: str, allowed: frozenset[str], default: str
) -> str:
    value = table.get(key, default)
    if value not in allowed:
        raise _fail(path, f"encoding.{key}", f"expected one of {sorted(allowed)}, got {value!r}")
    return str(value)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SpecError(f"{path.name}: no such spec file ({path})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path.name}: not valid TOML: {exc}") from None


def _field_defs(path: Path, table: Mapping[str, Any], prefix: str) -> dict[str, FieldDef]:
    out: dict[str, FieldDef] = {}
    for key, raw in table.items():
        where = f"{prefix}.{key}"
        if not key.isdigit() or not 2 <= int(key) <= 128:
            raise _fail(path, where, "field numbers run from 2 to 128")
        if not isinstance(raw, dict):
            raise _fail(path, where, "expected a table")
        unknown = set(raw) - {"format", "length", "max", "name"}
        if unknown:
            raise _fail(path, where, f"unknown keys {sorted(unknown)}")
        fmt = raw.get("format")
        if fmt not in _FORMATS:
            raise _fail(path, f"{where}.format", f"expected one of {sorted(_FORMATS)}, got {fmt!r}")
        length = raw.get("length")
        if length not in _LENGTHS:
            raise _fail(path, f"{where}.length", f"expected fixed, LL or LLL, got {length!r}")
        size = raw.get("max")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 9999:
            raise _fail(path, f"{where}.max", f"expected a positive integer, got {size!r}")
        out[key] = FieldDef(
            number=int(key), format=fmt, length=length, max=size, name=str(raw.get("name", key))
        )
    return out


def _merge_overrides(
    path: Path, base: dict[str, FieldDef], overrides: Mapping[str, Any]
) -> dict[str, FieldDef]:
    merged = dict(base)
    for key, raw in overrides.items():
        if not isinstance(raw, dict):
            raise _fail(path, f"fields.{key}", "expected a table")
        current = merged.get(key)
        full = {
            "format": current.format if current else None,
            "length": current.length if current else None,
            "max": current.max if current else None,
            "name": current.name if current else key,
        }
        full.update(raw)
        merged.update(_field_defs(path, {key: full}, "fields"))
    return merged


def _length_part(length_enc: str, length: str) -> tuple[str, int]:
    """pyiso8583 (len_enc, len_type) for a variable field's length prefix."""
    digits = _LENGTHS[length]
    if digits == 0:
        return "ascii", 0
    if length_enc in ("bcd", "binary"):
        # LL fits one BCD/binary byte, LLL two (pyiso8583 len_type table).
        return ("bcd" if length_enc == "bcd" else "b"), (1 if digits == 2 else 2)
    return length_enc, digits


def _pyiso_field(fd: FieldDef, enc: Mapping[str, str]) -> dict[str, Any]:
    len_enc, len_type = _length_part(enc["length"], fd.length)
    entry: dict[str, Any] = {"len_enc": len_enc, "len_type": len_type, "desc": fd.name}
    if fd.format in ("n", "z") and enc["numeric"] == "bcd":
        entry.update(data_enc="b", max_len=fd.max, len_count="nibbles")
        if fd.format == "z":
            entry["right_pad"] = "F"
        else:
            entry["left_pad"] = "0"
    elif fd.format in ("n", "z"):
        entry.update(data_enc=enc["numeric"], max_len=fd.max)
    elif fd.format == "b" and enc["binary"] == "raw":
        entry.update(data_enc="b", max_len=fd.max)
    elif fd.format == "b":
        # Binary carried as hex digits in the text encoding: twice the bytes.
        entry.update(data_enc=enc["text"], max_len=fd.max * 2)
    else:
        entry.update(data_enc=enc["text"], max_len=fd.max)
    return entry


def _build_pyiso(
    fields: Mapping[str, FieldDef], enc: Mapping[str, str], header_length: int
) -> dict[str, dict[str, Any]]:
    text = enc["text"]
    spec: dict[str, dict[str, Any]] = {
        "h": {
            "data_enc": "b",
            "len_enc": "ascii",
            "len_type": 0,
            "max_len": header_length,
            "desc": "Message Header",
        },
    }
    if enc["mti"] == "bcd":
        spec["t"] = {
            "data_enc": "b",
            "len_enc": "ascii",
            "len_type": 0,
            "max_len": 2,
            "desc": "Message Type",
        }
    else:
        spec["t"] = {
            "data_enc": enc["mti"],
            "len_enc": "ascii",
            "len_type": 0,
            "max_len": 4,
            "desc": "Message Type",
        }
    for key, desc in (("p", "Bitmap, Primary"), ("1", "Bitmap, Secondary")):
        if enc["bitmap"] == "binary":
            spec[key] = {
                "data_enc": "b",
                "len_enc": "ascii",
                "len_type": 0,
                "max_len": 8,
                "desc": desc,
            }
        else:
            spec[key] = {
                "data_enc": text if text != "latin-1" else "ascii",
                "len_enc": "ascii",
                "len_type": 0,
                "max_len": 16,
                "desc": desc,
            }
    for key, fd in fields.items():
        if key == "1":
            continue
        spec[key] = _pyiso_field(fd, enc)
    return spec


def _ecommerce(path: Path, raw: Any) -> Ecommerce | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fail(path, "ecommerce", "expected a table")
    unknown = set(raw) - {"field", "tag_length", "length_digits", "cvv2", "eci", "cavv"}
    if unknown:
        raise _fail(path, "ecommerce", f"unknown keys {sorted(unknown)}")
    number = raw.get("field")
    if not isinstance(number, int) or not 2 <= number <= 128:
        raise _fail(path, "ecommerce.field", f"expected a field number 2-128, got {number!r}")
    tag_length = raw.get("tag_length", 2)
    length_digits = raw.get("length_digits", 3)
    for key, value in (("tag_length", tag_length), ("length_digits", length_digits)):
        if not isinstance(value, int) or not 1 <= value <= 4:
            raise _fail(path, f"ecommerce.{key}", f"expected an integer 1-4, got {value!r}")
    tags: dict[str, str] = {}
    for role in ("cvv2", "eci", "cavv"):
        tag = raw.get(role)
        if not isinstance(tag, str) or len(tag) != tag_length:
            raise _fail(
                path, f"ecommerce.{role}", f"expected a {tag_length}-character tag, got {tag!r}"
            )
        tags[role] = tag
    return Ecommerce(
        field=str(number), tag_length=tag_length, length_digits=length_digits, tags=tags
    )


def _catalog(path: Path, base_name: str) -> dict[str, FieldDef]:
    """The field catalog ``base_name``, beside the spec file or shipped here."""
    candidates = [path.with_name(f"{base_name}.toml"), SPEC_DIR / f"{base_name}.toml"]
    found = [c for c in candidates if c.exists()]
    if not found or "/" in base_name:
        where = " or ".join(str(c.parent) for c in candidates)
        raise _fail(path, "base", f"no field catalog {base_name!r} in {where}")
    doc = _read_toml(found[0])
    table = doc.get("fields", {})
    if not isinstance(table, dict):
        raise _fail(found[0], "fields", "expected a table")
    return _field_defs(found[0], table, "fields")


def _check_ecommerce(path: Path, eco: Ecommerce | None, fields: Mapping[str, FieldDef]) -> None:
    """The TLV field must be a variable text field of the catalog to hold tags."""
    if eco is None:
        return
    fd = fields.get(eco.field)
    if fd is None or fd.format not in ("an", "ans") or fd.length == "fixed":
        raise _fail(
            path, "ecommerce.field", f"field {eco.field} is not a variable-length text field"
        )


def _parse(path: Path) -> Spec:
    doc = _read_toml(path)
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise _fail(path, sorted(unknown)[0], "unknown key")
    base_name = doc.get("base")
    if base_name is not None:
        if not isinstance(base_name, str):
            raise _fail(path, "base", f"expected a catalog name, got {base_name!r}")
        fields = _catalog(path, base_name)
    else:
        fields = {}
    overrides = doc.get("fields", {})
    if not isinstance(overrides, dict):
        raise _fail(path, "fields", "expected a table")
    fields = _merge_overrides(path, fields, overrides)
    if not fields:
        raise _fail(path, "fields", "no fields: name a base catalog or list fields")
    if "encoding" not in doc:
        raise _fail(path, "encoding", "missing: a field catalog is not a dialect")
    enc_raw = doc["encoding"]
    if not isinstance(enc_raw, dict):
        raise _fail(path, "encoding", "expected a table")
    unknown = set(enc_raw) - {"mti", "bitmap", "numeric", "text", "binary", "length"}
    if unknown:
        raise _fail(path, f"encoding.{sorted(unknown)[0]}", "unknown key")
    enc = {
        "mti": _choice(path, enc_raw, "mti", _MTI_ENCODINGS, "ascii"),
        "bitmap": _choice(path, enc_raw, "bitmap", _BITMAPS, "hex"),
        "numeric": _choice(path, enc_raw, "numeric", _NUMERIC, "ascii"),
        "text": _choice(path, enc_raw, "text", _TEXT, "ascii"),
        "binary": _choice(path, enc_raw, "binary", _BINARY, "hex"),
        "length": _choice(path, enc_raw, "length", _LENGTH_ENCODINGS, "ascii"),
    }
    framing = doc.get("framing", "2b")
    if framing not in FRAMINGS:
        raise _fail(path, "framing", f"expected one of {sorted(FRAMINGS)}, got {framing!r}")
    header_length = doc.get("header", 0)
    if not isinstance(header_length, int) or not 0 <= header_length <= 64:
        raise _fail(path, "header", f"expected a byte count 0-64, got {header_length!r}")
    name = doc.get("name", path.stem)
    if name != path.stem:
        raise _fail(path, "name", f"must match the file name {path.stem!r}, got {name!r}")
    ecommerce = _ecommerce(path, doc.get("ecommerce"))
    _check_ecommerce(path, ecommerce, fields)
    return Spec(
        name=name,
        description=str(doc.get("description", "")),
        framing=framing,
        header_length=header_length,
        fields=fields,
        pyiso=_build_pyiso(fields, enc, header_length),
        ecommerce=ecommerce,
        source=path,
    )


_cache: dict[tuple[str, tuple[str, ...]], Spec] = {}


def _dirs(extra: Sequence[str | Path]) -> list[Path]:
    return [Path(d) for d in extra] + [SPEC_DIR]


def load(name: str, spec_dirs: Sequence[str | Path] = ()) -> Spec:
    """Return the dialect called ``name``, looked up in ``spec_dirs`` then here."""
    key = (name, tuple(str(d) for d in spec_dirs))
    cached = _cache.get(key)
    if cached is not None:
        return cached
    if not name or "/" in name or name.startswith("."):
        raise SpecError(f"{name!r}: not a spec name")
    for folder in _dirs(spec_dirs):
        path = folder / f"{name}.toml"
        if path.exists():
            spec = _parse(path)
            _cache[key] = spec
            return spec
    raise SpecError(f"unknown spec {name!r}; available: {', '.join(available(spec_dirs))}")


def available(spec_dirs: Sequence[str | Path] = ()) -> list[str]:
    """Names of the dialects that can be loaded (catalogs without an encoding excluded)."""
    names: set[str] = set()
    for folder in _dirs(spec_dirs):
        if folder.is_dir():
            for path in folder.glob("*.toml"):
                try:
                    is_dialect = "encoding" in _read_toml(path)
                except SpecError:
                    is_dialect = True  # broken, but meant as one: load() says why
                if is_dialect:
                    names.add(path.stem)
    return sorted(names)
