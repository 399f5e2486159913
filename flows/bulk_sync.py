"""`bulk-sync`: every record of a kind (or of some people) to one or more destinations, on demand."""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import State
from sqlalchemy import String, cast, func, insert, literal, select

from ennu import deliveries
from ennu.audit import audited_run, describe
from ennu.db import session_scope
from ennu.erasure import not_erased
from ennu.events import EVENT_TYPES
from ennu.models import (
    Appointment,
    Assessment,
    Biomarker,
    EventStatus,
    HealthGoal,
    OutboxEvent,
    User,
    table_of,
)
from ennu.settings import get_settings
from flows.pipeline import PUSH_RUNNER, PUSH_THREADS, run_event_pipeline
from flows.results import NO_RESULTS
from mappings.loader import load_all_mappings
from mappings.routing import routing_table
from tasks.admit import BULK_ORIGIN, BULK_PRIORITY_OFFSET, destinations, kept_records
from tasks.record import Tally, current_flow_run_id, record
from tasks.run_state import batch_state

CHUNKS_IN_FLIGHT = 2
OUTBOX_TABLE = table_of(OutboxEvent)


def resources(event_type: str, user_ids: list[int] | None) -> tuple[Any, Any]:
    """(user id, resource id) of every record this event type would carry (labelled `subject` and
    `resource`), latest assessment per person, and the unique column the query pages by (the resource's
    id, the user's for events about a user)."""
    kind = EVENT_TYPES[event_type].resource_kind
    query: Any
    if kind is None:
        query, key, person = select(User.id, literal(None)), User.id, User.id
    elif kind == "assessment":
        latest = (
            select(func.max(Assessment.id).label("id"))
            .where(Assessment.status == "completed")
            .group_by(Assessment.user_id)
            .subquery()
        )
        query = select(Assessment.user_id, Assessment.id).where(Assessment.id.in_(select(latest.c.id)))
        key, person = Assessment.id, Assessment.user_id
    elif kind == "biomarker":
        query, key, person = select(Biomarker.user_id, Biomarker.id), Biomarker.id, Biomarker.user_id
    elif kind == "appointment":
        status = "cancelled" if event_type == "appointment.cancelled" else "scheduled"
        query = select(Appointment.user_id, Appointment.id).where(Appointment.status == status)
        key, person = Appointment.id, Appointment.user_id
    else:
        status = "completed" if event_type == "health_goal.completed" else "active"
        query = select(HealthGoal.user_id, HealthGoal.id).where(HealthGoal.status == status)
        key, person = HealthGoal.id, HealthGoal.user_id
    if user_ids:
        query = query.where(person.in_(user_ids))
    subject, resource = query.selected_columns
    query = query.with_only_columns(subject.label("subject"), resource.label("resource"))
    return query.where(not_erased(person)), key  # an erased person is never sent anywhere again


def synthetic_events(
    event_type: str, user_ids: list[int] | None, run_id: str, integrations: list[str] | None = None
) -> Iterator[list[str]]:
    """Outbox events for the bulk run, written and yielded a chunk at a time (ENNU_BULK_BATCH_SIZE), each
    with its deliveries (admitted here, in the same transaction: every event of the run goes to the same
    destinations, so routing them one by one would only repeat the same answer).

    Each event stores the destinations it asks for, so every retry of it reaches exactly those. A chunk is
    written by the database from the records' own query (`INSERT … SELECT`, keyset paging after the last
    key written: no cursor stays open while the pipeline works, memory stays flat whatever the count): no
    row of it passes through Python on the way in (a row a dict, its columns each converted, was a tenth
    of a bulk run's CPU).
    """
    now = datetime.now(UTC)
    settings = get_settings()
    routed = destinations(routing_table(settings.mappings_dir), event_type, integrations)
    query, key = resources(event_type, user_ids)
    row = query.order_by(key).limit(settings.bulk_batch_size)
    status = EventStatus.PENDING if routed else EventStatus.DONE
    fixed = {
        "type": literal(event_type),
        "payload": literal({"origin": BULK_ORIGIN}, OutboxEvent.payload.type),
        "destinations": literal(integrations, OutboxEvent.destinations.type),
        "status": literal(status.value),
        "occurred_at": literal(now, OutboxEvent.occurred_at.type),
        "received_at": literal(now, OutboxEvent.received_at.type),
        "routed_at": literal(now, OutboxEvent.routed_at.type),
        "processed_at": literal(None if routed else now, OutboxEvent.processed_at.type),
        "attempts": literal(0),
    }
    last: int | None = None
    while True:
        page = (row if last is None else row.where(key > last)).subquery()
        resource = cast(page.c.resource, String)
        event_id = (
            literal(f"bulk-{run_id[:8]}-") + cast(page.c.subject, String) + "-" + func.coalesce(resource, "0")
        )
        columns = {"id": event_id, "subject": page.c.subject, "resource": resource, **fixed}
        with session_scope() as writer:
            written = writer.execute(
                insert(OUTBOX_TABLE)
                .from_select(list(columns), select(*columns.values()))
                .returning(OutboxEvent.id, OutboxEvent.subject, OutboxEvent.resource)
            ).all()
            if not written:
                return
            # In the page's key order (the resource's id, else the person's): the next page starts after it.
            keyed = sorted(
                (int(str(subject) if held is None else held), event) for event, subject, held in written
            )
            ids = [event for _, event in keyed]
            for name, priority in routed:
                deliveries.create_for(writer, ids, name, priority + BULK_PRIORITY_OFFSET)
        last = keyed[-1][0]
        yield ids


@flow(name="bulk-sync", task_runner=PUSH_RUNNER, log_prints=False, **NO_RESULTS)
def bulk_sync(
    event_type: str = "assessment.completed",
    integrations: list[str] | None = None,
    user_ids: list[int] | None = None,
) -> State[Any]:
    """Send every record of `event_type` (or those of `user_ids`) to `integrations` (default: every routed
    destination that keeps records, `tasks.admit.kept_records`: no SMS, notice, Zap or analytics hit
    unless named).

    Records the destination already has unchanged cost no request. The run carries its own events
    through the pipeline a chunk at a time; delivery workers may take some of them (they queue behind
    live events), and either way each delivery is made once. The run ends with one summary of every
    chunk's outcomes (and the undelivered records, why), Failed when a delivery failed.
    """
    if event_type not in EVENT_TYPES or event_type == "user.deletion_requested":
        raise ValueError("bulk-sync takes an event type that carries records")
    if integrations is None:
        mappings_dir = get_settings().mappings_dir
        integrations = kept_records(routing_table(mappings_dir), load_all_mappings(mappings_dir), event_type)
        if not integrations:
            raise ValueError(
                f"bulk-sync of {event_type}: none of its destinations keeps records (each announces "
                "something: a message, a notice, a Zap); name the integrations to send it to"
            )
    run_id = (current_flow_run_id() or "local").replace("-", "")
    sent = 0
    tally = Tally()
    # Started by hand from the Prefect UI: recorded in the audit log (ennu/audit.py), ids and names only.
    target = describe(
        event_type=event_type,
        integrations=integrations,
        user_ids=None if user_ids is None else f"{len(user_ids)} ids",
    )
    # Two chunks in flight: one is prepared (database and CPU) while the other's batches are at the vendor,
    # and the next chunk's events are written meanwhile, before waiting for a place. Each chunk holds only
    # its own deliveries.
    in_flight: deque[Future[object]] = deque()
    with (
        audited_run("sync", target),
        ThreadPoolExecutor(CHUNKS_IN_FLIGHT, thread_name_prefix="bulk-chunk") as chunks,
    ):
        # A failed chunk raises here; leaving the block waits for the other one to be recorded.
        for ids in synthetic_events(event_type, user_ids, run_id, integrations):
            if len(in_flight) >= CHUNKS_IN_FLIGHT:
                in_flight.popleft().result()
            context = contextvars.copy_context()  # the flow run's: its task runner, logger, owner
            in_flight.append(
                chunks.submit(
                    context.run,
                    run_event_pipeline,
                    event_type,
                    ids,
                    tally=tally,
                    push_threads=PUSH_THREADS // CHUNKS_IN_FLIGHT,  # the chunks in flight share the runner
                )
            )
            sent += len(ids)
        for chunk in in_flight:
            chunk.result()
    get_run_logger().info("bulk-sync of %s: %d records", event_type, sent)
    return batch_state(record(tally, f"bulk-sync of {event_type}"))
