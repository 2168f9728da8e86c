"""Hand-written wire vectors: each shipped dialect's 0100 and 0110, byte by byte.

The hex below was written out by hand from each network's layout (see the
comments in ``specs/*.toml``), NOT produced by running our encoder, so these
tests prove the bytes on the wire are what the spec says. Every line is one
field; the comment names the field and how it is encoded.

Bitmaps, worked out once (bit n is field n, most significant bit first):
    0100 fields 2 3 4 7 | 11 14 | 22 | - | - | 41 42 48 | 49 52 | -
         -> 72 24 04 00 00 C1 90 00   (without 48: ... C0 ...)
    0110 fields 2 3 4 7 | 11 | - | - | 37 38 39 | 41 42 | 49 | -
         -> 72 20 00 00 0E C0 80 00
    Visa 0100 adds field 126 -> bit 1 set (F2 ...) and a secondary bitmap
         00 00 00 00 00 00 00 04 (126 = bit 62 of the secondary).
EBCDIC (cp500) used below: digits 0-9 = F0-F9, A=C1 C=C3 E=C5 H=C8 M=D4
N=D5 R=D9 T=E3.
"""

from __future__ import annotations

import pytest

import specs
from switch.codec import decode, encode

# -- the messages ----------------------------------------------------------

_REQUEST = {
    "t": "0100",
    "2": "4111111111111111",
    "3": "000000",
    "4": "000000001000",
    "7": "0101120000",
    "11": "000123",
    "14": "2812",
    "22": "812",
    "41": "TERM0001",
    "42": "MERCHANT0000001",
    "49": "933",
    "52": "1234567890ABCDEF",
}
_RESPONSE = {
    "t": "0110",
    "2": "4111111111111111",
    "3": "000000",
    "4": "000000001000",
    "7": "0101120000",
    "11": "000123",
    "37": "000000123456",
    "38": "A1B2C3",
    "39": "00",
    "41": "TERM0001",
    "42": "MERCHANT0000001",
    "49": "933",
}
# CVV2 123 and ECI 05 in each network's e-commerce TLV.
_ECOM_ACQUIRER = {"48": "C2003123EC00205"}  # tag C2 len 003 "123", tag EC len 002 "05"
_ECOM_MASTERCARD = {"48": "9203123420205"}  # DE 48 se 92 len 03 "123", se 42 len 02 "05"
_ECOM_VISA = {"126": "1003123080205"}  # 126 tag 10 len 03 "123", tag 08 len 02 "05"

# -- iso87ascii: all ASCII, bitmap as 16 hex characters, binary as hex text --

_ISO87ASCII_0100 = (
    "30 31 30 30"  # MTI "0100", ASCII 4 bytes
    "37 32 32 34 30 34 30 30 30 30 43 31 39 30 30 30"  # bitmap "7224040000C19000", ASCII
    "31 36"  # F2 LL "16", ASCII
    "34 31 31 31 31 31 31 31 31 31 31 31 31 31 31 31"  # F2 PAN 4111111111111111
    "30 30 30 30 30 30"  # F3 processing code 000000
    "30 30 30 30 30 30 30 30 31 30 30 30"  # F4 amount 000000001000
    "30 31 30 31 31 32 30 30 30 30"  # F7 transmission time 0101120000
    "30 30 30 31 32 33"  # F11 STAN 000123
    "32 38 31 32"  # F14 expiry 2812
    "38 31 32"  # F22 POS entry mode 812
    "54 45 52 4D 30 30 30 31"  # F41 terminal "TERM0001"
    "4D 45 52 43 48 41 4E 54 30 30 30 30 30 30 31"  # F42 merchant "MERCHANT0000001"
    "30 31 35"  # F48 LLL "015", ASCII
    "43 32 30 30 33 31 32 33 45 43 30 30 32 30 35"  # F48 "C2003123EC00205"
    "39 33 33"  # F49 currency 933
    "31 32 33 34 35 36 37 38 39 30 41 42 43 44 45 46"  # F52 PIN block as 16 hex chars
)
_ISO87ASCII_0110 = (
    "30 31 31 30"  # MTI "0110", ASCII
    "37 32 32 30 30 30 30 30 30 45 43 30 38 30 30 30"  # bitmap "722000000EC08000", ASCII
    "31 36"  # F2 LL "16"
    "34 31 31 31 31 31 31 31 31 31 31 31 31 31 31 31"  # F2 PAN
    "30 30 30 30 30 30"  # F3 000000
    "30 30 30 30 30 30 30 30 31 30 30 30"  # F4 000000001000
    "30 31 30 31 31 32 30 30 30 30"  # F7 0101120000
    "30 30 30 31 32 33"  # F11 000123
    "30 30 30 30 30 30 31 32 33 34 35 36"  # F37 RRN "000000123456"
    "41 31 42 32 43 33"  # F38 auth code "A1B2C3"
    "30 30"  # F39 response code "00"
    "54 45 52 4D 30 30 30 31"  # F41 "TERM0001"
    "4D 45 52 43 48 41 4E 54 30 30 30 30 30 30 31"  # F42 "MERCHANT0000001"
    "39 33 33"  # F49 933
)

# -- visa: BCD MTI and numerics (nibble lengths), EBCDIC text, binary bitmap --

_VISA_0100 = (
    "01 00"  # MTI 0100, BCD 2 bytes
    "F2 24 04 00 00 C0 90 00"  # primary bitmap, binary (bit 1: secondary follows)
    "00 00 00 00 00 00 00 04"  # secondary bitmap, binary: field 126
    "16"  # F2 LL, BCD 1 byte: 16 digits
    "41 11 11 11 11 11 11 11"  # F2 PAN, BCD
    "00 00 00"  # F3 000000, BCD
    "00 00 00 00 10 00"  # F4 000000001000, BCD
    "01 01 12 00 00"  # F7 0101120000, BCD
    "00 01 23"  # F11 000123, BCD
    "28 12"  # F14 2812, BCD
    "08 12"  # F22 812, BCD: 3 digits left-padded with 0
    "E3 C5 D9 D4 F0 F0 F0 F1"  # F41 "TERM0001", EBCDIC
    "D4 C5 D9 C3 C8 C1 D5 E3 F0 F0 F0 F0 F0 F0 F1"  # F42 "MERCHANT0000001", EBCDIC
    "09 33"  # F49 933, BCD left-padded
    "12 34 56 78 90 AB CD EF"  # F52 PIN block, 8 raw bytes
    "00 13"  # F126 LLL, BCD 2 bytes: 13 bytes
    "F1 F0 F0 F3 F1 F2 F3 F0 F8 F0 F2 F0 F5"  # F126 "1003123080205", EBCDIC
)
_VISA_0110 = (
    "01 10"  # MTI 0110, BCD
    "72 20 00 00 0E C0 80 00"  # primary bitmap, binary
    "16"  # F2 LL, BCD
    "41 11 11 11 11 11 11 11"  # F2 PAN, BCD
    "00 00 00"  # F3, BCD
    "00 00 00 00 10 00"  # F4, BCD
    "01 01 12 00 00"  # F7, BCD
    "00 01 23"  # F11, BCD
    "F0 F0 F0 F0 F0 F0 F1 F2 F3 F4 F5 F6"  # F37 RRN "000000123456", EBCDIC
    "C1 F1 C2 F2 C3 F3"  # F38 "A1B2C3", EBCDIC
    "F0 F0"  # F39 "00", EBCDIC
    "E3 C5 D9 D4 F0 F0 F0 F1"  # F41 "TERM0001", EBCDIC
    "D4 C5 D9 C3 C8 C1 D5 E3 F0 F0 F0 F0 F0 F0 F1"  # F42, EBCDIC
    "09 33"  # F49 933, BCD
)

# -- mastercard: EBCDIC MTI, lengths and data, binary bitmap, raw binary ------

_MASTERCARD_0100 = (
    "F0 F1 F0 F0"  # MTI "0100", EBCDIC
    "72 24 04 00 00 C1 90 00"  # primary bitmap, binary
    "F1 F6"  # F2 LL "16", EBCDIC
    "F4 F1 F1 F1 F1 F1 F1 F1 F1 F1 F1 F1 F1 F1 F1 F1"  # F2 PAN, EBCDIC
    "F0 F0 F0 F0 F0 F0"  # F3 000000
    "F0 F0 F0 F0 F0 F0 F0 F0 F1 F0 F0 F0"  # F4 000000001000
    "F0 F1 F0 F1 F1 F2 F0 F0 F0 F0"  # F7 0101120000
    "F0 F0 F0 F1 F2 F3"  # F11 000123
    "F2 F8 F1 F2"  # F14 2812
    "F8 F1 F2"  # F22 812
    "E3 C5 D9 D4 F0 F0 F0 F1"  # F41 "TERM0001"
    "D4 C5 D9 C3 C8 C1 D5 E3 F0 F0 F0 F0 F0 F0 F1"  # F42 "MERCHANT0000001"
    "F0 F1 F3"  # F48 LLL "013", EBCDIC
    "F9 F2 F0 F3 F1 F2 F3 F4 F2 F0 F2 F0 F5"  # F48 "9203123420205"
    "F9 F3 F3"  # F49 933
    "12 34 56 78 90 AB CD EF"  # F52 PIN block, 8 raw bytes
)
_MASTERCARD_0110 = (
    "F0 F1 F1 F0"  # MTI "0110", EBCDIC
    "72 20 00 00 0E C0 80 00"  # primary bitmap, binary
    "F1 F6"  # F2 LL "16"
    "F4 F1 F1 F1 F1 F1 F1 F1 F1 F1 F1 F1 F1 F1 F1 F1"  # F2 PAN
    "F0 F0 F0 F0 F0 F0"  # F3
    "F0 F0 F0 F0 F0 F0 F0 F0 F1 F0 F0 F0"  # F4
    "F0 F1 F0 F1 F1 F2 F0 F0 F0 F0"  # F7
    "F0 F0 F0 F1 F2 F3"  # F11
    "F0 F0 F0 F0 F0 F0 F1 F2 F3 F4 F5 F6"  # F37 "000000123456"
    "C1 F1 C2 F2 C3 F3"  # F38 "A1B2C3"
    "F0 F0"  # F39 "00"
    "E3 C5 D9 D4 F0 F0 F0 F1"  # F41
    "D4 C5 D9 C3 C8 C1 D5 E3 F0 F0 F0 F0 F0 F0 F1"  # F42
    "F9 F3 F3"  # F49
)

# -- belkart: ASCII MTI and data, binary bitmap, raw binary -------------------

_BELKART_0100 = (
    "30 31 30 30"  # MTI "0100", ASCII
    "72 24 04 00 00 C1 90 00"  # primary bitmap, binary
    "31 36"  # F2 LL "16", ASCII
    "34 31 31 31 31 31 31 31 31 31 31 31 31 31 31 31"  # F2 PAN
    "30 30 30 30 30 30"  # F3
    "30 30 30 30 30 30 30 30 31 30 30 30"  # F4
    "30 31 30 31 31 32 30 30 30 30"  # F7
    "30 30 30 31 32 33"  # F11
    "32 38 31 32"  # F14
    "38 31 32"  # F22
    "54 45 52 4D 30 30 30 31"  # F41 "TERM0001"
    "4D 45 52 43 48 41 4E 54 30 30 30 30 30 30 31"  # F42
    "30 31 35"  # F48 LLL "015"
    "43 32 30 30 33 31 32 33 45 43 30 30 32 30 35"  # F48 "C2003123EC00205"
    "39 33 33"  # F49
    "12 34 56 78 90 AB CD EF"  # F52 PIN block, 8 raw bytes
)
_BELKART_0110 = (
    "30 31 31 30"  # MTI "0110", ASCII
    "72 20 00 00 0E C0 80 00"  # primary bitmap, binary
    "31 36"  # F2 LL "16"
    "34 31 31 31 31 31 31 31 31 31 31 31 31 31 31 31"  # F2 PAN
    "30 30 30 30 30 30"  # F3
    "30 30 30 30 30 30 30 30 31 30 30 30"  # F4
    "30 31 30 31 31 32 30 30 30 30"  # F7
    "30 30 30 31 32 33"  # F11
    "30 30 30 30 30 30 31 32 33 34 35 36"  # F37 "000000123456"
    "41 31 42 32 43 33"  # F38 "A1B2C3"
    "30 30"  # F39 "00"
    "54 45 52 4D 30 30 30 31"  # F41
    "4D 45 52 43 48 41 4E 54 30 30 30 30 30 30 31"  # F42
    "39 33 33"  # F49
)

VECTORS = [
    ("iso87ascii", _REQUEST | _ECOM_ACQUIRER, _ISO87ASCII_0100),
    ("iso87ascii", _RESPONSE, _ISO87ASCII_0110),
    ("visa", _REQUEST | _ECOM_VISA, _VISA_0100),
    ("visa", _RESPONSE, _VISA_0110),
    ("mastercard", _REQUEST | _ECOM_MASTERCARD, _MASTERCARD_0100),
    ("mastercard", _RESPONSE, _MASTERCARD_0110),
    ("belkart", _REQUEST | _ECOM_ACQUIRER, _BELKART_0100),
    ("belkart", _RESPONSE, _BELKART_0110),
]


def _spaced(data: bytes) -> str:
    return data.hex(" ").upper()


_IDS = [f"{name}-{message['t']}" for name, message, _ in VECTORS]


@pytest.mark.parametrize(("spec_name", "message", "wire"), VECTORS, ids=_IDS)
def test_encode_puts_the_hand_written_bytes_on_the_wire(
    spec_name: str, message: dict[str, str], wire: str
) -> None:
    # Compared as spaced hex so a failure shows which byte differs.
    assert _spaced(encode(message, specs.load(spec_name))) == _spaced(bytes.fromhex(wire))


@pytest.mark.parametrize(("spec_name", "message", "wire"), VECTORS, ids=_IDS)
def test_decode_of_the_hand_written_bytes_returns_the_fields(
    spec_name: str, message: dict[str, str], wire: str
) -> None:
    assert decode(bytes.fromhex(wire), specs.load(spec_name)) == message


def test_every_shipped_dialect_has_a_request_and_a_response_vector() -> None:
    covered = {(name, message["t"]) for name, message, _ in VECTORS}
    assert covered == {(name, mti) for name in specs.available() for mti in ("0100", "0110")}
