"""What the sandbox received and how it is told to misbehave, per vendor, behind one lock."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

FaultMode = Literal["status", "timeout", "slow", "reset"]


@dataclass
class Fault:
    mode: FaultMode
    status: int = 503
    until: float | None = None  # monotonic deadline
    remaining: int | None = None  # requests left
    delay: float = 30.0

    def active(self, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return self.remaining is None or self.remaining > 0


@dataclass
class RateLimit:
    """A token bucket: `per_second` refill, capacity max(1, per_second)."""

    per_second: float
    retry_after: int = 1
    tokens: float = 0.0
    last: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = max(1.0, self.per_second)

    def take(self, now: float) -> bool:
        capacity = max(1.0, self.per_second)
        self.tokens = min(capacity, self.tokens + (now - self.last) * self.per_second)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class VendorState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> key -> object
    fault: Fault | None = None
    rate: RateLimit | None = None
    next_id: int = 1001

    def kind(self, name: str) -> dict[str, Any]:
        return self.objects.setdefault(name, {})

    def new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id)


class SandboxState:
    """Every vendor's state; handlers and the control API share it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.vendors: dict[str, VendorState] = {}

    def vendor(self, name: str) -> VendorState:
        with self.lock:
            return self.vendors.setdefault(name, VendorState())

    def reset(self) -> None:
        with self.lock:
            self.vendors.clear()

    def log_request(self, vendor: str, method: str, path: str, query: str, status: int) -> None:
        entry = {
            "method": method,
            "path": path,
            "query": query,
            "status": status,
            "at": datetime.now(UTC).isoformat(),
        }
        with self.lock:
            self.vendor(vendor).requests.append(entry)

    def take_fault(self, vendor: str) -> Fault | None:
        """The fault to apply to this request, if any (consuming one of a counted fault)."""
        now = time.monotonic()
        with self.lock:
            state = self.vendor(vendor)
            fault = state.fault
            if fault is None:
                return None
            if not fault.active(now):
                state.fault = None
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
            return fault

    def admit(self, vendor: str) -> RateLimit | None:
        """None when the request may go on; the limit it broke otherwise."""
        with self.lock:
            rate = self.vendor(vendor).rate
            if rate is None or rate.take(time.monotonic()):
                return None
            return rate
