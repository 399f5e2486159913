"""Record: one sync-log row per record and destination, outbox status, and the run's summary artifact."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from prefect.context import get_run_context
from sqlalchemy import insert, select, update

from ennu.db import session_scope
from ennu.models import EventStatus, OutboxEvent, SyncLog, SyncStatus, utcnow
from tasks.extract import chunks

SUMMARY_COLUMNS = ("created", "updated", "unchanged", "rejected", "failed", "deferred", "skipped", "erased")


@dataclass(frozen=True)
class SyncEntry:
    """One outcome of one event's record at one destination, ready for the sync log."""

    connector: str
    object: str
    record_key: str
    event_id: str | None
    user_id: int | None
    status: SyncStatus
    remote_id: str | None = None
    error: str | None = None
    payload_hash: str | None = None
    duration_ms: int | None = None


def current_flow_run_id() -> str | None:
    try:
        context = get_run_context()
    except RuntimeError:
        return None
    run = getattr(context, "flow_run", None) or getattr(
        getattr(context, "task_run", None), "flow_run_id", None
    )
    return str(getattr(run, "id", run)) if run is not None else None


def write_sync_log(entries: Sequence[SyncEntry], flow_run_id: str | None) -> None:
    if not entries:
        return
    event_ids = sorted({e.event_id for e in entries if e.event_id})
    attempts: dict[str, int] = {}
    with session_scope() as session:
        for part in chunks(event_ids):
            query = select(OutboxEvent.id, OutboxEvent.attempts).where(OutboxEvent.id.in_(part))
            attempts.update({event_id: count for event_id, count in session.execute(query)})
        now = utcnow()
        rows = [
            {
                "event_id": e.event_id,
                "connector": e.connector,
                "object": e.object,
                "record_key": e.record_key,
                "user_id": e.user_id,
                "status": e.status.value,
                "remote_id": e.remote_id,
                "error": e.error,
                "payload_hash": e.payload_hash
                if e.status in (SyncStatus.CREATED, SyncStatus.UPDATED, SyncStatus.UNCHANGED)
                else None,
                "attempt": attempts.get(e.event_id or "", 0) + 1,
                "flow_run_id": flow_run_id,
                "duration_ms": e.duration_ms,
                "created_at": now,
            }
            for e in entries
        ]
        for part in chunks(rows, 1000):
            session.execute(insert(SyncLog), list(part))


def finish_events(event_ids: Sequence[str], deferred: set[str]) -> None:
    """Done when every destination has a final outcome; deferred when any destination still owes one."""
    now = utcnow()
    with session_scope() as session:
        for status, ids in (
            (EventStatus.DONE, [i for i in event_ids if i not in deferred]),
            (EventStatus.DEFERRED, [i for i in event_ids if i in deferred]),
        ):
            for part in chunks(ids):
                session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id.in_(part))
                    .values(status=status.value, processed_at=now, attempts=OutboxEvent.attempts + 1)
                )


def summarise(entries: Sequence[SyncEntry]) -> list[dict[str, int | str]]:
    """Per destination: records sent and their outcomes (counts only)."""
    per_destination: dict[str, Counter[str]] = {}
    for entry in entries:
        per_destination.setdefault(f"{entry.connector}/{entry.object}", Counter())[entry.status.value] += 1
    table: list[dict[str, int | str]] = []
    for destination, counts in sorted(per_destination.items()):
        sent = counts["created"] + counts["updated"] + counts["failed"]
        table.append({"destination": destination, "sent": sent, **{c: counts[c] for c in SUMMARY_COLUMNS}})
    return table


@task(name="record", cache_policy=NONE)
def record(entries: list[SyncEntry], event_ids: list[str], artifact_title: str) -> list[dict[str, int | str]]:
    """Write the sync log, settle the outbox and attach the summary table to the flow run."""
    flow_run_id = current_flow_run_id()
    write_sync_log(entries, flow_run_id)
    deferred = {e.event_id for e in entries if e.status == SyncStatus.DEFERRED and e.event_id}
    finish_events(event_ids, deferred)
    table = summarise(entries)
    create_table_artifact(
        key="sync-summary",
        table=table,
        description=f"{artifact_title}: {len(event_ids)} events, outcomes per destination (counts only)",
    )
    get_run_logger().info(
        "recorded %d outcomes for %d events (%d deferred)", len(entries), len(event_ids), len(deferred)
    )
    return table
