"""Serve the sandbox with uvicorn: in a background thread (tests, benchmark) or in the foreground."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from aiosmtpd.controller import Controller

from ennu.settings import is_loopback_host
from sandbox.app import SandboxApp, create_app
from sandbox.config import SandboxConfig
from sandbox.smtp import start_smtp

KEEP_ALIVE_SECONDS = 75


def uvicorn_config(
    config: SandboxConfig | None, host: str = "127.0.0.1", port: int = 0, *, foreground: bool = False
) -> uvicorn.Config:
    """No access log: paths carry subscriber hashes and ids, and the sandbox logs nothing about people.

    In a background thread uvicorn must not reconfigure the host process's logging (log_config=None).
    Idle connections are kept open as long as the vendors' front ends keep them (a minute and more), not
    uvicorn's 5 s: a stand-in closing a pooled connection just as the client reuses it turned a request into
    a reset after sending, which an upsert retries later and a send without a look-up must treat as
    ambiguous — a fault nobody set, seen in the demo as a Salesforce retry.
    """
    return uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        log_config=uvicorn.config.LOGGING_CONFIG if foreground else None,
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=1,
    )


class RunningSandbox:
    """A sandbox serving from a daemon thread; `url` is its base URL (`{url}/hubspot`, ...), `smtp_port`
    its SMTP stand-in's port on the same host."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, url: str, smtp: Controller) -> None:
        self.server = server
        self.thread = thread
        self.url = url
        self.smtp = smtp
        self.smtp_port = int(smtp.port)

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.smtp.stop()

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def start_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    config: SandboxConfig | None = None,
    *,
    allow_remote: bool = False,
    startup_timeout: float = 15.0,
    smtp_port: int = 0,
) -> RunningSandbox:
    """Serve the sandbox from a background thread; port 0 takes a free port (bound here, so no race)."""
    if not allow_remote and not is_loopback_host(host):
        raise ValueError(f"the sandbox serves on loopback only, not {host!r} (allow_remote=True to override)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    bound_port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn_config(config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            sock.close()
            raise RuntimeError("the sandbox did not start")
        time.sleep(0.01)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    app = server.config.app
    assert isinstance(app, SandboxApp)
    smtp = start_smtp(app.sandbox, host, smtp_port)
    return RunningSandbox(server, thread, f"http://{shown}:{bound_port}", smtp)
