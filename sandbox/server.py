"""Run the sandbox with uvicorn, in the foreground or in a background thread (tests, benchmark)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from sandbox.app import create_app
from sandbox.config import SandboxConfig


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class RunningSandbox:
    """A sandbox serving from a daemon thread; `url` is its base URL."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, url: str) -> None:
        self.server = server
        self.thread = thread
        self.url = url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def server_config(host: str, port: int, config: SandboxConfig | None) -> uvicorn.Config:
    # No access log: paths carry subscriber hashes, and logs here should carry nothing about people.
    return uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )


def start_sandbox(
    host: str = "127.0.0.1", port: int = 0, config: SandboxConfig | None = None
) -> RunningSandbox:
    port = port or free_port(host)
    server = uvicorn.Server(server_config(host, port, config))
    thread = threading.Thread(target=server.run, name="sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the sandbox did not start")
        time.sleep(0.02)
    return RunningSandbox(server, thread, f"http://{host}:{port}")
