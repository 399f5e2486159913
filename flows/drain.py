"""`drain`: the safety net: every pending or deferred outbox event, in batches, by its event type's flow."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger
from sqlalchemy import case, select

from ennu.db import session_scope
from ennu.models import EventStatus, OutboxEvent, utcnow
from ennu.settings import get_settings
from flows.registry import EVENT_FLOWS
from mappings.routing import routing_table

# Events younger than this are left to their trigger-started run, which is probably under way.
DEFAULT_MIN_AGE_SECONDS = 120


def waiting_events(min_age_seconds: int, limit: int) -> dict[str, list[str]]:
    """Pending and deferred event ids grouped by type: priority integrations first, then oldest first.

    An event type's priority is its most urgent destination's (`priority` in routing.yaml), so when there
    are more waiting events than one run takes, results bound for the EHR go before marketing updates.
    """
    cutoff = utcnow() - timedelta(seconds=min_age_seconds)
    table = routing_table(get_settings().mappings_dir)
    priority = case(
        {event_type: table.event_priority(event_type) for event_type in EVENT_FLOWS},
        value=OutboxEvent.type,
        else_=9,
    )
    with session_scope() as session:
        rows = session.execute(
            select(OutboxEvent.type, OutboxEvent.id)
            .where(
                OutboxEvent.status.in_([EventStatus.PENDING.value, EventStatus.DEFERRED.value]),
                OutboxEvent.received_at <= cutoff,
            )
            .order_by(priority, OutboxEvent.received_at, OutboxEvent.id)
            .limit(limit)
        ).all()
    grouped: dict[str, list[str]] = {}
    for event_type, event_id in rows:
        grouped.setdefault(event_type, []).append(event_id)
    return grouped


@flow(name="drain", log_prints=False)
def drain(
    batch_size: int | None = None, min_age_seconds: int = DEFAULT_MIN_AGE_SECONDS, max_events: int = 100_000
) -> dict[str, int]:
    """Run each waiting event through its flow, `batch_size` events per subflow run.

    Args:
        batch_size: events per flow run (default ENNU_DRAIN_BATCH_SIZE, 50).
        min_age_seconds: leave younger events to the run their trigger started.
        max_events: at most this many events in one drain run.
    """
    logger = get_run_logger()
    size = batch_size or get_settings().drain_batch_size
    processed: dict[str, int] = {}
    for event_type, ids in waiting_events(min_age_seconds, max_events).items():
        event_flow = EVENT_FLOWS.get(event_type)
        if event_flow is None:
            logger.warning("%d %s events wait for a flow that does not exist yet", len(ids), event_type)
            continue
        for start in range(0, len(ids), size):
            event_flow(event_ids=ids[start : start + size])
        processed[event_type] = len(ids)
        logger.info("drained %d %s events", len(ids), event_type)
    return processed
