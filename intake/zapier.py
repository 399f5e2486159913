"""`/zapier`: REST-hook subscribe and unsubscribe for Zaps, and the sample a Zap shows while it is set up."""

from __future__ import annotations

import hmac
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Request, Response, Security, status
from fastapi import Path as PathParam
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field

import mappings
from connectors.zapier.connector import hook_payload
from connectors.zapier.triggers import triggers
from ennu.secrets import read_secret
from ennu.settings import get_settings
from ennu.zapier_subscriptions import MAX_TARGET_URL, TargetRefused, ZapierSubscriptions, normalise_target
from intake.auth import refuse_credentials
from intake.errors import error_responses, require_json_body
from intake.openapi import allowed_values
from mappings import apply_mapping, load_all_mappings
from tasks.extract import RESOURCE_MODELS

# A synthetic person and records: what a Zap shows while it is being set up (never real data).
SAMPLE_SOURCE: dict[str, Any] = {
    "event.id": "evt-sample-0001",
    "event.occurred_at": datetime(2026, 1, 15, 9, 30, tzinfo=UTC),
    "event.subject": 1,
    "event.resource": "1",
    "user.id": 1,
    "user.first_name": "Jane",
    "user.last_name": "Sample",
    "user.email": "jane.sample@example.com",
    "user.phone": "+15555550100",
    "user.date_of_birth": date(1985, 4, 12),
    "user.sex": "female",
    "user.timezone": "America/New_York",
    "user.created_at": datetime(2026, 1, 2, 8, 0, tzinfo=UTC),
    "assessment.id": 1,
    "assessment.type": "sleep",
    "assessment.status": "completed",
    "assessment.started_at": datetime(2026, 1, 15, 9, 10, tzinfo=UTC),
    "assessment.completed_at": datetime(2026, 1, 15, 9, 30, tzinfo=UTC),
    "assessment.overall_score": 7.4,
    "biomarker.id": 1,
    "biomarker.name": "glucose",
    "biomarker.loinc_code": "2345-7",
    "biomarker.value": 92.0,
    "biomarker.unit": "mg/dL",
    "biomarker.observed_at": datetime(2026, 1, 10, 7, 45, tzinfo=UTC),
    "health_goal.id": 1,
    "health_goal.kind": "improve_sleep",
    "health_goal.target": "Sleep 8 hours a night by March",
    "health_goal.status": "active",
    "health_goal.created_at": datetime(2026, 1, 15, 9, 35, tzinfo=UTC),
    "health_goal.due_date": date(2026, 3, 31),
    "health_goal.completed_at": datetime(2026, 3, 20, 18, 0, tzinfo=UTC),
    "health_goal.progress_percent": 40,
    "appointment.starts_at": datetime(2026, 1, 22, 15, 0, tzinfo=UTC),
}
SAMPLE_SCORE = 7.0  # any assessment.scores.<category>
NOT_A_TRIGGER = "not a Zapier trigger"
# For the OpenAPI document only (the handlers read the configured ENNU_MAPPINGS_DIR): the shipped mappings.
DOCUMENTED_TRIGGERS = triggers(Path(mappings.__file__).parent)


zapier_token = APIKeyHeader(name="X-Zapier-Token", auto_error=False, description="the Zapier app's token")


def require_zapier(request: Request, x_zapier_token: str | None = Security(zapier_token)) -> None:
    """The Zapier app's shared token in `X-Zapier-Token`, compared in constant time with ZAPIER_TOKEN;
    wrong tokens are throttled per client like the bearer tokens' (intake/auth.py)."""
    expected = read_secret("ZAPIER_TOKEN")
    given = (x_zapier_token or "").encode()
    if expected is None or not hmac.compare_digest(expected.get_secret_value().encode(), given):
        raise refuse_credentials(request, x_zapier_token is not None, "missing or invalid X-Zapier-Token", {})


router = APIRouter(
    prefix="/zapier",
    tags=["zapier"],
    dependencies=[Depends(require_zapier)],
    responses=error_responses(401, e401="Missing or invalid X-Zapier-Token."),
)


class SubscribeIn(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    target_url: str = Field(
        min_length=8,
        max_length=MAX_TARGET_URL + 64,  # surrounding whitespace is dropped before the URL is checked
        description="the Zap's REST hook (https on a Zapier hook host)",
        examples=["https://hooks.zapier.com/hooks/standard/1/abc/"],
    )
    event: str = Field(
        min_length=1,
        max_length=60,
        description="a trigger: a host event type with a Zapier mapping (GET /zapier/triggers)",
        json_schema_extra=allowed_values(DOCUMENTED_TRIGGERS),
    )


class SubscribeOut(BaseModel):
    id: str


def subscriptions() -> ZapierSubscriptions:
    return ZapierSubscriptions(get_settings().database_url)


@router.post(
    "/subscribe",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscribeOut,
    dependencies=[Depends(require_json_body)],
    responses=error_responses(
        400,
        413,
        415,
        422,
        e422="The event is not a trigger (an unknown type, or one that is deliberately none: the reason "
        "names the triggers, never what was sent), or target_url is not a Zapier hook URL (https on a "
        "ZAPIER_HOOK_HOSTS host, default port, no user info or fragment); the reason never repeats the URL.",
    ),
)
def subscribe(body: SubscribeIn) -> SubscribeOut:
    """Zapier turns a Zap on: remember its hook (normalised, checked, kept encrypted) for the event type."""
    known = triggers(get_settings().mappings_dir)
    if body.event not in known:
        raise HTTPException(422, f"{NOT_A_TRIGGER}; the triggers are {', '.join(known)}")
    try:
        target = normalise_target(body.target_url)
    except TargetRefused as refused:
        raise HTTPException(422, refused.reason) from None
    return SubscribeOut(id=subscriptions().add(body.event, target))


@router.delete(
    "/subscribe/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(404, 422, e404="No such subscription."),
)
def unsubscribe(subscription_id: str) -> Response:
    """Zapier turns a Zap off."""
    if not subscriptions().remove(subscription_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such subscription")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/triggers")
def list_triggers() -> list[str]:
    """The event types a Zap may subscribe to (each has a sample at /zapier/sample/{event_type})."""
    return triggers(get_settings().mappings_dir)


@router.get(
    "/sample/{event_type}",
    responses=error_responses(404, 422, e404="Not a Zapier trigger."),
)
def sample(
    event_type: Annotated[
        str,
        PathParam(max_length=60, json_schema_extra=allowed_values(DOCUMENTED_TRIGGERS)),
    ],
) -> list[dict[str, Any]]:
    """The perform-list sample: one synthetic payload, mapped exactly as deliveries are."""
    mappings_dir = get_settings().mappings_dir
    mapping = load_all_mappings(mappings_dir).get((event_type, "zapier"))
    if mapping is None or event_type not in triggers(mappings_dir):
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_A_TRIGGER)
    columns = mapping.source_columns | {f"{mapping.record}.id", "event.id", "user.id"}
    source = pd.DataFrame([{c: sample_value(c) for c in sorted(columns)}])
    row = apply_mapping(mapping, source).iloc[0]
    fields = {name: _plain(row[name]) for name in mapping.fields}
    return [hook_payload(fields)]


def sample_value(column: str) -> Any:
    """The synthetic value of a source column: SAMPLE_SOURCE's, else one of the host column's type (so a
    new event type's resource has a sample without an entry here)."""
    if column in SAMPLE_SOURCE:
        return SAMPLE_SOURCE[column]
    if ".scores." in column:
        return SAMPLE_SCORE
    kind, _, name = column.partition(".")
    model = RESOURCE_MODELS.get(kind)
    table_column = model.__table__.columns.get(name) if model is not None else None
    if table_column is None:
        return None
    try:
        python_type = table_column.type.python_type
    except NotImplementedError:
        return None
    typed: dict[type, Any] = {
        bool: False,
        int: 1,
        float: 1.0,
        str: f"sample {name}".replace("_", " "),
        datetime: SAMPLE_SOURCE["event.occurred_at"],
        date: SAMPLE_SOURCE["event.occurred_at"].date(),
    }
    return typed.get(python_type)


def _plain(value: Any) -> Any:
    """numpy and pandas scalars as JSON values."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value
