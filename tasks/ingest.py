"""Ingestion: an event becomes a durable outbox row, then a Prefect event (an audit trail and wake-up only).

Nothing depends on the Prefect event arriving: the delivery workers find new outbox rows by polling, route
them (tasks/admit.py) and deliver them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prefect.events import emit_event
from sqlalchemy.exc import IntegrityError

from ennu.db import session_scope
from ennu.events import HostEvent
from ennu.models import OutboxEvent
from ennu.settings import get_settings
from mappings.loader import event_payload_keys

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ingested:
    event_id: str
    created: bool  # False when the id was already in the outbox (a redelivery)
    status: str
    dropped_payload_keys: int = 0  # payload keys no mapping reads: never stored


def prefect_event_for(event_id: str, event_type: str) -> None:
    """Announce an outbox event to Prefect: ids only. Dropped while Prefect is down, harmlessly."""
    emit_event(
        event=f"ennu.{event_type}",
        resource={"prefect.resource.id": f"ennu.event.{event_id}", "ennu.event-type": event_type},
        payload={"event_id": event_id},
    )


def minimised(event: HostEvent) -> tuple[dict[str, Any], int]:
    """A host event's payload as stored: only the keys some mapping reads; and how many were dropped.

    The hub reads people's data from the host's tables, never from an event, so today no mapping reads a
    payload key and every payload is stored empty. The hub's own events keep theirs (ids it wrote).
    """
    if event.event_type.origin != "host":
        return dict(event.payload), 0
    read = event_payload_keys(get_settings().mappings_dir)
    kept = {k: v for k, v in event.payload.items() if k in read}
    return kept, len(event.payload) - len(kept)


def ingest(event: HostEvent, *, emit: bool = True) -> Ingested:
    """Store the event once (same id twice → one row) and, if it is new, announce `ennu.<type>`."""
    payload, dropped = minimised(event)
    row = OutboxEvent(
        id=event.id,
        type=event.type,
        subject=event.subject,
        resource=event.resource,
        payload=payload,
        occurred_at=event.occurred_at,
    )
    try:
        with session_scope() as session:
            session.add(row)
    except IntegrityError:
        with session_scope() as session:
            existing = session.get(OutboxEvent, event.id)
            status = existing.status if existing is not None else "unknown"
        logger.info("event %s already in the outbox", event.id)
        return Ingested(event.id, False, status, dropped)
    if emit:
        prefect_event_for(event.id, event.type)
    return Ingested(event.id, True, row.status, dropped)
