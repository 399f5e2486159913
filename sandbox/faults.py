"""Injected faults (status, timeout, slow, reset, commit then lose the answer), rate limit, dropped links."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from starlette.types import Receive, Send

FaultMode = Literal["status", "timeout", "slow", "reset", "commit_then_reset", "commit_then_late"]
DEFAULT_DELAY: dict[FaultMode, float] = {
    "status": 0.0,
    "timeout": 30.0,
    "slow": 1.0,
    "reset": 0.0,
    "commit_then_reset": 0.0,
    "commit_then_late": 30.0,  # longer than any client timeout: the answer is, in effect, lost
}
# Modes in which the stand-in carries the request out and stores it, then loses the answer: the case a
# vendor without idempotency keys leaves its client unable to tell from "never arrived".
COMMIT_MODES: frozenset[FaultMode] = frozenset({"commit_then_reset", "commit_then_late"})


@dataclass
class Fault:
    """Misbehave for `seconds`, for the next `count` requests, or (neither given) until healed."""

    mode: FaultMode
    status: int = 503
    until: float | None = None  # time.monotonic() deadline
    remaining: int | None = None
    delay: float = 0.0

    @classmethod
    def create(
        cls,
        mode: FaultMode,
        status: int = 503,
        seconds: float | None = None,
        count: int | None = None,
        delay: float | None = None,
    ) -> Fault:
        return cls(
            mode=mode,
            status=status,
            until=time.monotonic() + seconds if seconds is not None else None,
            remaining=count,
            delay=DEFAULT_DELAY[mode] if delay is None else delay,
        )

    def expired(self, now: float) -> bool:
        return (self.until is not None and now >= self.until) or self.remaining == 0

    def consume(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


@dataclass
class RateLimit:
    """A token bucket: `per_second` tokens a second, holding at most max(1, per_second)."""

    per_second: float
    retry_after: int = 1
    tokens: float = field(init=False)
    last: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.capacity

    @property
    def capacity(self) -> float:
        return max(1.0, self.per_second)

    def admit(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.per_second)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class WindowLimit:
    """At most `requests` in any `window_seconds`, the way vendors state theirs (HubSpot: 190 per 10 s):
    a log of the admitted requests' times, none of them older than the window."""

    requests: int
    window_seconds: float
    retry_after: int = 1
    admitted: deque[float] = field(default_factory=deque)

    def admit(self, now: float) -> bool:
        while self.admitted and self.admitted[0] <= now - self.window_seconds:
            self.admitted.popleft()
        if len(self.admitted) < self.requests:
            self.admitted.append(now)
            return True
        return False


async def drop_connection(send: Send) -> None:
    """Close the TCP connection with a RST and no HTTP answer.

    uvicorn's `send` is a bound method of its request-response cycle, which holds the transport. Aborting
    the transport with SO_LINGER 0 sends a RST; yielding to the loop lets uvicorn see the connection lost,
    so it does not try to write a 500 of its own.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionResetError("the sandbox cannot reach this server's connection to drop it")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    for _ in range(10):
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)


async def client_left_within(receive: Receive, seconds: float) -> bool:
    """Wait up to `seconds`; True as soon as the client disconnects (its request body already read)."""
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True
