"""FastAPI app: `POST /events` writes the outbox and emits the Prefect event; `GET /health`."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ennu.events import HostEvent
from ennu.outbox import ingest
from intake import integrations, webhooks, zapier
from intake.auth import require_host_app
from intake.limits import BodySizeLimit

MAX_BODY_BYTES = 64 * 1024


class Accepted(BaseModel):
    event_id: str
    status: str
    duplicate: bool


def _reasons(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Where and why, never the submitted value."""
    return [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")} for e in exc.errors()]


def create_app() -> FastAPI:
    app = FastAPI(title="ENNU Integrations intake", version="0.1.0")
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.include_router(integrations.router)
    app.include_router(webhooks.router)
    app.include_router(zapier.router)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _reasons(exc)})

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/events",
        status_code=202,
        response_model=Accepted,
        dependencies=[Depends(require_host_app)],
        responses={
            200: {"model": Accepted, "description": "Duplicate event id: the first result."},
            401: {"description": "Missing or wrong bearer token."},
            413: {"description": "Body larger than the limit."},
            422: {"description": "Malformed event; the reasons never echo submitted values."},
        },
    )
    def post_event(event: HostEvent) -> Any:
        """Accept one host-app event: durable in the outbox before the answer, then announced to Prefect."""
        result = ingest(event)
        body = Accepted(event_id=result.event_id, status=result.status, duplicate=not result.created)
        if not result.created:
            return JSONResponse(status_code=200, content=body.model_dump())
        return body

    return app


app = create_app()
