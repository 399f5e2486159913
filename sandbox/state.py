"""What each vendor stand-in received and holds, and how it is told to misbehave, behind one lock."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from sandbox.faults import Fault, RateLimit, WindowLimit

__all__ = ["Fault", "RateLimit", "SandboxState", "VendorState"]


class VendorState:
    """One vendor's request log, kept bodies, stored objects (kind -> key -> object), fault and limits.

    The request log holds method, path, query, status, time and the fault met, never a body: bodies are
    kept apart, in memory only, for tests to inspect through the control API. Mutate under `lock`.
    """

    def __init__(
        self, lock: threading.RLock, kept_bodies: int = 1000, rate: RateLimit | WindowLimit | None = None
    ) -> None:
        self.lock = lock
        self.requests: list[dict[str, Any]] = []
        self.bodies: deque[dict[str, Any]] = deque(maxlen=kept_bodies)
        self.objects: dict[str, dict[str, Any]] = {}
        self.fault: Fault | None = None
        self.healed = asyncio.Event()  # set at a heal: the requests a slow fault holds go on
        self.rate = rate
        self.max_concurrent: int | None = None
        self.next_id = 1001
        # Lookups a stand-in derives from its stored objects (kept by its own writes; `sandbox.hubspot`).
        self.indexes: dict[Any, Any] = {}

    def heal(self) -> None:
        """No fault any more, and the requests a slow fault holds are answered now; callers hold the lock."""
        self.fault = None
        self.healed.set()
        self.healed = asyncio.Event()

    async def held(self, seconds: float) -> None:
        """Hold a request for `seconds` (a slow fault), or until the vendor is healed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.healed.wait(), seconds)

    def kind(self, name: str) -> dict[str, Any]:
        """The stored objects of one kind (contacts, members, ...) by key; callers hold the lock."""
        return self.objects.setdefault(name, {})

    def new_id(self) -> str:
        """A fresh numeric id, as a string (HubSpot-style object ids)."""
        with self.lock:
            self.next_id += 1
            return str(self.next_id)

    def snapshot(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(self.objects.get(kind, {}).values()))

    def log_request(self, method: str, path: str, query: str, status: int, fault: str | None = None) -> None:
        entry = {
            "method": method,
            "path": path,
            "query": query,
            "status": status,
            "at": datetime.now(UTC).isoformat(),
            "fault": fault,
        }
        with self.lock:
            self.requests.append(entry)

    def keep_body(self, method: str, path: str, body: Any) -> None:
        with self.lock:
            self.bodies.append({"method": method, "path": path, "body": body})

    def take_fault(self) -> Fault | None:
        """The fault this request meets, if any, counting it against a fault limited to N requests."""
        with self.lock:
            fault = self.fault
            if fault is None:
                return None
            if fault.expired(time.monotonic()):
                self.fault = None
                return None
            fault.consume()
            return fault

    def admit(self) -> RateLimit | WindowLimit | None:
        """None when the request is within the rate; otherwise the limit it exceeded."""
        with self.lock:
            if self.rate is None or self.rate.admit(time.monotonic()):
                return None
            return self.rate


class SandboxState:
    """Every vendor's state under one re-entrant lock, shared by the stand-ins and the control API."""

    def __init__(
        self, rates: dict[str, float | None] | None = None, retry_after: int = 1, kept_bodies: int = 1000
    ) -> None:
        self.lock = threading.RLock()
        self.rates = dict(rates or {})
        self.retry_after = retry_after
        self.kept_bodies = kept_bodies
        self.vendors: dict[str, VendorState] = {}
        self._in_flight: dict[str, int] = {}  # survives reset(): requests under way still count down

    def vendor(self, name: str) -> VendorState:
        with self.lock:
            state = self.vendors.get(name)
            if state is None:
                per_second = self.rates.get(name)
                rate = RateLimit(per_second, self.retry_after) if per_second else None
                state = self.vendors[name] = VendorState(self.lock, self.kept_bodies, rate)
            return state

    def reset(self) -> None:
        """Forget everything received and stored; faults healed; limits back to the configured ones."""
        with self.lock:
            for vendor in self.vendors.values():
                vendor.heal()
            self.vendors.clear()

    def enter(self, name: str) -> bool:
        """Count a request in flight; False (not counted) when the vendor's concurrency limit is reached."""
        with self.lock:
            limit = self.vendor(name).max_concurrent
            in_flight = self._in_flight.get(name, 0)
            if limit is not None and in_flight >= limit:
                return False
            self._in_flight[name] = in_flight + 1
            return True

    def leave(self, name: str) -> None:
        with self.lock:
            self._in_flight[name] -= 1
