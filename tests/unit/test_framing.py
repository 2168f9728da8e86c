"""Framing: the same frames come out of a stream however it is chunked."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.errors import FramingError
from switch.framing import FRAMINGS, FrameDecoder, Framing, encode_frame, keep_alive

TPDU = bytes.fromhex("6000010000")
FRAMINGS_UNDER_TEST = [
    Framing(kind=kind, header=header) for kind in FRAMINGS for header in (b"", TPDU)
]
_IDS = [f"{f.kind}{'+tpdu' if f.header else ''}" for f in FRAMINGS_UNDER_TEST]


def _feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[bytes]:
    return [frame for chunk in chunks for frame in decoder.feed(chunk)]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# -- the prefix of each kind, written out --------------------------------------


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [("2b", "00 03"), ("4a", "30 30 30 33"), ("2bcd", "00 03"), ("4b", "00 00 00 03")],
)
def test_encode_frame_writes_the_length_prefix_of_each_kind(kind: str, prefix: str) -> None:
    assert encode_frame(b"abc", Framing(kind=kind)) == bytes.fromhex(prefix) + b"abc"


def test_bcd_length_is_decimal_digits_not_binary() -> None:
    assert encode_frame(b"x" * 1234, Framing(kind="2bcd"))[:2] == b"\x12\x34"


def test_length_counts_the_header_and_the_header_is_kept() -> None:
    framing = Framing(kind="2b", header=TPDU)
    wire = encode_frame(b"abc", framing)
    assert wire == b"\x00\x08" + TPDU + b"abc"
    decoder = FrameDecoder(framing)
    assert decoder.feed(wire) == [b"abc"]
    assert decoder.last_header == TPDU


def test_encode_frame_can_echo_a_received_header() -> None:
    echoed = bytes.fromhex("6000000001")
    framing = Framing(header=TPDU)
    assert encode_frame(b"abc", framing, header=echoed) == b"\x00\x08" + echoed + b"abc"


def test_default_framing_is_2_byte_binary() -> None:
    assert encode_frame(b"abc") == b"\x00\x03abc"
    assert FrameDecoder().feed(b"\x00\x03abc") == [b"abc"]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown framing '3x'"):
        Framing(kind="3x")


# -- decoding ---------------------------------------------------------------------


def test_frame_decoder_waits_for_full_prefix() -> None:
    decoder = FrameDecoder(Framing(kind="4a"))
    assert decoder.feed(b"00") == []
    assert decoder.feed(b"03ab") == []
    assert decoder.pending == 6
    assert decoder.feed(b"c") == [b"abc"]
    assert decoder.pending == 0


@pytest.mark.parametrize("framing", FRAMINGS_UNDER_TEST, ids=_IDS)
def test_zero_length_frame_is_a_keep_alive_not_an_error(framing: Framing) -> None:
    decoder = FrameDecoder(framing)
    wire = keep_alive(framing) + encode_frame(b"abc", framing) + keep_alive(framing)
    assert decoder.feed(wire) == [b"abc"]
    assert decoder.pending == 0


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [("2b", b"\x20\x01"), ("4a", b"8193"), ("2bcd", b"\x81\x93"), ("4b", b"\x00\x00\x20\x01")],
)
def test_frame_over_the_maximum_is_refused_saying_what_arrived(kind: str, prefix: bytes) -> None:
    decoder = FrameDecoder(Framing(kind=kind))
    with pytest.raises(FramingError) as caught:
        decoder.feed(prefix + b"GET / HTTP/1.1")
    message = str(caught.value)
    assert "exceeds the maximum of 8192" in message
    assert f"{kind} framing" in message
    assert prefix.hex(" ") in message


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [("2b", b"37"), ("4a", b"9999"), ("4a", b"37 4"), ("2bcd", b"\x99\x99"), ("4b", b"\x0037 ")],
    ids=["2b", "4a", "4a-not-digits", "2bcd", "4b"],
)
@pytest.mark.parametrize(
    "pan", [b"4000000000000036", bytes.fromhex("4000000000000036")], ids=["text", "bcd"]
)
def test_framing_error_never_shows_the_card_data_after_the_prefix(
    kind: str, prefix: bytes, pan: bytes
) -> None:
    # An acquirer whose length is a few bytes short puts the next "prefix" in the
    # middle of its message: what follows may be a PAN or track 2, in text or BCD.
    with pytest.raises(FramingError) as caught:
        FrameDecoder(Framing(kind=kind)).feed(prefix + pan + b"=3012101")
    message = str(caught.value)
    assert prefix.hex(" ") in message
    for shown in (pan.decode("latin-1"), pan.hex(), pan.hex(" "), pan[2:].hex(" ")):
        assert shown not in message


@pytest.mark.parametrize(
    ("kind", "prefix", "problem"),
    [("4a", b"GET ", "not 4 ASCII digits"), ("2bcd", b"\x1a\x00", "not packed BCD")],
)
def test_prefix_that_is_not_a_length_is_refused(kind: str, prefix: bytes, problem: str) -> None:
    with pytest.raises(FramingError, match=problem):
        FrameDecoder(Framing(kind=kind)).feed(prefix + b"xxxx")


def test_length_shorter_than_the_header_is_refused() -> None:
    with pytest.raises(FramingError, match="shorter than the 5-byte header"):
        FrameDecoder(Framing(header=TPDU)).feed(b"\x00\x03abc")


def test_frames_before_a_bad_prefix_are_delivered_then_the_stream_fails() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"abc") + b"\xff\xff") == [b"abc"]
    assert decoder.error is not None  # the shell need not wait for more bytes to know
    with pytest.raises(FramingError):
        decoder.feed(b"")
    with pytest.raises(FramingError):
        decoder.feed(encode_frame(b"def"))


def test_encode_frame_refuses_a_message_over_the_maximum() -> None:
    with pytest.raises(FramingError, match="9000 bytes exceeds the maximum of 8192"):
        encode_frame(b"x" * 9000)


def test_encode_frame_refuses_a_length_the_prefix_cannot_hold() -> None:
    with pytest.raises(FramingError, match="does not fit a 4a length prefix"):
        encode_frame(b"x" * 10000, Framing(kind="4a", max_frame=20000))


# -- properties --------------------------------------------------------------------

_bodies = st.lists(st.binary(min_size=0, max_size=300), max_size=8)


def _stream(framing: Framing, bodies: list[bytes]) -> bytes:
    # An empty body is sent as a keep-alive, which yields no frame.
    return b"".join(encode_frame(b, framing) if b else keep_alive(framing) for b in bodies)


def _expected(bodies: list[bytes]) -> list[bytes]:
    return [b for b in bodies if b]


@pytest.mark.parametrize("framing", FRAMINGS_UNDER_TEST, ids=_IDS)
def test_same_frames_for_any_split_of_the_stream(framing: Framing) -> None:
    @given(bodies=_bodies, cuts=st.lists(st.integers(min_value=0), max_size=12))
    def check(bodies: list[bytes], cuts: list[int]) -> None:
        wire = _stream(framing, bodies)
        expected = _expected(bodies)
        assert FrameDecoder(framing).feed(wire) == expected
        assert _feed_all(FrameDecoder(framing), [bytes([b]) for b in wire]) == expected
        assert _feed_all(FrameDecoder(framing), _split(wire, cuts)) == expected

    check()


@pytest.mark.parametrize("framing", FRAMINGS_UNDER_TEST, ids=_IDS)
def test_trailing_partial_frame_is_held_not_yielded(framing: Framing) -> None:
    @given(bodies=_bodies, last=st.binary(min_size=1, max_size=50), data=st.data())
    def check(bodies: list[bytes], last: bytes, data: st.DataObject) -> None:
        tail = encode_frame(last, framing)
        keep = data.draw(st.integers(min_value=0, max_value=len(tail) - 1))
        decoder = FrameDecoder(framing)
        assert decoder.feed(_stream(framing, bodies) + tail[:keep]) == _expected(bodies)
        assert decoder.pending == keep
        assert decoder.feed(tail[keep:]) == [last]

    check()


@given(size=st.integers(min_value=8193, max_value=0xFFFF), kind=st.sampled_from(["2b", "4b"]))
def test_any_length_over_the_maximum_fails_whatever_follows(size: int, kind: str) -> None:
    framing = Framing(kind=kind)
    prefix = size.to_bytes(framing.prefix_size, "big")
    with pytest.raises(FramingError, match=f"frame length {size} exceeds"):
        FrameDecoder(framing).feed(prefix)
