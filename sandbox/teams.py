"""Microsoft Teams Workflows webhook stand-in: Adaptive Cards answered 202, legacy MessageCards 200."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.config import SandboxConfig
from sandbox.state import SandboxState

# Where the stand-in is mounted: the vendor's real paths follow (sandbox.app discovers it by this).
MOUNT = "/teams"

CARD = "application/vnd.microsoft.card.adaptive"
# Adaptive Card schema versions Teams renders (1.5 is the newest Teams supports).
CARD_VERSIONS = frozenset({"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"})


class Unauthorised(Exception):
    """Workflow URLs carry their own signature; there is no separate auth to fail."""


def unauthorised_response() -> JSONResponse:
    return JSONResponse({"error": {"code": "DirectApiAuthorizationRequired"}}, status_code=401)


def error_body(status: int, retry_after: int | None) -> tuple[dict[str, Any], str, dict[str, str]]:
    return (
        {
            "error": {
                "code": "TooManyRequests" if status == 429 else "ServiceUnavailable",
                "message": "try again later",
            }
        },
        "application/json",
        {},
    )


def problem(message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "InvalidRequestContent", "message": message}}, status_code=400)


def build_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    router = APIRouter()

    @router.post("/workflows/{flow}/triggers/manual/paths/invoke")
    async def workflow(flow: str, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return problem("body is not JSON")
        if not isinstance(body, dict):
            return problem("body is not an object")
        if body.get("@type") == "MessageCard":
            if not (body.get("summary") or body.get("text")):
                return problem("a MessageCard needs a summary or a text")
            kind = "messagecard"
        else:
            attachments = body.get("attachments")
            if body.get("type") != "message" or not isinstance(attachments, list) or not attachments:
                return problem("expected a message with attachments")
            for attachment in attachments:
                content = attachment.get("content") if isinstance(attachment, dict) else None
                if attachment.get("contentType") != CARD or not isinstance(content, dict):
                    return problem("attachments must be Adaptive Cards")
                if (
                    content.get("type") != "AdaptiveCard"
                    or content.get("version") not in CARD_VERSIONS
                    or not isinstance(content.get("body"), list)
                ):
                    return problem("an Adaptive Card needs type, a version from 1.0 to 1.5 and body")
            kind = "adaptivecard"
        with state.lock:
            store = state.vendor("teams").kind("messages")
            store[str(len(store) + 1)] = {"flow": flow, "kind": kind, "body": body}
        return Response(status_code=202 if kind == "adaptivecard" else 200)

    return router
