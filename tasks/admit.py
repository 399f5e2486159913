"""Admit: turn newly stored outbox events into one pending delivery per destination they ask for.

The intake API, the hub's own webhooks and a host app that inserts outbox rows itself all leave events
unrouted (`routed_at` empty); the workers (and a flow run given event ids) route them here, exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from connectors.base import Connector
from connectors.registry import CONNECTORS
from ennu import deliveries
from ennu.db import session_scope
from ennu.erasure import SKIPPED_ERASED, received_by
from ennu.models import ErasedPerson, EventStatus, OutboxEvent, SyncLog, SyncStatus, table_of, utcnow
from ennu.settings import get_settings
from mappings.routing import DEFAULT_PRIORITY, RoutingTable, routing_table
from mappings.schema import Mapping as RecordMapping

ERASURE = "user.deletion_requested"
CONSENT_CHANGE = "user.consent_changed"
BULK_ORIGIN = "bulk-sync"
BULK_PRIORITY_OFFSET = deliveries.BULK_PRIORITY  # a bulk sync queues behind live events of every priority


def withdraws_consent(connector: type[Connector]) -> bool:
    """Whether a connector has anything to stop when a person withdraws a consent."""
    return connector.withdraw_consent is not Connector.withdraw_consent


def destinations(
    table: RoutingTable, event_type: str, requested: Sequence[str] | None
) -> list[tuple[str, int]]:
    """The integrations an event of this type goes to, with their priority (a route may set its own),
    narrowed to those it asks for."""
    if event_type == ERASURE:
        routed = {name: config.priority for name, config in table.integrations.items() if config.enabled}
    elif event_type == CONSENT_CHANGE:
        routed = {
            name: config.priority
            for name, config in table.integrations.items()
            if config.enabled and name in CONNECTORS and withdraws_consent(CONNECTORS[name])
        }
    else:
        routed = {}
        for spec in table.routes_for(event_type):
            routed.setdefault(spec.connector, spec.priority or table.integrations[spec.connector].priority)
    wanted = None if requested is None else set(requested)
    return [(name, priority) for name, priority in routed.items() if wanted is None or name in wanted]


def kept_records(
    table: RoutingTable, mappings: Mapping[tuple[str, str], RecordMapping], event_type: str
) -> list[str]:
    """Where a bulk sync that names no destination goes: the routes whose object keeps a record that a
    second send leaves as it was (an upsert, a keyed create: `idempotent`), so re-sending every record of
    a kind brings the destinations up to date and tells nobody anything twice. Routes that announce
    something (an SMS or a call, a care-team notice, a Zap, an analytics hit, a follow-up that starts a
    journey) go only where an operator names them: a bulk sync of past assessments must not text every
    person or post every score band to the care team's channel again."""
    return list(
        dict.fromkeys(
            spec.connector
            for spec in table.routes_for(event_type)
            if spec.connector in CONNECTORS
            and CONNECTORS[spec.connector].sends_of(mappings[(event_type, spec.mapping_name)].object)
            == "idempotent"
        )
    )


def held_elsewhere(
    session: Session, table: RoutingTable, user_id: int, asked: set[str]
) -> list[tuple[str, int]]:
    """Destinations that received the person at any time and are not enabled now: an erasure asks them too."""
    return [
        (name, table.integrations[name].priority if name in table.integrations else DEFAULT_PRIORITY)
        for name in sorted(received_by(session, user_id) - asked)
        if name in CONNECTORS
    ]


def admit(event_ids: Sequence[str] | None = None, limit: int = 1000) -> int:
    """Create the deliveries of unrouted events: all of these, or the oldest `limit`; returns events routed.

    Named events are admitted whatever their number (a bulk chunk larger than `limit` was admitted only in
    part, and its run carried only those).
    """
    table = routing_table(get_settings().mappings_dir)
    now = utcnow()
    with session_scope() as session:
        query = select(OutboxEvent.id).where(OutboxEvent.routed_at.is_(None))
        if event_ids is not None:
            query = query.where(OutboxEvent.id.in_(list(event_ids)))
        else:
            query = query.order_by(OutboxEvent.received_at).limit(limit)
        candidates = list(session.execute(query).scalars())
        if not candidates:
            return 0
        # Whoever sets routed_at routes the event: a second worker racing here finds nothing to update.
        won = session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(candidates), OutboxEvent.routed_at.is_(None))
            .values(routed_at=now)
            .returning(
                OutboxEvent.id,
                OutboxEvent.type,
                OutboxEvent.subject,
                OutboxEvent.destinations,
                OutboxEvent.payload,
            )
        ).all()
        rows = []
        nowhere = []
        for event_id, event_type, subject, requested, payload in won:
            names = destinations(table, event_type, requested)
            if event_type == ERASURE and subject is not None:
                names += held_elsewhere(session, table, subject, {n for n, _ in names})
            offset = BULK_PRIORITY_OFFSET if (payload or {}).get("origin") == BULK_ORIGIN else 0
            rows += [(event_id, event_type, subject, name, priority + offset) for name, priority in names]
            if not names:
                nowhere.append(event_id)
        erased = set(
            session.execute(
                select(ErasedPerson.user_id).where(ErasedPerson.user_id.in_({r[2] for r in rows if r[2]}))
            ).scalars()
        )
        if erased:  # never sent anywhere again; the erasure of a re-created id's event still runs
            rows = [r for r in rows if r[2] not in erased or r[1] == ERASURE]
            skipped = [w for w in won if w[2] in erased and w[1] != ERASURE]
            nowhere += [w[0] for w in skipped]
            session.execute(
                insert(table_of(SyncLog)),
                [
                    {
                        "event_id": event_id,
                        "connector": "hub",
                        "object": "event",
                        "record_key": f"event:{event_id}",
                        "user_id": subject,
                        "status": SyncStatus.SKIPPED.value,
                        "error": SKIPPED_ERASED,
                        "attempt": 1,
                        "created_at": now,
                    }
                    for event_id, _type, subject, *_ in skipped
                ],
            )
        deliveries.create(session, rows)
        if nowhere:
            session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(nowhere))
                .values(status=EventStatus.DONE.value, processed_at=now)
            )
    return len(won)
