"""An acquirer-side client: what a shop's gateway does, as a library.

``AcquirerClient`` keeps one connection to the switch, sends requests in the
acquirer dialect and matches answers back by (F41, F11) — many in flight at
once, answers in any order. Used by ``switch send``, ``switch replay``,
``switch demo``, the tests and the benchmark. Over TLS (``ssl_context``),
:meth:`AcquirerClient.connect` completes the handshake before returning, so a
certificate the switch or the client refuses fails there and not as a silent
timeout; a refusal that TLS 1.3 delivers only on the first read is kept in
``close_reason``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

import trio

import specs
from switch import codec
from switch.errors import reason_of
from switch.framing import FrameDecoder, Framing, encode_frame
from switch.translate import transmission_time

__all__ = ["AcquirerClient", "Exchange", "build_request"]


@dataclass(slots=True)
class Exchange:
    request: dict[str, str]
    answer: dict[str, str] | None = None
    latency: float | None = None
    done: trio.Event = field(default_factory=trio.Event)


_stan_counter = itertools.count(secrets.randbelow(500_000) + 1)


def next_stan() -> str:
    return f"{next(_stan_counter) % 1_000_000 or 1:06d}"


def build_request(
    *,
    mti: str = "0100",
    pan: str,
    amount: int,
    currency: str = "933",
    processing_code: str = "000000",
    terminal: str = "TERM0001",
    merchant: str = "SHOP00000000001",
    expiry: str | None = "3012",
    cvv2: str | None = None,
    eci: str | None = None,
    cavv: str | None = None,
    ecommerce: bool = False,
    stan: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """An acquirer-dialect request from friendly values (amount in minor units)."""
    now = dt.datetime.now(dt.UTC)
    msg = {
        "t": mti,
        "2": pan,
        "3": processing_code,
        "4": f"{amount:012d}",
        "7": transmission_time(now),
        "11": stan or next_stan(),
        "12": now.strftime("%H%M%S"),
        "13": now.strftime("%m%d"),
        "22": "812" if ecommerce else "051",
        "41": terminal,
        "42": merchant,
        "49": currency,
    }
    if ecommerce:
        msg["25"] = "59"
    if expiry:
        msg["14"] = expiry
    tlv = ""
    for tag, value in (("C2", cvv2), ("EC", eci), ("AV", cavv)):
        if value:
            tlv += f"{tag}{len(value):03d}{value}"
    if tlv:
        msg["48"] = tlv
    msg.update(extra or {})
    return msg


class AcquirerClient:
    """One connection to the switch's acquirer listener."""

    def __init__(self, stream: trio.abc.Stream, spec: specs.Spec, framing: Framing) -> None:
        self.stream = stream
        self.spec = spec
        self.framing = framing
        self._decoder = FrameDecoder(framing)
        self._waiting: dict[tuple[str, str], Exchange] = {}
        self._send_lock = trio.Lock()
        self.unmatched: list[dict[str, str]] = []
        self.closed = trio.Event()
        self.close_reason: str | None = None  # why the read side broke, if it did

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        spec: str = "iso87ascii",
        framing: str = "2b",
        ssl_context: ssl.SSLContext | None = None,
    ) -> AcquirerClient:
        """Connect (with TLS when ``ssl_context`` is given); OSError if nothing listens,
        trio.BrokenResourceError if the TLS handshake fails (``reason_of`` says why)."""
        stream: trio.abc.Stream
        if ssl_context is None:
            stream = await trio.open_tcp_stream(host, port)
        else:
            from switch import tls  # cryptography is loaded only for TLS

            stream = await tls.open_stream(host, port, ssl_context)
        return cls(stream, specs.load(spec), Framing(kind=framing))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read answers until the connection closes; run it in a nursery."""
        task_status.started()
        try:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                for frame in self._decoder.feed(bytes(data)):
                    answer = codec.decode(frame, self.spec)
                    key = (answer.get("41", ""), answer.get("11", ""))
                    ex = self._waiting.pop(key, None)
                    if ex is None:
                        self.unmatched.append(answer)
                        continue
                    ex.answer = answer
                    ex.latency = trio.current_time() - (ex.latency or 0.0)
                    ex.done.set()
        except trio.BrokenResourceError as exc:
            self.close_reason = reason_of(exc)  # e.g. a TLS 1.3 alert: certificate required
        except trio.ClosedResourceError:
            pass
        finally:
            self.closed.set()
            for ex in self._waiting.values():
                ex.done.set()

    async def send_raw(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(data)

    async def submit(self, request: dict[str, str], *, message: bytes | None = None) -> Exchange:
        """Send ``request``; the returned Exchange's ``done`` fires on its answer.

        ``message`` sends these bytes instead of encoding ``request`` (a MAC'd
        message, a deliberately broken one); the answer is still matched by
        the request's F41 and F11.
        """
        ex = Exchange(request=request, latency=trio.current_time())
        self._waiting[(request.get("41", ""), request.get("11", ""))] = ex
        body = message if message is not None else codec.encode(request, self.spec)
        await self.send_raw(encode_frame(body, self.framing))
        return ex

    async def request(
        self, request: dict[str, str], timeout: float = 10.0
    ) -> dict[str, str] | None:
        """Send and wait for the answer (None on timeout or closed connection)."""
        ex = await self.submit(request)
        with trio.move_on_after(timeout):
            await ex.done.wait()
        if ex.answer is None:
            self._waiting.pop((request.get("41", ""), request.get("11", "")), None)
        return ex.answer

    async def aclose(self) -> None:
        await self.stream.aclose()
