"""The host app's event: its pydantic model and the one registry of event types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


@dataclass(frozen=True)
class EventType:
    """One kind of host-app event and the flow that carries it."""

    name: str  # e.g. "assessment.completed"
    flow_name: str  # e.g. "assessment-completed"
    # what `resource` points at: "assessment", "biomarker", "health_goal", "appointment"
    resource_kind: str | None
    # "host": sent by the host app to POST /events; "hub": raised by the hub itself (from a vendor webhook)
    origin: str = "host"

    @property
    def prefect_event(self) -> str:
        return f"ennu.{self.name}"


EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType("user.registered", "user-registered", None),
        EventType("user.login", "user-login", None),
        EventType("assessment.completed", "assessment-completed", "assessment"),
        EventType("biomarker.updated", "biomarker-updated", "biomarker"),
        EventType("health_goal.created", "health-goal-created", "health_goal"),
        EventType("health_goal.completed", "health-goal-completed", "health_goal"),
        # The host changed health_goals.progress_percent (flows/health_goal_progressed.py).
        EventType("health_goal.progressed", "health-goal-progressed", "health_goal"),
        EventType("user.deletion_requested", "erase-user", None),
        # The host changed users.marketing_consent / communication_consent (flows/consent_changed.py).
        EventType("user.consent_changed", "consent-changed", None),
        # The host booked (or moved) an appointment, or cancelled it: its reminder is scheduled or withdrawn.
        EventType("appointment.scheduled", "appointment-scheduled", "appointment"),
        EventType("appointment.cancelled", "appointment-cancelled", "appointment"),
        # The host moved a person to another clinic (users.clinic_id): the CRMs re-link their contact.
        EventType("user.clinic_changed", "user-clinic-changed", None),
        EventType("subscription.changed", "subscription-changed", "subscription", origin="hub"),
        EventType("payment.changed", "payment-changed", "payment", origin="hub"),
    )
}
HOST_EVENT_TYPES = sorted(name for name, t in EVENT_TYPES.items() if t.origin == "host")

MAX_PAYLOAD_KEYS = 50


class HostEvent(BaseModel):
    """An event as the host app sends it. Validation errors never echo the submitted values."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    type: str
    occurred_at: datetime
    subject: int = Field(gt=0, le=2_147_483_647, description="The host app's user id the event is about.")
    resource: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in HOST_EVENT_TYPES:
            raise ValueError(f"unknown event type; expected one of {HOST_EVENT_TYPES}")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        """The same instant in UTC (a time without an offset is UTC): SQLite keeps no offset, so
        `10:00+05:00` stored as written would read back as `10:00`, five hours off."""
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    @field_validator("payload")
    @classmethod
    def _small_payload(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_PAYLOAD_KEYS:
            raise ValueError(f"payload has more than {MAX_PAYLOAD_KEYS} keys")
        return value

    @property
    def event_type(self) -> EventType:
        return EVENT_TYPES[self.type]


class HubEvent(HostEvent):
    """An event the hub raises itself (e.g. a Stripe subscription change): same shape, hub-origin types."""

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in EVENT_TYPES or EVENT_TYPES[value].origin != "hub":
            raise ValueError("not an event type the hub raises")
        return value
