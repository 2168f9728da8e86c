"""Start and stop the switch and the simulators as real processes.

Used by ``switch demo``, ``switch bench`` and the end-to-end tests: each
component runs as ``python -m switch.cli ...`` in its own process (so a
``kill -9`` is a real crash), and readiness is observed — a TCP port that
accepts, an admin socket that answers — never guessed with a sleep.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Process", "free_port", "start", "wait_for_links", "wait_for_port"]


def free_port() -> int:
    """A port that was free a moment ago (for configs of child processes)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    host: str, port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"process exited with {proc.returncode} before listening on {port}"
                ) from None
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listening on {host}:{port} after {timeout:.0f}s"
                ) from None
            time.sleep(0.05)  # polling a port of another process: no event to wait on


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, then SIGKILL if it would not stop; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        """kill -9: the crash the journal and SAF must survive."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start(
    name: str,
    args: Sequence[str],
    *,
    log_dir: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
) -> Process:
    """Run ``switch <args>`` as a child process, output to ``log_dir/<name>.log``.

    ``env``: variables set for the child on top of this process's own (e.g. a
    PYTHONPATH that makes it run another checkout's code). ``wrapper``: a
    command the Python process runs under (e.g. valgrind and its options).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "switch.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=child_env,
        )
    return Process(name=name, popen=popen, log_path=log_path)


def wait_for_links(admin_socket: Path, timeout: float = 20.0) -> dict[str, object]:
    """Block until the running switch reports every issuer link up; returns its status."""
    from switch.admin import AdminError, call

    deadline = time.monotonic() + timeout
    while True:
        try:
            status = call(admin_socket, {"cmd": "status"})["status"]
            if all(link["state"] == "up" for link in status["links"]):
                return dict(status)
        except AdminError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"issuer links not up after {timeout:.0f}s")
        time.sleep(0.05)  # another process's state: nothing to wait on but its answers
