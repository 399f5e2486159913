"""The intake's audit trail: every authenticated request of the viewer and operator routers is recorded
(ennu/audit.py) before its handler runs and closed with its status; `GET /integrations/audit` reads it.

One router-level dependency (`audit_action`) opens the entry once the token is known, named from the route
("sync", "test", "read:status", ...), its target the ids of the path, query and body (integration names and
event types only if known, numbers only as numbers: never a client's free text); the `AuditTrail`
middleware closes it with the answer's status. Fail closed: an entry that cannot be opened stops the
request before the handler (503), one that cannot be closed replaces the answer with a 503. A request
without a valid token (401) is not an action and is not recorded.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from connectors.registry import CONNECTORS
from ennu import audit
from ennu.events import EVENT_TYPES
from ennu.secrets import SecretUnavailable
from intake.auth import Principal, authenticated, configured_principals, require_operator
from intake.errors import ErrorBody, error_responses

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ENTRY = "audit_entry"  # the open entry's id, in the request's state
UNAVAILABLE = "the audit log is unavailable; nothing was done"
UNAVAILABLE_BODY = json.dumps(ErrorBody(detail=UNAVAILABLE).model_dump()).encode()
# Handler names that do not say the action by themselves; any other is "<name>" (POST) or "read:<name>".
ACTION_NAMES = {
    "test_connection": "test",
    "data": "read:sync-log",
    "erasure": "read:erasure-report",
    "chart": "read:chart",
    "audit_log": "read:audit",
}
ID = re.compile(r"^\d{1,10}$")
RECORD_KEY = re.compile(r"^[a-z_]{1,40}:\d{1,10}$")
STATUSES = frozenset({"failed", "rejected"})
LISTED_IDS = 20  # more user ids than this are counted, not listed


def action_of(request: Request) -> str:
    route = request.scope.get("route")
    name = str(getattr(route, "name", "") or "unknown")
    if name in ACTION_NAMES:
        return ACTION_NAMES[name]
    return f"read:{name}" if request.method in ("GET", "HEAD") else name


def _known(value: Any, allowed: Any) -> str:
    return value if isinstance(value, str) and value in allowed else "unknown"


def _id(value: Any) -> str:
    text = str(value)
    return text if not isinstance(value, bool) and ID.match(text) else "invalid"


def _user_ids(values: list[Any]) -> list[str]:
    shown = [_id(v) for v in values[:LISTED_IDS]]
    return [*shown, f"+{len(values) - LISTED_IDS}"] if len(values) > LISTED_IDS else shown


def target_of(path: dict[str, Any], query: dict[str, Any], body: Any) -> str | None:
    """The ids an action was about; every value checked against what it may be, or replaced by a word."""
    ids: dict[str, Any] = {}
    if "integration" in path:
        ids["integration"] = _known(path["integration"], CONNECTORS)
    if "person" in path:
        ids["person"] = _id(path["person"])
    if query.get("user_id") is not None:
        ids["user_id"] = _id(query["user_id"])
    if query.get("record_key") is not None:
        key = str(query["record_key"])
        ids["record_key"] = key if RECORD_KEY.match(key) else "invalid"
    if isinstance(body, dict):
        if "event_type" in body:
            ids["event_type"] = _known(body["event_type"], EVENT_TYPES)
        if body.get("integration") is not None:
            ids["integration"] = _known(body["integration"], CONNECTORS)
        if isinstance(body.get("integrations"), list):
            ids["integrations"] = [_known(v, CONNECTORS) for v in body["integrations"][: len(CONNECTORS)]]
        if isinstance(body.get("statuses"), list):
            ids["statuses"] = [_known(v, STATUSES) for v in body["statuses"][:2]]
        if isinstance(body.get("user_ids"), list):
            ids["user_ids"] = _user_ids(body["user_ids"])
        if isinstance(body.get("event_ids"), list):
            ids["event_ids"] = f"{len(body['event_ids'])} ids"
    return audit.describe(**ids)


async def _json_body(request: Request) -> Any:
    if request.method in ("GET", "HEAD", "DELETE"):
        return None
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return None


def open_entry(request: Request, principal: Principal, *, action: str, target: str | None) -> None:
    """Open the request's entry (once); 503 if it cannot be written, so the handler never runs. Blocking: for
    sync handlers (FastAPI runs them in its thread pool)."""
    state = request.scope.setdefault("state", {})
    if ENTRY in state:
        return
    try:
        record_token_rotation_once(request.app.state)
        state[ENTRY] = audit.open_entry(
            actor=principal.label, role=principal.role.value, action=action, target=target
        )
    except audit.AuditUnavailable:
        raise HTTPException(503, UNAVAILABLE) from None


async def open_for(
    request: Request, principal: Principal, *, action: str | None = None, target: str | None = None
) -> None:
    """`open_entry` from async code, its action named from the route and its target read from the request
    unless given."""
    if ENTRY in request.scope.setdefault("state", {}):
        return
    if target is None:
        target = target_of(dict(request.path_params), dict(request.query_params), await _json_body(request))
    await run_in_threadpool(
        open_entry, request, principal, action=action or action_of(request), target=target
    )


async def audit_action(request: Request, principal: Principal = Depends(authenticated)) -> None:  # noqa: B008
    """The router-level dependency of the viewer and operator routers (runs before the role check, so a
    refused 403 is recorded too)."""
    await open_for(request, principal)


# Every audited route may answer this when the audit log cannot be written.
AUDIT_RESPONSES = error_responses(503, e503="The audit log (or a service the request needs) is unavailable.")
# The router-level dependencies of every audited router.
AUDITED = [Depends(audit_action)]


class AuditTrail:
    """ASGI middleware: closes the request's entry with the answer's status before the answer leaves."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        replaced = False

        async def closing_send(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the handler's answer is withheld: the 503 has gone
            if message["type"] == "http.response.start" and ENTRY in state:
                entry = state.pop(ENTRY)
                try:
                    await run_in_threadpool(audit.close_entry, entry, int(message["status"]))
                except audit.AuditUnavailable:
                    replaced = True
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 503,
                            "headers": [
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(UNAVAILABLE_BODY)).encode()),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": UNAVAILABLE_BODY})
                    return
            await send(message)

        try:
            await self.app(scope, receive, closing_send)
        except BaseException:
            if ENTRY in state:  # raised before answering: the server answers 500
                # If even that fails the entry stays open (no outcome); the original error is what is logged.
                with contextlib.suppress(audit.AuditUnavailable):
                    await run_in_threadpool(audit.close_entry, state.pop(ENTRY), 500)
            raise


ROTATION_PENDING = "audit_rotation_pending"
_rotation_lock = threading.Lock()


def record_token_rotation_once(app_state: Any) -> None:
    """The token labels added and removed since the last start, recorded once per app: at its start, or,
    if the audit log was unavailable then, before its first audited request (which fails until it is).
    Raises AuditUnavailable, also when a token's Secret block cannot be read yet (the Prefect API still
    starting, or down): the intake starts all the same and records the rotation once it can."""
    if not getattr(app_state, ROTATION_PENDING, True):
        return
    with _rotation_lock:
        if getattr(app_state, ROTATION_PENDING, True):
            try:
                principals = configured_principals()
            except SecretUnavailable:
                raise audit.AuditUnavailable("token labels unreadable (the secret store)") from None
            labels = {role.value: {label for label, _ in entries} for role, entries in principals.items()}
            audit.record_token_labels(labels)
            setattr(app_state, ROTATION_PENDING, False)


# --------------------------------------------------------------------------- GET /integrations/audit

router = APIRouter(prefix="/integrations", tags=["audit"], dependencies=AUDITED, responses=AUDIT_RESPONSES)


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="the token's label (ENNU_*_TOKENS `label=token`), or who started a run")
    role: str = Field(description="the token's role (a run started in Prefect: its creator's kind)")
    action: str = Field(description="e.g. sync, test, replay, read:status, erasure-request, token-added")
    target: str | None = Field(description="ids and integration names the action was about, never a value")
    outcome: int | None = Field(description="the answer's status code; none while the action runs")
    source: str = Field(description="api (the intake), prefect (a deployment run), intake (its start-up)")


class AuditPage(BaseModel):
    total: int
    page: int
    page_size: int
    rows: list[AuditEntryOut]


@router.get(
    "/audit",
    response_model=AuditPage,
    dependencies=[Depends(require_operator)],
    responses=error_responses(401, 403, 422),
)
def audit_log(
    since: datetime | None = Query(default=None, description="only entries at or after this time"),  # noqa: B008
    action: str | None = Query(default=None, max_length=60, pattern=r"^[a-z:_-]+$"),
    actor: str | None = Query(default=None, max_length=80, pattern=r"^[A-Za-z0-9_.@ :-]+$"),
    page: int = Query(default=1, ge=1, le=100_000),
    page_size: int = Query(default=50, ge=1, le=500),
) -> AuditPage:
    """Who did what, when, to what, and how it ended, newest first (operators only; this read is recorded
    too). Filters: since, action, actor."""
    total, rows = audit.entries(since=since, action=action, actor=actor, page=page, page_size=page_size)
    return AuditPage(
        total=total,
        page=page,
        page_size=page_size,
        rows=[AuditEntryOut.model_validate(r, from_attributes=True) for r in rows],
    )
