"""Serve the intake API with uvicorn and the limits a listener needs: `python -m intake --host H --port P`.

uvicorn's defaults bound neither how long a request's head may take nor, with its default protocol choice,
which parser's header limit applies. Here the h11 parser is chosen explicitly (its limit on a request's
head, ENNU_INTAKE_MAX_HEADER_BYTES, answers 400 and closes beyond it), the head must arrive within
ENNU_INTAKE_HEADER_TIMEOUT_SECONDS, connections are capped (ENNU_INTAKE_MAX_CONNECTIONS, 503 beyond), and
the app itself bounds the body (intake/limits.py: size, ENNU_INTAKE_BODY_TIMEOUT_SECONDS, finite JSON).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from ennu.settings import get_settings

KEEP_ALIVE_SECONDS = 5  # uvicorn's default, stated: an idle connection between requests is closed after it


class HeadDeadlineProtocol(H11Protocol):
    """h11 with a deadline on each request's head (request line and headers).

    uvicorn times out only a connection that sends nothing after a response; one that sends half a
    request line or half its headers, before its first request or between two, was kept open for ever.
    The deadline starts when the connection opens and again when a response completes; a connection
    whose next request has not begun by then is closed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout = get_settings().intake_header_timeout_seconds

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._start_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._start_head_deadline()

    def _start_head_deadline(self) -> None:
        self.loop.call_later(self.head_timeout, self._head_overdue, self.cycle)

    def _head_overdue(self, waited_after: RequestResponseCycle | None) -> None:
        # No request began since the deadline started: the cycle is still the one that was finished (or
        # none), so the client is sending its head too slowly, or nothing but a partial line.
        finished = waited_after is None or waited_after.response_complete
        if self.cycle is waited_after and finished and not self.transport.is_closing():
            self.transport.close()


def server_config(
    app: Any = "intake.app:app", host: str = "127.0.0.1", port: int = 8000, **overrides: Any
) -> uvicorn.Config:
    """The intake's uvicorn configuration; `app` an import string or the app object, `overrides` more
    uvicorn options (a server in a test's thread: `log_config=None`)."""
    settings = get_settings()
    options: dict[str, Any] = {
        "http": HeadDeadlineProtocol,
        "h11_max_incomplete_event_size": settings.intake_max_header_bytes,
        "limit_concurrency": settings.intake_max_connections,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "access_log": False,  # paths carry event and person ids
    }
    return uvicorn.Config(app, host=host, port=port, **{**options, **overrides})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m intake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.Server(server_config(host=args.host, port=args.port)).run()
