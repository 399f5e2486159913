"""What the conformance suite pushes: real records, made by the real mappings from synthetic host rows.

Nothing here names a vendor. For every route of the routing table to a connector, people and the rows of
the route's event type are written to the host tables, and the batch is taken through the product's own
extract → route → map → validate functions; the valid records are what the suite sends. A new connector
with mapping files is therefore covered without an edit here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from connectors.base import Record
from ennu.db import session_scope
from ennu.events import EVENT_TYPES, HubEvent
from ennu.models import Payment, PaymentStatus, Subscription
from ennu.settings import get_settings
from mappings import Mapping, apply_mapping
from mappings.routing import routing_table
from tasks.extract import extract_records
from tasks.ingest import ingest
from tasks.push import to_records
from tasks.route import plan_routes
from tasks.validate import validate_parts
from tests.factories import (
    add_assessment,
    add_critical_glucose,
    add_event,
    add_goal,
    add_person,
    completed_event,
    zone_at_local_hour,
)


def _subscription(user_id: int) -> int:
    with session_scope() as session:
        row = Subscription(
            user_id=user_id,
            stripe_subscription_id=f"sub_conf{user_id}",
            stripe_customer_id=f"cus_conf{user_id}",
            status="active",
            price_id="price_monthly",
            current_period_end=datetime(2026, 12, 31, tzinfo=UTC),
            vendor_updated_at=datetime(2026, 11, 3, tzinfo=UTC),
        )
        session.add(row)
        session.flush()
        return row.id


def _payment(user_id: int) -> int:
    with session_scope() as session:
        row = Payment(
            user_id=user_id,
            stripe_invoice_id=f"in_conf{user_id}",
            status=PaymentStatus.PAID.value,
            amount=4900,
            amount_refunded=0,
            currency="usd",
            occurred_at=datetime(2026, 11, 3, tzinfo=UTC),
        )
        session.add(row)
        session.flush()
        return row.id


# The host row an event of each type is about (None: the person), and its outbox event. The event types
# are the host's, not the vendors': a new connector routed to any of them is covered.
RESOURCES: dict[str, Callable[[int], int | None]] = {
    "user.registered": lambda user_id: None,
    "user.login": lambda user_id: None,
    "user.clinic_changed": lambda user_id: None,
    "assessment.completed": lambda user_id: add_assessment(user_id),
    "biomarker.updated": add_critical_glucose,  # critical: the care-team routes' filter keeps it
    "health_goal.created": lambda user_id: add_goal(user_id),
    "health_goal.completed": lambda user_id: add_goal(user_id, status="completed"),
    "subscription.changed": _subscription,
    "payment.changed": _payment,
}


def _event(event_type: str, user_id: int, resource: int | None, n: int) -> str:
    tag = f"conf-{event_type}-{user_id}-{n}"
    if EVENT_TYPES[event_type].origin != "host":  # raised by the hub itself (from a vendor's webhook)
        event = HubEvent(
            id=tag,
            type=event_type,
            occurred_at=datetime(2026, 11, 3, 8, 0, tzinfo=UTC),
            subject=user_id,
            resource=None if resource is None else str(resource),
        )
        return ingest(event, emit=False).event_id
    if event_type == "assessment.completed" and resource is not None:
        return completed_event(user_id, resource, event_id=tag)
    return add_event(event_type, user_id, resource, event_id=tag)


@dataclass(frozen=True)
class Batch:
    """One route's records for one connector: what a push of that object carries."""

    event_type: str
    mapping: Mapping
    records: list[Record]

    @property
    def object_name(self) -> str:
        return self.mapping.object

    @property
    def upsert_key(self) -> str:
        return self.mapping.upsert_key


def routes_of(connector: str) -> list[str]:
    """The event types the routing table sends to `connector`."""
    table = routing_table(get_settings().mappings_dir)
    return [
        event_type
        for event_type in RESOURCES
        if any(spec.connector == connector for spec in table.routes_for(event_type))
    ]


def batches(connector: str, people: int = 3, event_types: list[str] | None = None) -> list[Batch]:
    """For each route to `connector`: `people` new people, their rows and events, mapped and validated.

    Only valid records are returned (the suite checks connectors, not the mappings' constraints).
    """
    found = []
    for event_type in event_types or routes_of(connector):
        event_ids = []
        for n in range(people):
            # Twilio holds messages in quiet hours (21:00-08:00): its people live where it is midday now.
            user_id = add_person(timezone=zone_at_local_hour(12)) if connector == "twilio" else add_person()
            event_ids.append(_event(event_type, user_id, RESOURCES[event_type](user_id), n))
        extracted = extract_records(event_type, event_ids)
        routes = [r for r in plan_routes(event_type, extracted.frame) if r.connector == connector]
        for route, checked in zip(
            routes,
            validate_parts([(r.mapping, apply_mapping(r.mapping, r.frame)) for r in routes]),
            strict=True,
        ):
            if len(checked.valid):
                found.append(Batch(event_type, route.mapping, to_records(checked.valid)))
    return found


def personal_values(records: list[Record]) -> set[str]:
    """The values of these records that could identify a person or carry health data, as text.

    Short values (a flag, a small number) and the hub's own ids are left out: they cannot be told apart
    from codes and counts in a message.
    """
    values = set()
    for record in records:
        for value in record.fields.values():
            text = str(value)
            if value is not None and not isinstance(value, bool) and len(text) >= 5:
                values.add(text)
    return values
