"""The intake server's limits, over a real socket: a slow body or head is cut off, an oversized head refused.

The server is the one `python -m intake` runs (intake/server.py's configuration and protocol), serving from
a thread of the test process on a port of its own, with the timeouts shortened to a second.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from ennu.settings import reload_settings
from intake.app import create_app
from intake.server import server_config

SHORT_TIMEOUT = 1.0
PATIENCE = 30.0  # how long a test waits for the server to act: generous on a loaded machine
TOKEN = b"Authorization: Bearer dev-intake-token\r\n"


@pytest.fixture()
def intake_address(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    monkeypatch.setenv("ENNU_INTAKE_BODY_TIMEOUT_SECONDS", str(SHORT_TIMEOUT))
    monkeypatch.setenv("ENNU_INTAKE_HEADER_TIMEOUT_SECONDS", str(SHORT_TIMEOUT))
    monkeypatch.setenv("ENNU_INTAKE_MAX_HEADER_BYTES", "4096")
    reload_settings()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    # log_config=None: a server in a thread must not reconfigure the test process's logging.
    server = uvicorn.Server(server_config(create_app(), port=0, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the intake server did not start"
        time.sleep(0.01)
    yield sock.getsockname()
    server.should_exit = True
    thread.join(PATIENCE)
    sock.close()
    monkeypatch.undo()
    reload_settings()


def send_and_read_until_closed(address: tuple[str, int], data: bytes) -> tuple[bytes, float]:
    """Send `data`, then read until the server closes the connection: what it answered, and how long
    that took (a connection the server leaves open fails the test after PATIENCE seconds)."""
    with socket.create_connection(address, timeout=PATIENCE) as conn:
        conn.sendall(data)
        started = time.monotonic()
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received, time.monotonic() - started


def test_half_a_body_is_answered_408_and_the_connection_closed(intake_address: tuple[str, int]) -> None:
    head = (
        b"POST /events HTTP/1.1\r\nHost: intake\r\nContent-Type: application/json\r\nContent-Length: 200\r\n"
    )
    answer, waited = send_and_read_until_closed(
        intake_address, head + TOKEN + b"\r\n" + b'{"id": "evt-slow", '
    )

    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert b"evt-slow" not in answer
    assert SHORT_TIMEOUT * 0.9 <= waited < PATIENCE


def test_half_a_request_head_is_closed_after_the_header_timeout(intake_address: tuple[str, int]) -> None:
    answer, waited = send_and_read_until_closed(
        intake_address, b"POST /events HTTP/1.1\r\nHost: intake\r\nX-Par"
    )

    assert answer == b""
    assert SHORT_TIMEOUT * 0.9 <= waited < PATIENCE


def test_a_connection_that_sends_nothing_is_closed(intake_address: tuple[str, int]) -> None:
    answer, waited = send_and_read_until_closed(intake_address, b"")

    assert answer == b""
    assert SHORT_TIMEOUT * 0.9 <= waited < PATIENCE


@pytest.mark.parametrize("arrival", ["at once", "in pieces"])
def test_a_head_over_the_header_limit_is_refused(intake_address: tuple[str, int], arrival: str) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: intake\r\nX-Padding: " + b"a" * 8192 + b"\r\n\r\n"
    if arrival == "at once":
        answer, _ = send_and_read_until_closed(intake_address, head)
    else:  # the server's parser sees a head still incomplete past the limit
        answer, _ = send_and_read_until_closed(intake_address, head[:6000])

    expected = b"HTTP/1.1 431 " if arrival == "at once" else b"HTTP/1.1 400 "
    assert answer.startswith(expected), answer[:80]


def test_a_prompt_request_is_served_and_the_connection_kept_alive(intake_address: tuple[str, int]) -> None:
    conn = http.client.HTTPConnection(*intake_address, timeout=PATIENCE)
    answers, sockets = [], []
    for _ in range(2):
        conn.request("GET", "/health")
        response = conn.getresponse()
        answers.append((response.status, response.read()))
        sockets.append(conn.sock)
    conn.close()

    assert answers == [(200, b'{"status":"ok"}')] * 2
    assert sockets[0] is not None and sockets[1] is sockets[0], "the second request used the same connection"
