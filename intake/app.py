"""FastAPI app: `POST /events` writes the outbox and emits the Prefect event; health, readiness, metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from connectors.registry import validate_settings
from connectors.settings import SettingsError
from ennu.audit import AuditUnavailable
from ennu.events import HostEvent
from ennu.settings import get_settings
from intake import audit, charts, erasures, integrations, metrics, webhooks, zapier
from intake.audit import AUDIT_RESPONSES, AuditTrail, open_entry, record_token_rotation_once
from intake.auth import Principal, authenticated, install_auth_throttle, require_host_app
from intake.errors import error_responses, install_error_handlers, require_json_body
from intake.limits import RequestLimits
from tasks.ingest import ingest
from tasks.readiness import run_checks

logger = logging.getLogger(__name__)
ERASURE_REQUEST = "user.deletion_requested"

MAX_BODY_BYTES = 64 * 1024
# What the host app sends; ids only, never a person's data (the flows read that from the host database).
EVENT_EXAMPLE: dict[str, Any] = {
    "id": "evt-2026-11-29-0001",
    "type": "assessment.completed",
    "occurred_at": "2026-11-29T10:00:00Z",
    "subject": 42,
    "resource": "1001",
    "payload": {},
}


class Readiness(BaseModel):
    status: Literal["ready", "unready"]
    failing: list[str] = Field(description="the names of the checks that failed")
    checks: dict[str, str] = Field(description="each check's fixed sentence; never a secret or a record")


class Accepted(BaseModel):
    event_id: str
    status: str
    duplicate: bool
    dropped_payload_keys: int = Field(
        default=0, description="payload keys no mapping reads: dropped, never stored (README: Payloads)"
    )


@asynccontextmanager
async def recording_token_rotation(app: FastAPI) -> AsyncIterator[None]:
    """At start-up, the token labels added and removed since the last start go to the audit log. If the
    audit log is unavailable (the hub database not migrated or down, or the tokens' Secret blocks not
    readable while the Prefect API starts), the intake still starts (events, liveness, readiness, webhooks)
    but every audited request answers 503 until the rotation is recorded."""
    try:
        record_token_rotation_once(app.state)
    except AuditUnavailable:
        logger.warning("audit log unavailable at start-up: audited requests answer 503 until it is back")
    yield


def create_app() -> FastAPI:
    """The intake's app; every connector's settings and, in production, the hub's required secrets
    (ENNU_INTAKE_TOKEN, ENNU_DATA_KEY, ...) are checked first, so that a bad or missing one stops the start,
    named (`connectors.settings.SettingsError`), instead of failing the first request that needs it."""
    validate_settings()
    # No trailing-slash redirect: Starlette builds its `Location` from the request's Host header.
    app = FastAPI(
        title="ENNU Integrations intake",
        version="0.1.0",
        redirect_slashes=False,
        lifespan=recording_token_rotation,
    )
    settings = get_settings()
    app.add_middleware(AuditTrail)
    app.add_middleware(
        RequestLimits,
        max_bytes=MAX_BODY_BYTES,
        read_timeout=settings.intake_body_timeout_seconds,
        max_header_bytes=settings.intake_max_header_bytes,
    )
    install_error_handlers(app)
    install_auth_throttle(app)
    app.include_router(integrations.router)
    app.include_router(erasures.router)
    app.include_router(webhooks.router)
    app.include_router(zapier.router)

    app.include_router(charts.router)
    app.include_router(audit.router)
    app.include_router(metrics.router)

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers (nothing else is checked; see /health/ready)."""
        return {"status": "ok"}

    @app.get(
        "/health/ready",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A check failed; `failing` names it."}},
    )
    def ready() -> JSONResponse:
        """Readiness: hub database, Prefect API, a live delivery worker, the oldest due delivery's wait,
        unprocessed webhook receipts, a provider channel for critical results. Names and fixed sentences."""
        checks = run_checks()
        body = Readiness(
            status="ready" if all(c.ok for c in checks) else "unready",
            failing=[c.name for c in checks if not c.ok],
            checks={c.name: c.detail for c in checks},
        )
        return JSONResponse(body.model_dump(), status_code=200 if body.status == "ready" else 503)

    @app.post(
        "/events",
        status_code=202,
        response_model=Accepted,
        dependencies=[Depends(require_host_app), Depends(require_json_body)],
        responses={
            200: {"model": Accepted, "description": "Duplicate event id: the first result."},
            **AUDIT_RESPONSES,
            **error_responses(
                400,
                401,
                403,
                408,
                413,
                415,
                422,
                e422="Malformed event or unknown field; the reasons never echo submitted values.",
            ),
        },
    )
    def post_event(
        event: Annotated[HostEvent, Body(openapi_examples={"assessment": {"value": EVENT_EXAMPLE}})],
        request: Request,
        principal: Annotated[Principal, Depends(authenticated)],
    ) -> Any:
        """Accept one host-app event: durable in the outbox before the answer, then announced to Prefect."""
        if event.type == ERASURE_REQUEST:  # an erasure request is an audited action; other events are not
            open_entry(request, principal, action="erasure-request", target=f"person={event.subject}")
        result = ingest(event)
        body = Accepted(
            event_id=result.event_id,
            status=result.status,
            duplicate=not result.created,
            dropped_payload_keys=result.dropped_payload_keys,
        )
        if not result.created:
            return JSONResponse(status_code=200, content=body.model_dump())
        return body

    return app


try:
    app = create_app()
except SettingsError as exc:  # `uvicorn intake.app:app` stops here with the variables named, no traceback
    raise SystemExit(f"intake: {exc}") from None
