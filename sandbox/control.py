"""The sandbox's own API (`/_sandbox`): inspect what arrived, inject faults and rate limits, reset."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from sandbox.state import Fault, RateLimit, SandboxState


class FaultRequest(BaseModel):
    mode: Literal["status", "timeout", "slow", "reset"]
    status: int = Field(default=503, ge=400, le=599)
    seconds: float | None = Field(default=None, gt=0)
    count: int | None = Field(default=None, gt=0)
    delay: float | None = Field(default=None, ge=0)


class RateRequest(BaseModel):
    per_second: float | None = Field(default=None, gt=0)
    retry_after: int = Field(default=1, ge=0)


def build_router(state: SandboxState) -> APIRouter:
    router = APIRouter(prefix="/_sandbox", tags=["sandbox control"])

    @router.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.post("/reset")
    def reset() -> dict[str, str]:
        state.reset()
        return {"status": "reset"}

    @router.get("/{vendor}/requests")
    def requests_received(vendor: str) -> list[dict[str, Any]]:
        with state.lock:
            return list(state.vendor(vendor).requests)

    @router.get("/{vendor}/objects/{kind}")
    def objects(vendor: str, kind: str) -> list[dict[str, Any]]:
        with state.lock:
            return [dict(o) for o in state.vendor(vendor).kind(kind).values()]

    @router.post("/{vendor}/faults")
    def fail(vendor: str, fault: FaultRequest) -> dict[str, str]:
        default_delay = 30.0 if fault.mode == "timeout" else 1.0
        with state.lock:
            state.vendor(vendor).fault = Fault(
                mode=fault.mode,
                status=fault.status,
                until=time.monotonic() + fault.seconds if fault.seconds else None,
                remaining=fault.count,
                delay=fault.delay if fault.delay is not None else default_delay,
            )
        return {"status": "failing"}

    @router.delete("/{vendor}/faults")
    def heal(vendor: str) -> dict[str, str]:
        with state.lock:
            state.vendor(vendor).fault = None
        return {"status": "healthy"}

    @router.post("/{vendor}/rate")
    def rate(vendor: str, limit: RateRequest) -> dict[str, str]:
        with state.lock:
            state.vendor(vendor).rate = (
                RateLimit(limit.per_second, limit.retry_after) if limit.per_second is not None else None
            )
        return {"status": "set"}

    return router
