"""Operator endpoint of a running switch: JSON lines over a Unix socket.

The socket lives under ``var/`` (``switch.admin_socket``) with mode 0600, so
only the switch's own user on this host can reach it: it is never a TCP port.
One request per line, one JSON answer per line:

    {"cmd": "status"}
    {"cmd": "link", "name": "visa", "action": "down" | "up"}
    {"cmd": "saf_list", "status": "pending"}
    {"cmd": "saf_retry", "id": 12}        (id omitted: every pending entry;
                                           an id with no pending entry: an error)
    {"cmd": "shutdown"}

Answers are ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. A
request with a bad value gets an error answer: nothing an operator sends
here reaches the server's nursery.
``call(path, request)`` is the blocking client the CLI uses.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from switch.errors import SwitchError
from switch.saf import STATUSES

if TYPE_CHECKING:
    from switch.server import Server

__all__ = ["MAX_ID", "AdminError", "call", "serve"]

log = logging.getLogger("switch.admin")


class AdminError(Exception):
    """The switch is not running or answered an error."""


def _now_us() -> int:
    import time

    return time.time_ns() // 1000


class _BadRequest(Exception):
    """A request value the daemon refuses: answered as an error."""


MAX_ID = (1 << 63) - 1  # a larger id or limit does not fit SQLite's INTEGER


def _count(request: dict[str, Any], key: str, default: int | None) -> int | None:
    value = request.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise _BadRequest(f"{key}: expected an integer 1-{MAX_ID}, got {value!r}")
    return value


async def _dispatch(server: Server, request: dict[str, Any]) -> dict[str, Any]:
    cmd = request.get("cmd")
    if cmd == "status":
        return {"ok": True, "status": server.status()}
    if cmd == "link":
        link = server.links.get(str(request.get("name")))
        if link is None:
            return {
                "ok": False,
                "error": f"no link named {request.get('name')!r}; known: {', '.join(server.links)}",
            }
        action = request.get("action")
        if action not in ("up", "down"):
            return {"ok": False, "error": "action must be up or down"}
        link.set_admin_down(action == "down")
        server.forwarders[link.name].kick()
        log.warning("operator set link %s %s", link.name, action)
        return {"ok": True, "link": link.status()}
    if cmd == "saf_list":
        status, limit = request.get("status"), _count(request, "limit", 100)
        if status is not None and status not in STATUSES:
            raise _BadRequest(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
        entries = await trio.to_thread.run_sync(lambda: server.saf.list(status, limit or 100))
        rows = []
        for e in entries:
            row = asdict(e)
            row.pop("pan_enc", None)
            rows.append(row)
        return {"ok": True, "entries": rows}
    if cmd == "saf_retry":
        ident = _count(request, "id", None)
        count = await trio.to_thread.run_sync(lambda: server.saf.retry_now(ident, _now_us()))
        if ident is not None and not count:  # the operator named one: say it is not there
            return {"ok": False, "error": f"no pending SAF entry {ident} (switch saf list)"}
        for forwarder in server.forwarders.values():
            forwarder.kick()
        return {"ok": True, "retried": count}
    if cmd == "key_exchange":
        link = server.links.get(str(request.get("name")))
        if link is None:
            return {"ok": False, "error": f"no link named {request.get('name')!r}"}
        try:
            kcv = await link.exchange_key()
        except SwitchError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "link": link.name, "kcv": kcv}
    if cmd == "keys_reload":
        if server.keys is None:
            return {"ok": False, "error": "no key store in use"}
        await trio.to_thread.run_sync(server.keys.reload)
        return {"ok": True}
    if cmd == "shutdown":
        server.shutdown()
        return {"ok": True}
    return {"ok": False, "error": f"unknown command {cmd!r}"}


async def _client(server: Server, stream: trio.abc.Stream) -> None:
    buffer = b""
    async with stream:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    request = json.loads(line)
                    answer = await _dispatch(server, request if isinstance(request, dict) else {})
                except json.JSONDecodeError as exc:
                    answer = {"ok": False, "error": f"not JSON: {exc}"}
                except _BadRequest as exc:
                    answer = {"ok": False, "error": str(exc)}
                await stream.send_all(json.dumps(answer, default=str).encode() + b"\n")


async def serve(
    server: Server, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED
) -> None:
    path = server.config.switch.admin_socket
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()  # a stale socket from a killed switch
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(16)
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started(path)
            await trio.serve_listeners(
                functools.partial(_client, server), [listener], handler_nursery=nursery
            )
    finally:
        with trio.CancelScope(shield=True):
            path.unlink(missing_ok=True)


def call(path: Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to a running switch and return its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise AdminError(f"no switch is running (no admin socket at {path})") from None
    except OSError as exc:
        raise AdminError(f"cannot reach the switch at {path}: {exc}") from None
    answer: dict[str, Any] = json.loads(data) if data else {"ok": False, "error": "no answer"}
    if not answer.get("ok"):
        raise AdminError(str(answer.get("error")))
    return answer
