"""Zapier catch-hook stand-in: each POST to a hook answers 200 success and is kept; a hook can be gone, or
told to answer another status (a 500, a redirect)."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sandbox.config import SandboxConfig
from sandbox.state import SandboxState

# Where the stand-in is mounted: the vendor's real paths follow (sandbox.app discovers it by this).
MOUNT = "/zapier"

VENDOR = "zapier"


def error_body(status: int, retry_after: int | None) -> tuple[dict[str, Any], str, dict[str, str]]:
    return {"status": "error", "message": "Something went wrong. Please try again."}, "application/json", {}


def _payload(raw: bytes, content_type: str) -> Any:
    """Catch hooks take JSON, form fields or anything else (kept as text)."""
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type or text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            return text
    if "x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(text))
    return text


class HookAnswer(BaseModel):
    status: int = Field(ge=200, le=599)
    location: str | None = None  # for a redirect: where it points


def build_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    router = APIRouter()

    @router.post("/hooks/{hook_id}")
    @router.post("/hooks/{hook_id}/")  # Zapier's own hook URLs end in a slash: no redirect to the other
    async def catch_hook(hook_id: str, request: Request) -> Response:
        payload = _payload(await request.body(), request.headers.get("content-type", ""))
        with state.lock:
            vendor = state.vendor(VENDOR)
            if hook_id in vendor.kind("gone"):
                return JSONResponse({"status": "error", "message": "This hook is no longer active."}, 410)
            told = vendor.kind("answers").get(hook_id)
            if told is not None:  # misbehaving as told (`/_sandbox/hooks/{hook_id}/answer`): nothing kept
                headers = {"Location": told["location"]} if told.get("location") else {}
                return JSONResponse({"status": "error"}, told["status"], headers=headers)
            attempt = str(uuid.uuid4())
            vendor.kind("payloads")[attempt] = {"hook_id": hook_id, "payload": payload}
        return JSONResponse({"attempt": attempt, "id": attempt, "request_id": attempt, "status": "success"})

    @router.post("/_sandbox/hooks/{hook_id}/gone")
    async def make_gone(hook_id: str) -> dict[str, str]:
        """Sandbox control, not Zapier's: the hook answers 410 from now on (its Zap was turned off)."""
        with state.lock:
            state.vendor(VENDOR).kind("gone")[hook_id] = {"hook_id": hook_id}
        return {"status": "gone", "hook_id": hook_id}

    @router.post("/_sandbox/hooks/{hook_id}/answer")
    async def make_answer(hook_id: str, told: HookAnswer) -> dict[str, Any]:
        """Sandbox control, not Zapier's: the hook answers this status (and Location) from now on; a 2xx
        makes it a catch hook again (success, payload kept)."""
        with state.lock:
            answers = state.vendor(VENDOR).kind("answers")
            if told.status < 300:
                answers.pop(hook_id, None)
            else:
                answers[hook_id] = told.model_dump()
        return {"status": told.status, "hook_id": hook_id}

    return router


def conformance_setup(client: Any) -> None:
    """The conformance suite's set-up (tests/test_conformance.py): a hook of this stand-in subscribed to
    every event type, as a Zap's owner would subscribe it, so that a push has somewhere to go."""
    from ennu.events import EVENT_TYPES
    from ennu.zapier_subscriptions import ZapierSubscriptions

    subscriptions = ZapierSubscriptions()
    for event_type in EVENT_TYPES:
        subscriptions.add(event_type, f"{client.base_url}/zapier/hooks/conformance")
