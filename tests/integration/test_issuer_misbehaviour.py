"""An issuer that answers wrongly, behind the whole switch: the acquirer gets 91
where the switch cannot know what the issuer decided, the approval it may have
given is reversed, and the journal says so. The Visa link points at a scripted
issuer on a real loopback socket; the other networks are the simulators."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

import specs
from switch import codec
from switch.client import build_request
from switch.framing import FrameDecoder, Framing, encode_frame
from switch.journal import Journal
from tests.integration.netfixture import network

VISA = specs.load("visa")
Answer = Callable[[dict[str, str]], dict[str, str]]


def _echoing(request: dict[str, str], *, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The answer an issuer builds: the response MTI, F39 00, the request's keys."""
    answer = {k: v for k, v in request.items() if k in ("3", "4", "7", "11", "37", "41", "49")}
    answer.update(t=request["t"][:2] + "10", **{"39": "00"})
    return {k: v for k, v in answer.items() if k not in drop}


def _scripted_issuer(authorization: Answer) -> Callable[[trio.SocketStream], Any]:
    """Signs on, answers reversals 00, and answers authorizations with ``authorization``."""

    async def serve(stream: trio.SocketStream) -> None:
        decoder = FrameDecoder(Framing())
        while data := await stream.receive_some(65536):
            for frame in decoder.feed(bytes(data)):
                request = codec.decode(frame, VISA)
                is_auth = request["t"][:2] == "01"
                answer = authorization(request) if is_auth else _echoing(request)
                await stream.send_all(encode_frame(codec.encode(answer, VISA)))

    return serve


async def _state(journal_path: Path, rrn: str, want: str) -> dict[str, Any]:
    journal = Journal.open(journal_path)
    try:
        while True:
            rows = [r for r in journal.find_transactions(rrn=rrn) if r["mti"][:2] == "01"]
            if rows and rows[0]["state"] == want:
                return {**rows[0], "legs": journal.legs_of(rows[0]["txn_id"])}
            await trio.sleep(0.05)
    finally:
        journal.close()


async def test_an_answer_without_a_response_code_gets_91_and_is_reversed(tmp_path: Path) -> None:
    # No F39: the issuer may have approved. Relaying 96 as a decline would leave
    # the cardholder's money held with nothing to release it.
    no_f39 = functools.partial(_echoing, drop=("39",))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, _scripted_issuer(no_f39), 0, host="127.0.0.1")
            [listener] = await nursery.start(serve)
            port = listener.socket.getsockname()[1]

            def to_scripted(raw: dict[str, Any]) -> None:
                raw["issuers"]["visa"]["endpoints"] = [f"127.0.0.1:{port}"]

            async with network(tmp_path, tweak=to_scripted) as net:
                client = await net.client()
                answer = await client.request(build_request(pan="4111111111111111", amount=700))
                assert answer is not None and answer["39"] == "91"
                row = await _state(net.config.switch.journal, answer["37"], "timed_out_reversed")
                assert [leg["leg"] for leg in row["legs"]][-2:] == ["saf_out", "saf_in"]
                assert "F39" in (row["legs"][2]["note"] or "")
            nursery.cancel_scope.cancel()
