"""Child processes of the bench harness: each in its own process group, logged to a file, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
STOP_SECONDS = 15.0  # SIGTERM, then SIGKILL after this long


def free_port() -> int:
    """A port nobody listens on now (bound to port 0 on loopback, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """One child: started in a new session (its own process group), stdout and stderr to `log`."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self.log_offset = 0  # where this start's output begins in the log

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: signal.Signals) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)  # the group id is the child's pid (start_new_session)

    def kill(self) -> None:
        """kill -9 of the whole group, at once (what a crash looks like)."""
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=STOP_SECONDS)

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGTERM to the group; SIGKILL whatever is left after `timeout`."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        self.signal_group(signal.SIGKILL)  # stragglers of the group, even when the leader is gone
        if self.popen.poll() is None:
            self.popen.wait(timeout=timeout)

    def output(self) -> str:
        """What this start of the process has written so far."""
        if not self.log.exists():
            return ""
        with self.log.open("rb") as source:
            source.seek(self.log_offset)
            return source.read().decode("utf-8", errors="replace")

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll `ready` (every 0.25 s) until true; raise when the process exits or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.popen.returncode if self.popen is not None else None
                raise RuntimeError(f"{self.name} exited (code {code}) before {what}; see {self.log}")
            try:
                if ready():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name}: no {what} within {timeout:.0f} s; see {self.log}")

    def wait_http(self, url: str, timeout: float) -> None:
        self.wait_for(lambda: requests.get(url, timeout=2).status_code < 500, f"answer at {url}", timeout)

    def wait_output(self, text: str, timeout: float) -> None:
        self.wait_for(lambda: text in self.output(), f"{text!r} in its log", timeout)
