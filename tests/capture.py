"""A capturing HTTP endpoint on loopback for contract tests: it records every request and answers canned
vendor responses, so the official SDK's request and ours can be compared byte for byte."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Captured:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def form(self) -> list[tuple[str, str]]:
        return sorted(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass
class CapturingEndpoint:
    """An HTTP endpoint on loopback that records every request and answers canned vendor responses."""

    url: str = ""
    requests: list[Captured] = field(default_factory=list)
    connections: int = 0  # accepted at the listening socket, whether or not a request followed
    answers: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def answer(self, method: str, path: str, status: int, body: dict[str, Any]) -> None:
        self.answers[(method, path)] = (status, body)

    def take(self) -> list[Captured]:
        taken, self.requests = self.requests, []
        return taken


@contextmanager
def capturing_endpoint(tls: ssl.SSLContext | None = None) -> Iterator[CapturingEndpoint]:
    """The endpoint, served over TLS with `tls` (a server context holding its certificate)."""
    capture = CapturingEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def handle_one(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            capture.requests.append(
                Captured(
                    self.command,
                    parts.path,
                    sorted(parse_qsl(parts.query, keep_blank_values=True)),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
            )
            status, body = capture.answers.get((self.command, parts.path), (404, {"error": "no answer"}))
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

        def log_message(self, format: str, *args: Any) -> None:
            return

    class CountingServer(ThreadingHTTPServer):
        def verify_request(self, request: Any, client_address: Any) -> bool:
            capture.connections += 1  # every accepted connection, before any byte is read
            return True

    server = CountingServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    capture.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    try:
        yield capture
    finally:
        server.shutdown()
        server.server_close()
