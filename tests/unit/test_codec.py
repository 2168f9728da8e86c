"""Codec: bytes <-> message over each dialect, its errors, and the validation table."""

from __future__ import annotations

import iso8583
import iso8583.specs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import specs
from specs import FieldDef, Spec
from switch.codec import (
    _fast_decode,
    _fast_encode,
    _plan,
    decode,
    encode,
    masked,
    salvage,
    validate,
)
from switch.errors import CodecError

SHIPPED = ("iso87ascii", "visa", "mastercard", "belkart")

REQUEST = {
    "t": "0100",
    "2": "4111111111111111",
    "3": "000000",
    "4": "000000001000",
    "11": "000001",
    "41": "TERM0001",
    "49": "933",
}


# -- pyiso8583's own default_ascii --------------------------------------------


def test_decode_of_a_frame_built_by_pyiso8583_default_ascii_returns_the_same_fields() -> None:
    message = REQUEST | {
        "7": "0101120000",
        "35": "4111111111111111=28121010000000000000",
        "37": "000000123456",
        "48": "C2003123",
        "52": "1234567890ABCDEF",
        "70": "301",
        # original MTI, STAN, date-time, acquirer and forwarder IDs: 4+6+10+11+11
        "90": "010000000101011200000000000000000000000000",
        "128": "0011223344556677",
    }
    frame, _ = iso8583.encode(dict(message), iso8583.specs.default_ascii)
    assert decode(bytes(frame), specs.load("iso87ascii")) == message


# -- decode errors --------------------------------------------------------------


def _ascii_request(**changes: str) -> bytes:
    return encode(REQUEST | changes, specs.load("iso87ascii"))


def test_decode_error_names_the_field_and_the_byte_position() -> None:
    frame = _ascii_request().replace(b"000000001000", b"\xff00000001000"[:12])
    with pytest.raises(CodecError) as caught:
        decode(frame, specs.load("iso87ascii"))
    assert caught.value.field == "4"
    assert caught.value.position == 44
    assert "field 4 (Amount, Transaction) at byte 44" in str(caught.value)


def test_codec_error_still_carries_mti_stan_and_terminal_after_a_bad_field() -> None:
    frame = _ascii_request().replace(b"000000001000", b"\xff00000001000"[:12])
    with pytest.raises(CodecError) as caught:
        decode(frame, specs.load("iso87ascii"))
    error = caught.value
    assert (error.mti, error.stan, error.partial["41"]) == ("0100", "000001", "TERM0001")
    assert "4" not in error.partial  # the bad field itself is never reported
    assert salvage(error) == {"t": "0100", "11": "000001", "41": "TERM0001"}


def test_a_field_over_its_maximum_does_not_hide_the_fields_after_it() -> None:
    frame = _ascii_request().replace(b"164111111111111111", b"2041111111111111111111")
    with pytest.raises(CodecError) as caught:
        decode(frame, specs.load("iso87ascii"))
    assert caught.value.field == "2"
    assert salvage(caught.value) == {"t": "0100", "11": "000001", "41": "TERM0001"}


def test_a_bad_bcd_pad_does_not_hide_the_fields_after_it() -> None:
    visa = specs.load("visa")
    frame = encode(REQUEST | {"22": "051"}, visa).replace(b"\x00\x51", b"\x10\x51")
    with pytest.raises(CodecError) as caught:
        decode(frame, visa)
    assert caught.value.field == "22"
    assert salvage(caught.value) == {"t": "0100", "11": "000001", "41": "TERM0001"}


def test_truncated_frame_keeps_only_what_came_before_the_cut() -> None:
    with pytest.raises(CodecError) as caught:
        decode(_ascii_request()[:30], specs.load("iso87ascii"))
    assert caught.value.field == "2"
    assert caught.value.partial == {"t": "0100"}


def test_a_length_that_misaligns_the_rest_salvages_nothing_after_it() -> None:
    # The prefix says 20 but 16 digits follow: reading on would yield garbage.
    frame = _ascii_request().replace(b"164111111111111111", b"204111111111111111")
    with pytest.raises(CodecError) as caught:
        decode(frame, specs.load("iso87ascii"))
    assert caught.value.partial == {"t": "0100"}


def test_unreadable_mti_leaves_nothing_to_answer_with() -> None:
    with pytest.raises(CodecError) as caught:
        decode(b"\xff" + _ascii_request()[1:], specs.load("iso87ascii"))
    assert caught.value.field == "t"
    assert salvage(caught.value) == {}


@pytest.mark.parametrize("frame", [b"", b"01", b"0100"])
def test_empty_or_short_frames_are_codec_errors(frame: bytes) -> None:
    with pytest.raises(CodecError):
        decode(frame, specs.load("iso87ascii"))


def test_trailing_bytes_after_the_last_field_are_an_error() -> None:
    with pytest.raises(CodecError, match="Extra data"):
        decode(_ascii_request() + b"X", specs.load("iso87ascii"))


# -- encode ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_encode_never_mutates_the_callers_message(name: str) -> None:
    message = dict(REQUEST, **{"52": "00" * 8, "100": "123"})
    before = dict(message)
    encode(message, specs.load(name))
    assert message == before


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"x": "1"}, "x", "not a data element"),
        ({"129": "1"}, "129", "not a data element"),
        ({"65": "00" * 8}, "65", "not a data element"),
        ({"4": "1"}, "4", "expecting 12"),
        ({"41": "TERMINAL9"}, "41", "expecting 8"),
    ],
)
def test_encode_refuses_what_the_wire_cannot_carry(
    changes: dict[str, str], field: str, problem: str
) -> None:
    with pytest.raises(CodecError, match=problem) as caught:
        encode(REQUEST | changes, specs.load("visa"))
    assert caught.value.field == field


@pytest.mark.parametrize("value", ["00000A", "00000²"])
def test_strict_encode_refuses_a_numeric_field_that_is_not_digits(value: str) -> None:
    with pytest.raises(CodecError, match=r"field 3 \(Processing Code\) must be digits"):
        encode(REQUEST | {"3": value}, specs.load("visa"), strict=True)


@pytest.mark.parametrize("name", SHIPPED)
def test_letters_in_a_numeric_field_are_carried_for_the_receiver_to_refuse(name: str) -> None:
    spec = specs.load(name)
    bad = REQUEST | {"4": "00000000ABCD"}
    received = decode(encode(bad, spec), spec)
    assert received == bad
    with pytest.raises(CodecError) as caught:
        validate(received, spec)
    assert caught.value.field == "4"


def test_encode_refuses_values_that_are_not_strings() -> None:
    message: dict[str, object] = dict(REQUEST, **{"4": 1000})
    with pytest.raises(CodecError, match="expected a string"):
        encode(message, specs.load("visa"))  # type: ignore[arg-type]


def test_encode_error_carries_the_readable_fields() -> None:
    with pytest.raises(CodecError) as caught:
        encode(REQUEST | {"4": "1"}, specs.load("iso87ascii"))
    assert salvage(caught.value) == {"t": "0100", "11": "000001", "41": "TERM0001"}


# -- validation table -----------------------------------------------------------

_REVERSAL = REQUEST | {"t": "0400", "37": "000000123456"}


@pytest.mark.parametrize(
    "message",
    [
        REQUEST,
        REQUEST | {"t": "0200"},
        _REVERSAL,
        _REVERSAL | {"95": "000000003000" + "0" * 30},  # a partial reversal
        REQUEST | {"t": "0420", "90": "0" * 42},
        {"t": "0800", "11": "000001", "70": "301"},
        {"t": "0110", "11": "000001", "39": "00"},
    ],
    ids=["0100", "0200", "0400+37", "0400+95", "0420+90", "0800", "0110"],
)
def test_valid_messages_pass(message: dict[str, str]) -> None:
    validate(message, specs.load("iso87ascii"))


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (REQUEST | {"t": "0300"}, "t"),
        ({k: v for k, v in REQUEST.items() if k != "t"}, "t"),
        *[
            ({k: v for k, v in REQUEST.items() if k != gone}, gone)
            for gone in REQUEST
            if gone != "t"
        ],
        ({k: v for k, v in REQUEST.items() if k != "49"} | {"t": "0200"}, "49"),
        (REQUEST | {"t": "0400"}, "90"),
        (REQUEST | {"t": "0420"}, "90"),
        ({k: v for k, v in _REVERSAL.items() if k != "41"}, "41"),
        (REQUEST | {"3": "00A000"}, "3"),
        (REQUEST | {"11": "00000\u0661"}, "11"),  # an Arabic-Indic digit
        (REQUEST | {"4": "1000"}, "4"),
        (REQUEST | {"4": "00000000001000"}, "4"),
        # The amount spent of a partial reversal, which the journal keeps for recovery.
        (_REVERSAL | {"95": "00000000300A" + "0" * 30}, "95"),
        (_REVERSAL | {"95": "ABC"}, "95"),
    ],
)
def test_validation_names_the_field_it_refuses(message: dict[str, str], field: str) -> None:
    with pytest.raises(CodecError) as caught:
        validate(message, specs.load("iso87ascii"))
    assert caught.value.field == field
    assert caught.value.response_code == "30"


# -- round trip over generated messages ------------------------------------------

_TEXT = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def _value(spec: Spec, fd: FieldDef) -> st.SearchStrategy[str]:
    """Values a field of ``spec`` can carry, honouring its format, length and maximum."""
    fixed = fd.length == "fixed"
    bcd = spec.pyiso[str(fd.number)].get("len_count") == "nibbles"
    if fd.format == "b":
        size = st.just(fd.max) if fixed else st.integers(0, fd.max)
        return size.flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(
            lambda b: b.hex().upper()
        )
    alphabet: st.SearchStrategy[str] = _TEXT
    if fd.format == "n":
        alphabet = st.sampled_from("0123456789")
    elif fd.format == "z":
        alphabet = st.sampled_from("0123456789D" if bcd else "0123456789D=")
    low = fd.max if fixed else (1 if fd.format == "n" else 0)
    return st.text(alphabet, min_size=low, max_size=fd.max)


@st.composite
def messages(draw: st.DrawFn, spec: Spec) -> dict[str, str]:
    keys = sorted((k for k in spec.fields if k not in ("1", "65")), key=int)
    chosen = draw(st.sets(st.sampled_from(keys), max_size=12))
    message = {"t": draw(st.text(st.sampled_from("0123456789"), min_size=4, max_size=4))}
    for key in sorted(chosen, key=int):
        message[key] = draw(_value(spec, spec.fields[key]))
    return message


def _round_trip(name: str) -> None:
    spec = specs.load(name)

    @given(messages(spec))
    def check(message: dict[str, str]) -> None:
        assert decode(encode(message, spec), spec) == message

    check()


@pytest.mark.parametrize("name", SHIPPED)
def test_encode_then_decode_returns_the_message(name: str) -> None:
    _round_trip(name)


# -- the fast path is pyiso8583, only faster ---------------------------------------


def _pyiso_decode(frame: bytes, spec: Spec) -> dict[str, str] | None:
    try:
        doc, _ = iso8583.decode(frame, spec.pyiso)
    except (iso8583.DecodeError, ValueError, LookupError):
        return None
    return {k: v for k, v in doc.items() if k not in ("p", "1") and (k != "h" or v)}


def _pyiso_encode(message: dict[str, str], spec: Spec) -> bytes | None:
    doc = {k: v for k, v in message.items() if k not in ("p", "1")}
    if spec.header_length and "h" not in doc:
        doc["h"] = "00" * spec.header_length
    try:
        return bytes(iso8583.encode(doc, spec.pyiso)[0])
    except (iso8583.EncodeError, ValueError, LookupError, TypeError):
        return None


@pytest.mark.parametrize("name", SHIPPED)
def test_fast_path_gives_pyiso8583s_bytes_and_fields(name: str) -> None:
    spec = specs.load(name)
    plan = _plan(spec)

    @given(messages(spec))
    def check(message: dict[str, str]) -> None:
        frame = _fast_encode(message, plan)
        assert frame is not None and frame == _pyiso_encode(message, spec)
        decoded = _fast_decode(frame, plan)
        assert decoded is not None and decoded == _pyiso_decode(frame, spec)

    check()


@pytest.mark.parametrize("name", SHIPPED)
def test_fast_decode_of_damaged_frames_is_pyiso8583s_or_gives_way(name: str) -> None:
    spec = specs.load(name)
    plan = _plan(spec)

    @given(messages(spec), st.data())
    def check(message: dict[str, str], data: st.DataObject) -> None:
        frame = bytearray(encode(message, spec))
        for _ in range(data.draw(st.integers(1, 3))):
            at = data.draw(st.integers(0, len(frame)))
            action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
            if action == "flip" and at < len(frame):
                frame[at] = data.draw(st.integers(0, 255))
            elif action == "cut":
                del frame[at:]
            else:
                frame[at:at] = data.draw(st.binary(min_size=1, max_size=3))
        fast = _fast_decode(bytes(frame), plan)
        assert fast is None or fast == _pyiso_decode(bytes(frame), spec)

    check()


@pytest.mark.parametrize("name", SHIPPED)
def test_fast_encode_of_odd_values_is_pyiso8583s_or_gives_way(name: str) -> None:
    spec = specs.load(name)
    plan = _plan(spec)
    keys = sorted((k for k in spec.fields if k not in ("1", "65")), key=int)
    odd = st.text(st.sampled_from("0123456789abcdefF =D\u00e9\u20ac"), max_size=30)

    @given(st.dictionaries(st.sampled_from(keys), odd, max_size=6), st.text(max_size=5))
    def check(fields: dict[str, str], mti: str) -> None:
        message = {"t": mti, **fields}
        fast = _fast_encode(message, plan)
        assert fast is None or fast == _pyiso_encode(message, spec)

    check()


_TRICKY = ("", "00 11", "0011 ", "0 1", "abc", "ABC", "abcd", " 12", "1_2", "\u0661\u0662", "F")


@pytest.mark.parametrize("name", SHIPPED)
def test_fast_encode_of_tricky_values_in_every_field_is_pyiso8583s_or_gives_way(
    name: str,
) -> None:
    spec = specs.load(name)
    plan = _plan(spec)
    for key in (k for k in spec.fields if k not in ("1", "65")):
        for value in _TRICKY:
            for mti in ("0100", "01 00", "0x00"):
                message = {"t": mti, "11": "000001", key: value}
                fast = _fast_encode(message, plan)
                assert fast is None or fast == _pyiso_encode(message, spec), (key, value)


@pytest.mark.parametrize("name", SHIPPED)
def test_fast_decode_refuses_a_length_over_the_maximum_as_pyiso8583_does(name: str) -> None:
    spec = specs.load(name)
    plan = _plan(spec)
    for key, fd in spec.fields.items():
        layout = spec.pyiso[key]
        if key in ("1", "65") or not layout["len_type"] or fd.max >= 99:
            continue
        value = "1" * (fd.max + 1) if fd.format in ("n", "z") else "A" * (fd.max + 1)
        if fd.format == "b":
            value = "AB" * (fd.max + 1)
        relaxed = {**spec.pyiso, key: {**layout, "max_len": layout["max_len"] + 8}}
        frame = bytes(iso8583.encode({"t": "0100", key: value}, relaxed)[0])
        assert _pyiso_decode(frame, spec) is None
        assert _fast_decode(frame, plan) is None, key


# -- masking for display --------------------------------------------------------


def test_masked_hides_card_data_and_keeps_the_rest() -> None:
    message = REQUEST | {
        "34": "5555555555554444",
        "35": "4111111111111111D28121010000000000000",
        "52": "1234567890ABCDEF",
        "55": "9F2608AABBCCDDEEFF0011",
        "48": "ZZ002abC2003123AV004abcd",
    }
    shown = masked(message, specs.load("iso87ascii"))
    assert shown == message | {
        "2": "411111******1111",
        "34": "555555******4444",
        "35": "411111******1111" + "*" * 21,
        "52": "*" * 16,
        "55": "*" * 22,
        "48": "ZZ002abC2003***AV004****",
    }
    assert message["2"] == "4111111111111111"  # the caller's message is untouched
