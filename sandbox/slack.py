"""Slack incoming-webhook stand-in: `ok` in plain text, Slack's plain-text error codes, 1 message a second."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from sandbox.config import SandboxConfig
from sandbox.state import SandboxState

# Where the stand-in is mounted: the vendor's real paths follow (sandbox.app discovers it by this).
MOUNT = "/slack"

ARCHIVED = "archived"  # a hook path ending in this answers 410 channel_is_archived
# Hooks whose key ends in one of these refuse every message, as Slack does for such channels.
REFUSING_HOOKS = {
    ARCHIVED: (410, "channel_is_archived"),
    "prohibited": (403, "action_prohibited"),
    "general": (403, "posting_to_general_channel_denied"),
    "notfound": (404, "channel_not_found"),
    "revoked": (404, "no_service"),
}
MAX_ATTACHMENTS = 100  # Slack: too_many_attachments above this
MAX_BLOCKS = 50  # Slack: a message has at most 50 blocks


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
        for suffix, (status, code) in REFUSING_HOOKS.items():
            if key.endswith(suffix):
                return PlainTextResponse(code, status_code=status)
        try:
            body = await request.json()
        except ValueError:
            return PlainTextResponse("invalid_payload", status_code=400)
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return PlainTextResponse("no_text", status_code=400)
        attachments = body.get("attachments") or []
        if isinstance(attachments, list) and len(attachments) > MAX_ATTACHMENTS:
            return PlainTextResponse("too_many_attachments", status_code=400)
        blocks = body.get("blocks") or []
        if (
            not isinstance(blocks, list)
            or len(blocks) > MAX_BLOCKS
            or any(not isinstance(b, dict) or "type" not in b for b in blocks)
        ):
            return PlainTextResponse("invalid_blocks", status_code=400)
        with state.lock:
            store = state.vendor("slack").kind("messages")
            store[str(len(store) + 1)] = {"hook": f"{team}/{bot}", "text": body.get("text"), "blocks": blocks}
        return PlainTextResponse("ok")

    return router
