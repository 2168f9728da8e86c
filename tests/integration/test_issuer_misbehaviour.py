"""An issuer that answers wrongly, behind the whole switch: the acquirer gets 91
where the switch cannot know what the issuer decided, the approval it may have
given is reversed, and the journal says so. The Visa link points at a scripted
issuer on a real loopback socket; the other networks are the simulators."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

import specs
from switch import codec
from switch.client import build_request
from switch.framing import FrameDecoder, Framing, encode_frame
from switch.journal import Journal
from tests.integration.netfixture import Network, network

VISA = specs.load("visa")
Answer = Callable[[dict[str, str]], dict[str, str]]


def _echoing(request: dict[str, str], *, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The answer an issuer builds: the response MTI, F39 00, the request's keys."""
    answer = {k: v for k, v in request.items() if k in ("3", "4", "7", "11", "37", "41", "49")}
    answer.update(t=request["t"][:2] + "10", **{"39": "00"})
    return {k: v for k, v in answer.items() if k not in drop}


def _scripted_issuer(
    authorization: Answer = _echoing,
    *,
    after_sign_on: dict[str, str] | None = None,
    answers: trio.MemorySendChannel[dict[str, str]] | None = None,
) -> Callable[[trio.SocketStream], Any]:
    """Signs on, answers reversals 00, and answers authorizations with ``authorization``.

    ``after_sign_on`` is a request the issuer sends of its own once signed on;
    what the switch answers it goes to ``answers``.
    """

    async def serve(stream: trio.SocketStream) -> None:
        decoder = FrameDecoder(Framing())
        while data := await stream.receive_some(65536):
            for frame in decoder.feed(bytes(data)):
                message = codec.decode(frame, VISA)
                if message["t"][2] in "13":  # the switch answering our own request
                    assert answers is not None
                    await answers.send(message)
                    continue
                is_auth = message["t"][:2] == "01"
                answer = authorization(message) if is_auth else _echoing(message)
                await stream.send_all(encode_frame(codec.encode(answer, VISA)))
                if message["t"][:2] == "08" and after_sign_on is not None:
                    await stream.send_all(encode_frame(codec.encode(after_sign_on, VISA)))

    return serve


@asynccontextmanager
async def _switch_with_scripted_visa(
    tmp_path: Path, issuer: Callable[[trio.SocketStream], Any]
) -> AsyncIterator[Network]:
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, issuer, 0, host="127.0.0.1")
        [listener] = await nursery.start(serve)
        port = listener.socket.getsockname()[1]

        def to_scripted(raw: dict[str, Any]) -> None:
            raw["issuers"]["visa"]["endpoints"] = [f"127.0.0.1:{port}"]

        async with network(tmp_path, tweak=to_scripted) as net:
            yield net
        nursery.cancel_scope.cancel()


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
        async with _switch_with_scripted_visa(tmp_path, _scripted_issuer(no_f39)) as net:
            client = await net.client()
            answer = await client.request(build_request(pan="4111111111111111", amount=700))
            assert answer is not None and answer["39"] == "91"
            row = await _state(net.config.switch.journal, answer["37"], "timed_out_reversed")
            assert [leg["leg"] for leg in row["legs"]][-2:] == ["saf_out", "saf_in"]
            assert "F39" in (row["legs"][2]["note"] or "")


async def test_the_issuers_own_echo_is_answered_0810_and_the_link_carries_on(
    tmp_path: Path,
) -> None:
    # Networks test the acquirer's station with 0800 echoes and drop a link that
    # leaves them unanswered.
    echo = {"t": "0800", "7": "1129120000", "11": "777777", "70": "301"}
    send, answers = trio.open_memory_channel[dict[str, str]](10)
    issuer = _scripted_issuer(after_sign_on=echo, answers=send)
    with trio.fail_after(20):
        async with _switch_with_scripted_visa(tmp_path, issuer) as net:
            reply = await answers.receive()
            assert (reply["t"], reply["11"], reply["39"], reply["70"]) == (
                "0810",
                "777777",
                "00",
                "301",
            )
            client = await net.client()
            answer = await client.request(build_request(pan="4111111111111111", amount=700))
            assert answer is not None and answer["39"] == "00"
            assert net.server.links["visa"].stats.unmatched == 0


async def test_a_key_the_issuer_sends_unasked_is_refused_with_12(tmp_path: Path) -> None:
    # Acknowledging it with 00 would tell the issuer we changed keys when we did not.
    offer = {"t": "0800", "7": "1129120000", "11": "777778", "70": "161", "120": "00"}
    send, answers = trio.open_memory_channel[dict[str, str]](10)
    issuer = _scripted_issuer(after_sign_on=offer, answers=send)
    with trio.fail_after(20):
        async with _switch_with_scripted_visa(tmp_path, issuer):
            reply = await answers.receive()
            assert (reply["t"], reply["11"], reply["39"]) == ("0810", "777778", "12")
