"""Slack incoming-webhook stand-in: `ok` in plain text, Slack's plain-text error codes, 1 message a second."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from sandbox.config import SandboxConfig
from sandbox.state import SandboxState

ARCHIVED = "archived"  # a hook path ending in this answers 410 channel_is_archived


class Unauthorised(Exception):
    """Webhook URLs carry their own secret; there is no separate auth to fail."""


def unauthorised_response() -> PlainTextResponse:
    return PlainTextResponse("invalid_token", status_code=403)


def error_body(status: int, retry_after: int | None) -> tuple[dict[str, Any], str, dict[str, str]]:
    return (
        {"ok": False, "error": "rate_limited" if status == 429 else "internal_error"},
        "application/json",
        {},
    )


def build_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    router = APIRouter()

    @router.post("/services/{team}/{bot}/{key}")
    async def incoming_webhook(team: str, bot: str, key: str, request: Request) -> PlainTextResponse:
        if key.endswith(ARCHIVED):
            return PlainTextResponse("channel_is_archived", status_code=410)
        try:
            body = await request.json()
        except ValueError:
            return PlainTextResponse("invalid_payload", status_code=400)
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return PlainTextResponse("no_text", status_code=400)
        blocks = body.get("blocks") or []
        if not isinstance(blocks, list) or any(not isinstance(b, dict) or "type" not in b for b in blocks):
            return PlainTextResponse("invalid_blocks", status_code=400)
        with state.lock:
            store = state.vendor("slack").kind("messages")
            store[str(len(store) + 1)] = {"hook": f"{team}/{bot}", "text": body.get("text"), "blocks": blocks}
        return PlainTextResponse("ok")

    return router
