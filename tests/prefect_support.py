"""A real `prefect server start` for the end-to-end tests that need a server of their own, not the harness."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import requests

from tests.engine_support import wait_for

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrefectServer:
    """`prefect server start` on loopback, on SQLite in `home` unless `database_url` names another database;
    `settings` are added to its environment (e.g. PREFECT_SERVER_API_AUTH_STRING). It can be stopped and
    started again."""

    def __init__(
        self, home: Path, *, database_url: str | None = None, settings: Mapping[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{self.port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            **(settings or {}),
        }
        if database_url:
            self.env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
        else:  # SQLite under PREFECT_HOME
            self.env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def api_url(self) -> str:
        return self.env["PREFECT_API_URL"]

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def healthy() -> bool:  # `/health` answers without credentials even with basic auth on
            assert self.process is not None and self.process.poll() is None, "the Prefect server exited"
            try:
                return requests.get(f"{self.api_url}/health", timeout=2).ok
            except requests.RequestException:
                return False

        wait_for(healthy, "the Prefect server", timeout=180, every=0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None
