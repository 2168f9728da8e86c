"""First checks of the wire layer; the wire-layer issue grows these into full suites."""

from __future__ import annotations

import specs
from switch.codec import decode, encode
from switch.framing import FrameDecoder, encode_frame


def test_iso87ascii_round_trip_through_frame() -> None:
    spec = specs.load("iso87ascii")
    msg = {"t": "0100", "2": "4111111111111111", "3": "000000", "4": "000000001000",
           "11": "000001", "41": "TERM0001", "49": "933"}
    frame = encode_frame(encode(msg, spec))
    [out] = FrameDecoder().feed(frame)
    assert decode(out, spec) == msg
