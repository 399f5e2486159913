"""`/integrations`: status, connection tests, sync runs and what was sent, for viewers and operators."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from connectors.endpoint import NotConfigured
from connectors.http import ConnectorError
from connectors.registry import CONNECTORS, build_connector
from ennu import circuit, deliveries, receipts
from ennu.audit import INTAKE_RUN_TAG
from ennu.db import session_scope
from ennu.events import EVENT_TYPES
from ennu.models import SyncLog
from ennu.secrets import SecretUnavailable
from ennu.settings import get_settings
from intake.audit import AUDIT_RESPONSES, AUDITED
from intake.auth import require_operator, require_viewer
from intake.errors import error_responses, require_json_body
from intake.openapi import allowed_values
from mappings.loader import load_all_mappings
from mappings.routing import routing_table
from tasks.admit import kept_records
from tasks.status import IntegrationStatus, all_statuses, health_problems

router = APIRouter(
    prefix="/integrations", tags=["integrations"], dependencies=AUDITED, responses=AUDIT_RESPONSES
)
KNOWN = sorted(CONNECTORS)
UNKNOWN_INTEGRATION = "Unknown integration."
# bulk-sync refuses the erasure event: it carries no record to send.
SYNCABLE_EVENT_TYPES = sorted(t for t in EVENT_TYPES if t != "user.deletion_requested")
BULK_SYNC_DEPLOYMENT = "bulk-sync/on-demand"
# Ids are INTEGER columns: anything larger cannot match and would make the database driver raise.
ID_MAX = 2_147_483_647
# The path parameter names an integration; its known values are listed (an unknown one is 404).
IntegrationPath = Annotated[
    str, Path(max_length=60, json_schema_extra=allowed_values(KNOWN), description="an integration's name")
]


class ConnectionTestOut(BaseModel):
    integration: str
    ok: bool
    detail: str
    latency_ms: int | None


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    event_type: str = Field(
        default="assessment.completed",
        description="which kind of record to send",
        json_schema_extra=allowed_values(SYNCABLE_EVENT_TYPES),
    )
    integrations: list[Annotated[str, Field(json_schema_extra=allowed_values(KNOWN))]] | None = Field(
        default=None,
        max_length=len(KNOWN),
        description=(
            "only these destinations (default: every routed one that keeps records; SMS, care-team notices,"
            " Zaps, analytics and journeys only when named)"
        ),
    )
    user_ids: list[Annotated[int, Field(gt=0, le=ID_MAX)]] | None = Field(
        default=None, max_length=10_000, description="only these people"
    )


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    integration: str | None = Field(
        default=None, description="only this destination", json_schema_extra=allowed_values(KNOWN)
    )
    statuses: list[Literal["failed", "rejected"]] = Field(
        default=["failed"], min_length=1, max_length=2, description="which dead letters"
    )
    event_ids: (
        list[Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]] | None
    ) = Field(default=None, max_length=10_000, description="only these events")


class ReplayStarted(BaseModel):
    deliveries: int
    receipts: int


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    problems: list[str] = Field(description="fixed sentences naming integrations, never data")


class SyncStarted(BaseModel):
    flow_run_id: str
    ui_url: str


class SyncLogRow(BaseModel):
    id: int
    event_id: str | None
    object: str
    record_key: str
    user_id: int | None
    status: str
    remote_id: str | None
    error: str | None
    attempt: int
    flow_run_id: str | None
    created_at: datetime


class SyncLogPage(BaseModel):
    integration: str
    total: int
    page: int
    page_size: int
    rows: list[SyncLogRow]


def known(integration: str) -> str:
    if integration not in CONNECTORS:
        raise HTTPException(404, f"unknown integration; known: {', '.join(KNOWN)}")
    return integration


@router.get(
    "/status",
    response_model=list[IntegrationStatus],
    responses=error_responses(401, 403),
    dependencies=[Depends(require_viewer)],
)
def status() -> list[IntegrationStatus]:
    """Per integration: enabled, last success and error, circuit state, pending events, 24 h counts,
    deferred records by reason, and warnings (the clinical path with no provider channel)."""
    return all_statuses()


@router.get(
    "/health",
    response_model=HealthOut,
    responses=error_responses(401, 403),
    dependencies=[Depends(require_viewer)],
)
def health() -> HealthOut:
    """What needs an operator: a clinical path that cannot reach a care team, open circuits."""
    problems = health_problems()
    return HealthOut(status="degraded" if problems else "ok", problems=problems)


@router.post(
    "/test/{integration}",
    response_model=ConnectionTestOut,
    dependencies=[Depends(require_operator)],
    responses=error_responses(401, 403, 404, 422, e404=UNKNOWN_INTEGRATION),
)
def test_connection(integration: IntegrationPath) -> ConnectionTestOut:
    """Run the integration's connection test now (a cheap authenticated read). An integration that
    cannot be built (production without credentials: "no credentials") answers ok false, with why."""
    started = time.monotonic()
    try:
        connector = build_connector(known(integration), rate_limited=False)
    except (NotConfigured, SecretUnavailable) as exc:
        return ConnectionTestOut(integration=integration, ok=False, detail=exc.reason, latency_ms=None)
    try:
        check = connector.test_connection()
    except ConnectorError as exc:
        circuit.record_failure(integration, exc.reason)
        return ConnectionTestOut(
            integration=integration,
            ok=False,
            detail=exc.reason,
            latency_ms=int((time.monotonic() - started) * 1000),
        )
    finally:
        connector.close()
    circuit.record_success(integration)
    return ConnectionTestOut(
        integration=integration, ok=check.ok, detail=check.detail, latency_ms=check.latency_ms
    )


@router.get(
    "/data/{integration}",
    response_model=SyncLogPage,
    dependencies=[Depends(require_viewer)],
    responses=error_responses(401, 403, 404, 422, e404=UNKNOWN_INTEGRATION),
)
def data(
    integration: IntegrationPath,
    user_id: int | None = Query(default=None, gt=0, le=ID_MAX),
    record_key: str | None = Query(default=None, max_length=120, pattern=r"^[a-z_]+:\d+$"),
    page: int = Query(default=1, ge=1, le=100_000),
    page_size: int = Query(default=50, ge=1, le=500),
) -> SyncLogPage:
    """What the hub sent and what came back, newest first, for a person or a record."""
    query = select(SyncLog).where(SyncLog.connector == known(integration))
    if user_id is not None:
        query = query.where(SyncLog.user_id == user_id)
    if record_key is not None:
        query = query.where(SyncLog.record_key == record_key)
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = session.execute(
            query.order_by(SyncLog.id.desc()).offset((page - 1) * page_size).limit(page_size)
        ).scalars()
        out = [SyncLogRow.model_validate(row, from_attributes=True) for row in rows]
    return SyncLogPage(integration=integration, total=total, page=page, page_size=page_size, rows=out)


@router.post(
    "/replay",
    response_model=ReplayStarted,
    dependencies=[Depends(require_operator), Depends(require_json_body)],
    responses=error_responses(
        400, 401, 403, 413, 415, 422, e422="Unknown field, state or integration; never echoing values."
    ),
)
def replay(request: ReplayRequest) -> ReplayStarted:
    """Offer dead letters again after a fix: matching deliveries are pending with attempts reset, and the
    delivery workers carry them within a second (failed webhook receipts too, unless events are named)."""
    if request.integration is not None and request.integration not in CONNECTORS:
        raise HTTPException(422, "unknown integration")
    reopened = deliveries.reopen(
        statuses=request.statuses, integration=request.integration, event_ids=request.event_ids
    )
    again = receipts.reopen_failed(request.integration) if request.event_ids is None else 0
    return ReplayStarted(deliveries=reopened, receipts=again)


@router.post(
    "/sync",
    response_model=SyncStarted,
    status_code=202,
    dependencies=[Depends(require_operator), Depends(require_json_body)],
    responses=error_responses(
        400,
        401,
        403,
        413,
        415,
        422,
        503,
        e422="Unknown field, event type or integration; the reasons never echo submitted values.",
        e503="The Prefect server is unreachable or the bulk-sync deployment is not deployed.",
    ),
)
def sync(request: SyncRequest) -> SyncStarted:
    """Start a bulk (or per-person) sync as a run of the `bulk-sync` deployment."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_UI_URL

    if request.event_type not in SYNCABLE_EVENT_TYPES:
        raise HTTPException(422, "unknown event type, or one bulk-sync cannot send")
    for name in request.integrations or []:
        if name not in CONNECTORS:
            raise HTTPException(422, "unknown integration")
    parameters = request.model_dump()
    if request.integrations is None:  # the run shows where it goes: the destinations that keep records
        mappings_dir = get_settings().mappings_dir
        table = routing_table(mappings_dir)
        parameters["integrations"] = kept_records(table, load_all_mappings(mappings_dir), request.event_type)
        if not parameters["integrations"]:
            raise HTTPException(
                422, "every destination of this event type announces something; name the integrations"
            )
    try:
        run: Any = run_deployment(
            BULK_SYNC_DEPLOYMENT, parameters=parameters, timeout=0, tags=[INTAKE_RUN_TAG]
        )
    except ObjectNotFound:
        raise HTTPException(503, f"the {BULK_SYNC_DEPLOYMENT} deployment is not deployed") from None
    except httpx.TransportError:
        raise HTTPException(503, "the Prefect server is unreachable") from None
    ui = PREFECT_UI_URL.value() or ""
    return SyncStarted(flow_run_id=str(run.id), ui_url=f"{ui}/runs/flow-run/{run.id}")
