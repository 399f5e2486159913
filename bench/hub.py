"""Read-mostly queries of the hub database for the benches: open work, leases, states, who ran what."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, update

from ennu.db import session_scope
from ennu.models import OPEN_DELIVERY, Delivery, OutboxEvent, SyncLog, as_utc, utcnow

OPEN = [s.value for s in OPEN_DELIVERY]
FLOW_RUN_LINK = re.compile(r"/runs/flow-run/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
CHUNK = 500


def _parts(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


def open_work(event_ids: Sequence[str]) -> int:
    """Deliveries of these events still owed (pending, deferred, unknown), plus events not routed yet."""
    total = 0
    with session_scope() as session:
        for part in _parts(list(event_ids)):
            total += session.execute(
                select(func.count()).where(Delivery.event_id.in_(part), Delivery.status.in_(OPEN))
            ).scalar_one()
            total += session.execute(
                select(func.count()).where(OutboxEvent.id.in_(part), OutboxEvent.routed_at.is_(None))
            ).scalar_one()
    return int(total)


def backlog() -> tuple[int, int]:
    """(open deliveries, events not routed yet) in the whole hub."""
    with session_scope() as session:
        deliveries = session.execute(select(func.count()).where(Delivery.status.in_(OPEN))).scalar_one()
        unrouted = session.execute(select(func.count()).where(OutboxEvent.routed_at.is_(None))).scalar_one()
    return int(deliveries), int(unrouted)


def cancel_leftovers(reason: str = "bench: left over from an earlier scenario") -> int:
    """Settle as cancelled whatever an earlier scenario left open, so it cannot blur the next one."""
    with session_scope() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.status.in_(OPEN))
            .values(status="cancelled", last_error=reason, lease_owner=None, lease_expires_at=None)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def leases_of(worker: str) -> tuple[int, int, datetime | None]:
    """(deliveries, events, latest expiry) that `worker` (its --name) holds right now."""
    now = utcnow()
    with session_scope() as session:
        rows = session.execute(
            select(Delivery.event_id, Delivery.lease_expires_at).where(
                Delivery.lease_owner.like(f"{worker}/%"),
                Delivery.lease_expires_at > now,
                Delivery.status.in_(OPEN),
            )
        ).all()
    expiries = [as_utc(r[1]) for r in rows if r[1] is not None]
    latest = max((e for e in expiries if e is not None), default=None)
    return len(rows), len({r[0] for r in rows}), latest


def seconds_until(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    return (moment - datetime.now(UTC)).total_seconds()


def states(event_ids: Sequence[str]) -> Counter[tuple[str, str, str]]:
    """(integration, state, reason) counts of these events' deliveries; reasons are codes, never values."""
    found: Counter[tuple[str, str, str]] = Counter()
    with session_scope() as session:
        for part in _parts(list(event_ids)):
            rows = session.execute(
                select(Delivery.integration, Delivery.status, Delivery.last_error, func.count())
                .where(Delivery.event_id.in_(part))
                .group_by(Delivery.integration, Delivery.status, Delivery.last_error)
            ).all()
            for integration, status, error, n in rows:
                found[(integration, status, (error or "")[:80])] += int(n)
    return found


def failed(event_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(event, integration) of these events' deliveries that are visibly `failed` (a dead letter with its
    reason, in the status and re-playable)."""
    found: list[tuple[str, str]] = []
    with session_scope() as session:
        for part in _parts(list(event_ids)):
            rows = session.execute(
                select(Delivery.event_id, Delivery.integration).where(
                    Delivery.event_id.in_(part), Delivery.status == "failed"
                )
            ).all()
            found += [(str(e), str(i)) for e, i in rows]
    return found


def attempts_over_one(event_ids: Sequence[str]) -> int:
    with session_scope() as session:
        return int(
            sum(
                session.execute(
                    select(func.count()).where(Delivery.event_id.in_(part), Delivery.attempts > 1)
                ).scalar_one()
                for part in _parts(list(event_ids))
            )
        )


def worker_share(event_ids: Sequence[str], worker_logs: dict[str, Path]) -> dict[str, dict[str, int]]:
    """Per worker: the flow runs (batches) it ran for these events and the events they carried.

    A worker runs each batch as a flow run in-process and logs its UI link; the sync log names the flow
    run of every outcome. An event whose outcomes came from two workers' runs counts for both.
    """
    owner_of: dict[str, str] = {}
    for worker, log in worker_logs.items():
        text = log.read_text(errors="replace") if log.exists() else ""
        for run_id in FLOW_RUN_LINK.findall(text):
            owner_of[run_id] = worker
    runs: dict[str, set[str]] = {}
    events: dict[str, set[str]] = {}
    with session_scope() as session:
        for part in _parts(list(event_ids)):
            rows = session.execute(
                select(SyncLog.flow_run_id, SyncLog.event_id)
                .where(SyncLog.event_id.in_(part), SyncLog.flow_run_id.is_not(None))
                .distinct()
            ).all()
            for run_id, event_id in rows:
                worker = owner_of.get(str(run_id), "(not a worker's run)")
                runs.setdefault(worker, set()).add(str(run_id))
                events.setdefault(worker, set()).add(str(event_id))
    return {w: {"runs": len(runs[w]), "events": len(events[w])} for w in sorted(runs)}
