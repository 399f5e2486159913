"""The path of one batch of events: extract → route → map → validate → push → record."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import Task
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from connectors.base import Outcome, Record
from connectors.http import ConnectorError
from connectors.registry import CONNECTORS
from ennu.models import SyncStatus
from ennu.settings import get_settings
from tasks.extract import Extracted, extract
from tasks.map import map_records
from tasks.push import plan_push, push_batch, to_records
from tasks.record import SyncEntry, record
from tasks.route import Route, route
from tasks.validate import ValidationResult, validate

SummaryTable = list[dict[str, int | str]]

# Batches of several destinations go out concurrently; vendors cap concurrent connections (Mailchimp: 10).
PUSH_RUNNER: TaskRunner[Any] = ThreadPoolTaskRunner(max_workers=4)


def unusable_event_entries(extracted: Extracted) -> list[SyncEntry]:
    """Events whose user or resource is gone get one rejected row, so nobody wonders where they went."""
    return [
        SyncEntry("hub", "event", f"event:{event_id}", event_id, None, SyncStatus.REJECTED, error=reason)
        for event_id, reason in extracted.missing.items()
        if reason != "event not in the outbox"
    ]


def withheld_entries(r: Route) -> list[SyncEntry]:
    need = f"no consent for {r.connector}"
    return [
        SyncEntry(
            r.connector,
            r.mapping.object,
            f"{r.mapping.record}:{rid}",
            str(eid),
            int(uid),
            SyncStatus.SKIPPED,
            error=need,
        )
        for rid, eid, uid in zip(
            r.refused[f"{r.mapping.record}.id"], r.refused["event.id"], r.refused["user.id"], strict=True
        )
    ]


def rejected_entries(r: Route, checked: ValidationResult) -> list[SyncEntry]:
    return [
        SyncEntry(
            r.connector,
            r.mapping.object,
            rej.record_key,
            rej.event_id,
            rej.user_id,
            SyncStatus.REJECTED,
            error="; ".join(rej.failed),
        )
        for rej in checked.rejected
    ]


def delivered_entries(
    r: Route, records: list[Record], outcomes: dict[str, Outcome], hashes: dict[str, str]
) -> list[SyncEntry]:
    """Every valid row gets the outcome of its record (rows of one record share one request)."""
    entries = []
    for rec in records:
        outcome = outcomes.get(rec.record_key) or Outcome(
            rec.record_key, SyncStatus.FAILED, error="no outcome"
        )
        entries.append(
            SyncEntry(
                r.connector,
                r.mapping.object,
                rec.record_key,
                rec.event_id,
                rec.user_id,
                outcome.status,
                outcome.remote_id,
                outcome.error,
                hashes.get(rec.record_key),
                outcome.duration_ms,
            )
        )
    return entries


def collect(futures: list[tuple[list[Record], PrefectFuture[list[Outcome]]]]) -> dict[str, Outcome]:
    """Outcomes of every pushed batch; a batch whose retries ran out is deferred to the drain, not lost."""
    outcomes: dict[str, Outcome] = {}
    for batch, future in futures:
        future.wait()
        result: Any = future.result(raise_on_failure=False)
        if isinstance(result, BaseException):
            reason = result.reason if isinstance(result, ConnectorError) else type(result).__name__
            outcomes.update(
                {r.record_key: Outcome(r.record_key, SyncStatus.DEFERRED, error=reason) for r in batch}
            )
        else:
            outcomes.update({o.record_key: o for o in result})
    return outcomes


def run_event_pipeline(
    event_type: str,
    event_ids: list[str],
    *,
    force: bool = False,
    only: list[str] | None = None,
    side_stage: Task[[pd.DataFrame], list[SyncEntry]] | None = None,
) -> SummaryTable:
    """Carry a batch of events of one type to every routed destination and record each outcome."""
    settings = get_settings()
    push = push_batch.with_options(
        retries=settings.push_retries,
        retry_delay_seconds=[settings.push_retry_base_seconds * 2**n for n in range(settings.push_retries)],
    )
    extracted = extract(event_type, event_ids)
    entries = unusable_event_entries(extracted)
    side = side_stage.submit(extracted.frame) if side_stage is not None else None
    pending: list[tuple[Route, list[Record], dict[str, str], list[Outcome], Any]] = []
    for r in route(event_type, extracted.frame):
        if only is not None and r.connector not in only:
            continue
        entries += withheld_entries(r)
        checked = validate(r.mapping, map_records(r.mapping, r.frame))
        entries += rejected_entries(r, checked)
        records = to_records(checked.valid)
        plan = plan_push(
            r.connector,
            r.mapping.object,
            r.mapping.upsert_key,
            records,
            CONNECTORS[r.connector].batch_sizes[r.mapping.object],
            force=force,
        )
        futures = [
            (batch, push.submit(r.connector, r.mapping.object, r.mapping.upsert_key, batch))
            for batch in plan.batches
        ]
        pending.append((r, records, plan.hashes, plan.settled, futures))
    for r, records, hashes, settled, futures in pending:
        outcomes = {o.record_key: o for o in settled} | collect(futures)
        entries += delivered_entries(r, records, outcomes, hashes)
    if side is not None:
        result: Any = side.result(raise_on_failure=False)
        entries += result if isinstance(result, list) else []
    known = extracted.event_ids + [
        e for e, why in extracted.missing.items() if why != "event not in the outbox"
    ]
    return record(entries, known, event_type)
