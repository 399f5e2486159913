"""The ASGI layer in front of every vendor: request log, injected faults and the 429 rate limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.state import SandboxState

# vendor prefix -> function(status, retry_after) -> (body, content type, extra headers)
ErrorBody = Callable[[int, int | None], tuple[dict[str, Any], str, dict[str, str]]]


def _reset_connection(send: Send) -> bool:
    """Drop the TCP connection with a RST and no HTTP answer (uvicorn's cycle holds the transport)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return True


class VendorGate:
    """Logs vendor requests and applies what the control API asked for, before the vendor handler."""

    def __init__(self, app: ASGIApp, state: SandboxState, vendors: dict[str, ErrorBody]) -> None:
        self.app = app
        self.state = state
        self.vendors = vendors

    def vendor_of(self, path: str) -> str | None:
        first = path.strip("/").split("/", 1)[0]
        return first if first in self.vendors else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        vendor = self.vendor_of(path)
        if vendor is None:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        query = scope.get("query_string", b"").decode()

        fault = self.state.take_fault(vendor)
        if fault is not None:
            if fault.mode == "reset" and _reset_connection(send):
                self.state.log_request(vendor, method, path, query, 0)
                return
            if fault.mode in ("timeout", "slow"):
                await asyncio.sleep(fault.delay)
            if fault.mode == "status":
                self.state.log_request(vendor, method, path, query, fault.status)
                await self.answer(send, vendor, fault.status, None)
                return
        limit = self.state.admit(vendor)
        if limit is not None:
            self.state.log_request(vendor, method, path, query, 429)
            await self.answer(send, vendor, 429, limit.retry_after)
            return

        status_box: list[int] = []

        async def logging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, logging_send)
        finally:
            self.state.log_request(vendor, method, path, query, status_box[0] if status_box else 500)

    async def answer(self, send: Send, vendor: str, status: int, retry_after: int | None) -> None:
        body, content_type, headers = self.vendors[vendor](status, retry_after)
        raw = json.dumps(body).encode()
        header_list = [(b"content-type", content_type.encode()), (b"content-length", str(len(raw)).encode())]
        if retry_after is not None:
            header_list.append((b"retry-after", str(retry_after).encode()))
        header_list += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": header_list})
        await send({"type": "http.response.body", "body": raw})
