"""The sandbox's own API under /_sandbox: see what arrived, inject faults and limits, reset."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from sandbox.faults import Fault, FaultMode, RateLimit, WindowLimit
from sandbox.state import SandboxState, VendorState


class FaultRequest(BaseModel):
    """`POST /_sandbox/{vendor}/faults`: misbehave for `seconds`, for `count` requests, or until healed."""

    model_config = ConfigDict(extra="forbid")

    mode: FaultMode
    status: int = Field(default=503, ge=400, le=599)
    seconds: float | None = Field(default=None, gt=0)
    count: int | None = Field(default=None, gt=0)
    delay: float | None = Field(default=None, ge=0)  # timeout, commit_then_late: 30 s by default; slow: 1 s


class RateRequest(BaseModel):
    """`POST /_sandbox/{vendor}/rate`: requests a second (a token bucket), or at most `requests` in any
    `window_seconds` (a vendor's stated limit, e.g. 190 per 10 s); simultaneous requests (null: unlimited)."""

    model_config = ConfigDict(extra="forbid")

    per_second: float | None = Field(default=None, gt=0)
    requests: int | None = Field(default=None, gt=0)
    window_seconds: float | None = Field(default=None, gt=0)
    retry_after: int = Field(default=1, ge=0)
    concurrent: int | None = Field(default=None, gt=0)


def build_router(state: SandboxState, vendors: list[str]) -> APIRouter:
    """Control calls are never logged as vendor requests, never faulted and never rate limited."""
    router = APIRouter(prefix="/_sandbox", tags=["sandbox control"])

    def vendor_state(vendor: str) -> VendorState:
        if vendor not in vendors:
            raise HTTPException(404, f"no stand-in named {vendor!r}; known: {', '.join(vendors)}")
        return state.vendor(vendor)

    @router.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "vendors": vendors}

    @router.post("/reset")
    async def reset() -> dict[str, str]:
        state.reset()
        return {"status": "reset"}

    @router.get("/{vendor}/requests")
    async def requests_received(vendor: str) -> list[dict[str, Any]]:
        received = vendor_state(vendor)
        with state.lock:
            return [dict(entry) for entry in received.requests]

    @router.get("/{vendor}/bodies")
    async def bodies_received(vendor: str) -> list[dict[str, Any]]:
        received = vendor_state(vendor)
        with state.lock:
            return copy.deepcopy(list(received.bodies))

    @router.get("/{vendor}/objects")
    async def everything_stored(vendor: str) -> dict[str, list[Any]]:
        """Every kind of object the stand-in stores for this vendor (what an erasure must have removed)."""
        stored = vendor_state(vendor)
        with state.lock:
            kinds = list(stored.objects)
        return {kind: stored.snapshot(kind) for kind in kinds}

    @router.get("/{vendor}/objects/{kind}")
    async def objects(vendor: str, kind: str) -> list[dict[str, Any]]:
        return vendor_state(vendor).snapshot(kind)

    @router.post("/{vendor}/faults")
    async def fail(vendor: str, fault: FaultRequest) -> dict[str, str]:
        target = vendor_state(vendor)
        with state.lock:
            target.fault = Fault.create(fault.mode, fault.status, fault.seconds, fault.count, fault.delay)
        return {"status": "failing", "mode": fault.mode}

    @router.delete("/{vendor}/faults")
    async def heal(vendor: str) -> dict[str, str]:
        target = vendor_state(vendor)
        with state.lock:
            target.heal()
        return {"status": "healthy"}

    @router.post("/{vendor}/rate")
    async def rate(vendor: str, limit: RateRequest) -> dict[str, str]:
        target = vendor_state(vendor)
        with state.lock:
            if limit.requests is not None and limit.window_seconds is not None:
                target.rate = WindowLimit(limit.requests, limit.window_seconds, limit.retry_after)
            else:
                target.rate = RateLimit(limit.per_second, limit.retry_after) if limit.per_second else None
            target.max_concurrent = limit.concurrent
        return {"status": "set"}

    return router
