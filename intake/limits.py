"""What the intake reads of a request before the app sees it: the size of its head, the size and read
deadline of its body, finite JSON numbers. FastAPI has none of them."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from intake.errors import BODY_TIMEOUT_BODY, HEAD_TOO_LARGE_BODY, NON_FINITE_BODY, TOO_LARGE_BODY, is_json


class RequestLimits:
    """Refuse a request whose head (path, query and headers) is over `max_header_bytes` with 431 (the
    server's parser bounds only a head that arrives in pieces: intake/server.py). Then read the whole body
    first, and refuse it with the one error body when it is:

    - larger than `max_bytes`, declared (Content-Length) or received (a chunked body): 413;
    - not received within `read_timeout` seconds of the request's start: 408, and the connection is closed
      (a client that sends half a body would otherwise hold a connection and a task for ever);
    - JSON with a number that is not finite (`NaN`, `Infinity`, `-Infinity`, or one like `1e400` that
      overflows a double): 422. Python's parser accepts them, and what it hands on is not JSON: SQLite
      stored it as written, PostgreSQL refused it with a server error. Refused here, nothing is stored.

    A body that is not JSON at all passes: the route's own parsing answers it (400, 415 or 422).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout: float, max_header_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if head_size(scope) > self.max_header_bytes:
            await _refuse(send, 431, HEAD_TOO_LARGE_BODY, close=True)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _refuse(send, 413, TOO_LARGE_BODY)
            return
        deadline = asyncio.get_running_loop().time() + self.read_timeout
        body = bytearray()
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                await _refuse(send, 408, BODY_TIMEOUT_BODY, close=True)
                return
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            if len(body) > self.max_bytes:
                await _refuse(send, 413, TOO_LARGE_BODY)
                return
            if not message.get("more_body", False):
                break
        content_type = headers.get(b"content-type")
        if (
            body
            and (content_type is None or is_json(content_type.decode("latin-1")))
            and not finite_json(body)
        ):
            await _refuse(send, 422, NON_FINITE_BODY)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def head_size(scope: Scope) -> int:
    """The bytes of a request's target and header lines as received (give or take the separators)."""
    target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    return target + sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))


class NonFiniteNumber(ValueError):
    """A JSON number that is not a finite double (raised while parsing, so parsing stops there)."""


def _refuse_constant(_: str) -> float:
    raise NonFiniteNumber


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber
    return value


def loads_finite(body: bytes | bytearray) -> Any:
    """`json.loads` that raises `NonFiniteNumber` (a ValueError) for `NaN`, `Infinity`, `-Infinity` and a
    number that overflows a double, instead of handing on a float that is not JSON."""
    return json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)


def finite_json(body: bytes | bytearray) -> bool:
    """False when the body is JSON holding a non-finite number (`loads_finite`); True otherwise, including
    when it is not JSON at all (the route answers that)."""
    try:
        loads_finite(body)
    except NonFiniteNumber:
        return False
    except (ValueError, RecursionError):
        return True
    return True


async def _refuse(send: Send, status: int, body: bytes, *, close: bool = False) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
