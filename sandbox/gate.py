"""The ASGI layer in front of the stand-ins: logs each vendor request and applies faults and limits first."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.faults import COMMIT_MODES, Fault, client_left_within, drop_connection
from sandbox.state import SandboxState, VendorState
from sandbox.vendor import Vendor


class BodyTooLarge(Exception):
    """The request body is larger than the configured cap."""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body (None if the client left first); BodyTooLarge above `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the already-read body to the app, then passes on to the server's."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")


class VendorGate:
    """Wraps the whole app, so it holds the server's own `send` (and with it the connection to drop).

    For a request under a vendor's prefix, in order: read and keep the body; meet the vendor's fault, if
    any; the concurrent-connection limit and the requests-per-second limit (429 in the vendor's shape);
    then the stand-in itself. Every vendor request is logged once, before its answer leaves, so a client
    that reads the log right after an answer finds it there. Control calls are not logged.

    A commit fault (`COMMIT_MODES`) lets the stand-in carry the request out, then keeps its answer from
    the client: the log entry has the stand-in's own status (201, 200, ...) and the fault's name.
    """

    def __init__(self, app: ASGIApp, state: SandboxState, vendors: list[Vendor], max_body_bytes: int) -> None:
        self.app = app
        self.state = state
        self.vendors = vendors
        self.max_body_bytes = max_body_bytes

    def vendor_for(self, path: str) -> Vendor | None:
        return next((v for v in self.vendors if v.serves(path)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        vendor = self.vendor_for(scope["path"]) if scope["type"] == "http" else None
        if vendor is None:
            await self.app(scope, receive, send)
            return
        store = self.state.vendor(vendor.name)
        if not self.state.enter(vendor.name):
            await self.answer(scope, send, store, vendor.error(vendor.rate_limit_status(), 1), "concurrency")
            return
        try:
            await self.handle(scope, receive, send, vendor, store)
        finally:
            self.state.leave(vendor.name)

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, vendor: Vendor, store: VendorState
    ) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        try:
            body = await read_body(receive, self.max_body_bytes)
        except BodyTooLarge:
            await self.answer(scope, send, store, vendor.error(413))
            return
        if body is None:
            store.log_request(method, path, query_of(scope), 0, "client-disconnected")
            return
        if body:
            store.keep_body(method, path, parsed(body))

        fault = store.take_fault()
        if fault is not None and await self.misbehave(fault, scope, receive, send, vendor, store):
            return
        limit = store.admit()
        if limit is not None:
            response = vendor.error(vendor.rate_limit_status(), limit.retry_after)
            await self.answer(scope, send, store, response, "rate")
            return
        if fault is not None and fault.mode in COMMIT_MODES:
            await self.commit_then_lose_answer(fault, scope, body, receive, send, store)
            return

        logged = False

        async def logging_send(message: Message) -> None:
            nonlocal logged
            if message["type"] == "http.response.start" and not logged:
                logged = True
                store.log_request(method, path, query_of(scope), int(message["status"]), fault_name(fault))
            await send(message)

        try:
            await self.app(scope, replaying(body, receive), logging_send)
        finally:
            if not logged:
                store.log_request(method, path, query_of(scope), 500, fault_name(fault))

    async def misbehave(
        self, fault: Fault, scope: Scope, receive: Receive, send: Send, vendor: Vendor, store: VendorState
    ) -> bool:
        """Apply a fault; True when it answered (or dropped) the request, False to carry on normally.

        `receive` is the server's own, past the body: it only has a disconnect left to tell. A commit
        fault carries on here: the stand-in answers first (`commit_then_lose_answer`).
        """
        if fault.mode in COMMIT_MODES:
            return False
        if fault.mode == "status":
            await self.answer(scope, send, store, vendor.error(fault.status), "status")
            return True
        if fault.mode == "slow":
            await store.held(fault.delay)  # slow, not deaf: handled even if the client gave up meanwhile
            return False
        if fault.mode == "timeout":  # hang until the client gives up (or `delay` passes), then hang up
            await client_left_within(receive, fault.delay)
        store.log_request(scope["method"], scope["path"], query_of(scope), 0, fault.mode)
        await drop_connection(send)
        return True

    async def commit_then_lose_answer(
        self, fault: Fault, scope: Scope, body: bytes, receive: Receive, send: Send, store: VendorState
    ) -> None:
        """Let the stand-in carry the request out and store it, hold its answer, then lose it.

        commit_then_reset drops the connection (RST) at once; commit_then_late answers after `delay`
        seconds, unless the client has left by then (then the connection is simply dropped).
        """
        held: list[Message] = []

        async def holding_send(message: Message) -> None:
            held.append(message)

        try:
            await self.app(scope, replaying(body, receive), holding_send)
        finally:
            status = next((int(m["status"]) for m in held if m["type"] == "http.response.start"), 500)
            store.log_request(scope["method"], scope["path"], query_of(scope), status, fault.mode)
        if fault.mode == "commit_then_late" and not await client_left_within(receive, fault.delay):
            for message in held:
                await send(message)
            return
        await drop_connection(send)

    async def answer(
        self, scope: Scope, send: Send, store: VendorState, response: Response, fault: str | None = None
    ) -> None:
        store.log_request(scope["method"], scope["path"], query_of(scope), response.status_code, fault)

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)


def query_of(scope: Scope) -> str:
    raw: bytes = scope.get("query_string", b"")
    return raw.decode("latin-1")


def fault_name(fault: Fault | None) -> str | None:
    return fault.mode if fault is not None else None
