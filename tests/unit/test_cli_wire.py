"""``switch decode`` / ``switch encode`` through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from switch.cli import main
from tests.unit.test_spec_vectors import VECTORS

PAN = "4111111111111111"
REQUEST_ARGS = [
    "--mti",
    "0100",
    f"2={PAN}",
    "3=000000",
    "4=000000001000",
    "11=000001",
    "41=TERM0001",
    "49=933",
]


def _run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def _encode(spec: str, *args: str) -> str:
    result = _run("encode", "--spec", spec, *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


# -- encode -----------------------------------------------------------------------


def test_encode_visa_puts_mti_as_two_bcd_bytes_and_text_in_ebcdic() -> None:
    wire = bytes.fromhex(_encode("visa", *REQUEST_ARGS))
    assert wire[:2] == b"\x01\x00"
    assert wire.endswith("TERM0001".encode("cp500") + b"\x09\x33")


@pytest.mark.parametrize(("spec", "message", "hand_written"), VECTORS)
def test_encode_prints_the_hand_written_vector_as_one_line_of_hex(
    spec: str, message: dict[str, str], hand_written: str
) -> None:
    fields = [f"{k}={v}" for k, v in message.items() if k != "t"]
    result = _run("encode", "--spec", spec, "--mti", message["t"], *fields)
    assert result.exit_code == 0
    assert result.stdout == bytes.fromhex(hand_written).hex().upper() + "\n"
    assert result.stderr == ""


# 0800 with F11 and F70 in iso87ascii: MTI 4 + two hex bitmaps 32 + 6 + 3 = 45 bytes.
@pytest.mark.parametrize(
    ("kind", "prefix"),
    [("2b", "002D"), ("4a", "30303435"), ("2bcd", "0045"), ("4b", "0000002D")],
)
def test_encode_frame_adds_the_length_prefix(kind: str, prefix: str) -> None:
    bare = _encode("iso87ascii", "--mti", "0800", "11=000001", "70=301")
    framed = _encode("iso87ascii", "--frame", kind, "--mti", "0800", "11=000001", "70=301")
    assert len(bare) == 2 * 45
    assert framed == prefix + bare


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["x=1"], "'x=1': expected FIELD=VALUE"),
        (["41"], "'41': expected FIELD=VALUE"),
        (["200=1"], "field 200 is not a data element (2-128)"),
        (["65=0000000000000000"], "'65' is not a data element"),
        (["3=00000A"], "field 3 (Processing Code) must be digits"),
        (["2=41111111111111111111"], "field 2 (Primary Account Number (PAN))"),
        (["41=TERMINAL01"], "field 41 (Card Acceptor Terminal ID)"),
        (["11=000001", "11=000002"], "field 11 given twice"),
    ],
)
def test_encode_refuses_a_bad_field_with_exit_2(args: list[str], problem: str) -> None:
    result = _run("encode", "--spec", "visa", "--mti", "0100", *args)
    assert result.exit_code == 2
    assert problem in result.stderr
    assert result.stdout == ""


def test_encode_error_does_not_echo_a_pan_in_clear() -> None:
    result = _run("encode", "--spec", "visa", "--mti", "0100", f"pan={PAN}")
    assert result.exit_code == 2
    assert PAN not in result.output
    assert "411111******1111" in result.stderr


@pytest.mark.parametrize("mti", ["100", "01000", "01A0"])
def test_encode_refuses_an_mti_that_is_not_4_digits(mti: str) -> None:
    result = _run("encode", "--spec", "visa", "--mti", mti)
    assert result.exit_code == 2
    assert "expected 4 digits" in result.stderr


# -- decode -----------------------------------------------------------------------


def _request_hex(spec: str = "iso87ascii", ecommerce: str = "48=C2003123EC00205") -> str:
    return _encode(spec, *REQUEST_ARGS, "52=1234567890ABCDEF", ecommerce)


def test_decode_prints_fields_with_names_and_masks_card_data() -> None:
    result = _run("decode", "--spec", "iso87ascii", _request_hex())
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["t", "Message", "Type", "0100"]
    assert "Primary Account Number (PAN)  411111******1111" in result.stdout
    assert "C2003***EC00205" in result.stdout
    assert "****************" in result.stdout  # F52 PIN block
    assert PAN not in result.stdout
    assert "1234567890ABCDEF" not in result.stdout


def test_decode_show_pan_shows_card_data_in_clear() -> None:
    result = _run("decode", "--spec", "iso87ascii", "--show-pan", _request_hex())
    assert PAN in result.stdout
    assert "C2003123EC00205" in result.stdout


def test_decode_json_is_an_object_of_field_number_to_value() -> None:
    wire = _request_hex("visa", ecommerce="126=1003123080205")
    result = _run("decode", "--spec", "visa", "--json", wire)
    assert json.loads(result.stdout) == {
        "t": "0100",
        "2": "411111******1111",
        "3": "000000",
        "4": "000000001000",
        "11": "000001",
        "41": "TERM0001",
        "49": "933",
        "52": "****************",
        "126": "1003***080205",
    }


def test_decode_masks_track_data_but_the_pan_part() -> None:
    track2 = f"35={PAN}=28121010000000000000"
    wire = _encode("iso87ascii", "--mti", "0100", track2, "45=B" + PAN + "^DOE/J^2812101")
    decoded = json.loads(_run("decode", "--spec", "iso87ascii", "--json", wire).stdout)
    assert decoded["35"] == "411111******1111" + "*" * 21
    assert decoded["45"] == "B411111******1111" + "*" * 14


def test_decode_of_a_frame_pyiso8583_default_ascii_built() -> None:
    import iso8583
    import iso8583.specs

    message = {"t": "0200", "3": "000000", "4": "000000001000", "11": "000042", "39": "00"}
    frame, _ = iso8583.encode(dict(message), iso8583.specs.default_ascii)
    result = _run("decode", "--spec", "iso87ascii", "--json", bytes(frame).hex())
    assert json.loads(result.stdout) == message


def test_decode_accepts_hex_with_spaces_and_in_several_arguments() -> None:
    wire = _request_hex()
    spaced = " ".join(wire[i : i + 2] for i in range(0, len(wire), 2))
    half = len(wire) // 2
    one = _run("decode", "--spec", "iso87ascii", "--json", spaced)
    two = _run("decode", "--spec", "iso87ascii", "--json", wire[:half], wire[half:].lower())
    assert one.exit_code == two.exit_code == 0
    assert json.loads(one.stdout) == json.loads(two.stdout)


def test_decode_reads_stdin_so_encode_can_pipe_into_it() -> None:
    result = _run("decode", "--spec", "iso87ascii", "--json", "-", stdin=_request_hex() + "\n")
    assert json.loads(result.stdout)["11"] == "000001"


@pytest.mark.parametrize("kind", ["2b", "4a", "2bcd", "4b"])
def test_decode_frame_strips_the_length_prefix(kind: str) -> None:
    framed = _encode("belkart", "--frame", kind, *REQUEST_ARGS)
    result = _run("decode", "--spec", "belkart", "--frame", kind, "--json", framed)
    assert json.loads(result.stdout)["41"] == "TERM0001"


def test_decode_frame_refuses_a_prefix_that_does_not_match_the_bytes() -> None:
    framed = _encode("belkart", "--frame", "2b", *REQUEST_ARGS)
    result = _run("decode", "--spec", "belkart", "--frame", "2b", framed + "00")
    assert result.exit_code == 2
    assert "expected exactly one whole frame" in result.stderr


@pytest.mark.parametrize(
    ("hex_digits", "problem"),
    [
        ("01zz", "'z' at hex digit 3 is not a hex digit"),
        ("0100F", "5 hex digits is not a whole number of bytes"),
        ("", "no hex digits"),
    ],
)
def test_decode_refuses_bad_hex_with_exit_2(hex_digits: str, problem: str) -> None:
    result = _run("decode", "--spec", "iso87ascii", hex_digits, stdin="")
    assert result.exit_code == 2
    assert problem in result.stderr


def test_decode_of_bytes_that_do_not_decode_names_field_and_position_with_exit_1() -> None:
    wire = _request_hex()[:60]
    result = _run("decode", "--spec", "iso87ascii", wire)
    assert result.exit_code == 1
    assert "field 2 (Primary Account Number (PAN)) at byte 22" in result.stderr


# -- both ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["decode", "encode"])
def test_unknown_spec_is_a_usage_error_listing_the_available_ones(command: str) -> None:
    args = ["--mti", "0100"] if command == "encode" else ["0100"]
    result = _run(command, "--spec", "amex", *args)
    assert result.exit_code == 2
    assert "unknown spec 'amex'; available: belkart, iso87ascii, mastercard, visa" in result.stderr


def test_the_decode_help_example_decodes() -> None:
    example = "0800 8020000000000000 0400000000000000 000001 0301"
    assert "switch decode --spec visa " + example in _run("decode", "--help").stdout
    result = _run("decode", "--spec", "visa", "--json", *example.split())
    assert json.loads(result.stdout) == {"t": "0800", "11": "000001", "70": "301"}


@pytest.mark.parametrize("command", ["decode", "encode"])
def test_help_has_an_example(command: str) -> None:
    result = _run(command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert f"switch {command} --spec" in result.stdout


@pytest.mark.parametrize("spec", ["iso87ascii", "visa", "mastercard", "belkart"])
def test_what_encode_prints_decode_reads_back(spec: str) -> None:
    wire = _encode(spec, *REQUEST_ARGS, "37=000000123456", "70=301", "128=0011223344556677")
    result = _run("decode", "--spec", spec, "--json", "--show-pan", wire)
    assert json.loads(result.stdout) == {
        "t": "0100",
        "2": PAN,
        "3": "000000",
        "4": "000000001000",
        "11": "000001",
        "37": "000000123456",
        "41": "TERM0001",
        "49": "933",
        "70": "301",
        "128": "0011223344556677",
    }
