"""`/zapier`: REST-hook subscribe and unsubscribe for Zaps, and the sample a Zap shows while it is set up."""

from __future__ import annotations

import hmac
import re
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Response, Security, status
from fastapi import Path as PathParam
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field

from connectors.zapier.connector import hook_payload
from ennu.events import EVENT_TYPES
from ennu.secrets import read_secret
from ennu.settings import get_settings
from ennu.zapier_subscriptions import MAX_TARGET_URL, ZapierSubscriptions
from intake.errors import error_responses, require_json_body
from intake.openapi import allowed_values
from mappings import apply_mapping, load_all_mappings

SANDBOX_HOOK = re.compile(r"^/zapier/hooks/[A-Za-z0-9_-]+/?$")
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
}
SAMPLE_SCORE = 7.0  # any assessment.scores.<category>


zapier_token = APIKeyHeader(name="X-Zapier-Token", auto_error=False, description="the Zapier app's token")


def require_zapier(x_zapier_token: str | None = Security(zapier_token)) -> None:
    """The Zapier app's shared token in `X-Zapier-Token`, compared in constant time with ZAPIER_TOKEN."""
    expected = read_secret("ZAPIER_TOKEN")
    given = (x_zapier_token or "").encode()
    if expected is None or not hmac.compare_digest(expected.get_secret_value().encode(), given):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid X-Zapier-Token")


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
        max_length=MAX_TARGET_URL,
        description="the Zap's REST hook (https on a Zapier hook host)",
        examples=["https://hooks.zapier.com/hooks/standard/1/abc/"],
    )
    event: str = Field(min_length=1, max_length=60, json_schema_extra=allowed_values(EVENT_TYPES))


class SubscribeOut(BaseModel):
    id: str


def allowed_target(url: str) -> bool:
    """Only Zapier's hook hosts over https (ZAPIER_HOOK_HOSTS), or the sandbox in local mode only: no
    posting elsewhere."""
    parts = urlsplit(url)
    settings = get_settings()
    sandbox = urlsplit(settings.sandbox_url)
    if (
        settings.local
        and (parts.scheme, parts.netloc) == (sandbox.scheme, sandbox.netloc)
        and SANDBOX_HOOK.match(parts.path)
    ):
        return not parts.query and not parts.fragment
    hosts = {h.strip().lower() for h in get_settings().zapier_hook_hosts.split(",") if h.strip()}
    return parts.scheme == "https" and (parts.hostname or "").lower() in hosts and not parts.username


def subscriptions() -> ZapierSubscriptions:
    return ZapierSubscriptions(get_settings().database_url)


@router.post(
    "/subscribe",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscribeOut,
    dependencies=[Depends(require_json_body)],
    responses=error_responses(
        400, 413, 415, 422, e422="Unknown event type, or target_url is not a Zapier hook URL."
    ),
)
def subscribe(body: SubscribeIn) -> SubscribeOut:
    """Zapier turns a Zap on: remember its hook for the event type."""
    if body.event not in EVENT_TYPES:
        raise HTTPException(422, "unknown event type")
    if not allowed_target(body.target_url):
        raise HTTPException(422, "target_url is not a Zapier hook URL")
    return SubscribeOut(id=subscriptions().add(body.event, body.target_url))


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


@router.get(
    "/sample/{event_type}",
    responses=error_responses(404, 422, e404="No Zapier mapping for this event type."),
)
def sample(
    event_type: Annotated[str, PathParam(max_length=60, json_schema_extra=allowed_values(EVENT_TYPES))],
) -> list[dict[str, Any]]:
    """The perform-list sample: one synthetic payload, mapped exactly as deliveries are."""
    mapping = load_all_mappings(get_settings().mappings_dir).get((event_type, "zapier"))
    if mapping is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no zapier mapping for this event type")
    columns = mapping.source_columns | {f"{mapping.record}.id", "event.id", "user.id"}
    source = pd.DataFrame(
        [{c: SAMPLE_SOURCE.get(c, SAMPLE_SCORE if ".scores." in c else None) for c in sorted(columns)}]
    )
    row = apply_mapping(mapping, source).iloc[0]
    fields = {name: _plain(row[name]) for name in mapping.fields}
    return [hook_payload(fields)]


def _plain(value: Any) -> Any:
    """numpy and pandas scalars as JSON values."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value
