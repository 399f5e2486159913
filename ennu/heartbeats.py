"""Delivery workers' heartbeats: who is alive, warm and how busy (the status and readiness checks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from ennu.db import session_scope
from ennu.models import WorkerHeartbeat, as_utc, utcnow

ALIVE_WITHIN = timedelta(seconds=30)  # a worker beats every few seconds; silent for this long: gone


@dataclass(frozen=True)
class WorkerSeen:
    name: str
    warm_at: datetime | None
    seen_at: datetime
    batches: int
    events: int
    errors: int


def beat(name: str, *, warm: bool, batches: int = 0, events: int = 0, errors: int = 0) -> None:
    """Record that `name` is alive now (and, once, since when it is warm)."""
    now = utcnow()
    with session_scope() as session:
        row = session.get(WorkerHeartbeat, name)
        if row is None:
            row = WorkerHeartbeat(name=name, started_at=now, seen_at=now, batches=0, events=0, errors=0)
            session.add(row)
        row.seen_at = now
        if warm and row.warm_at is None:
            row.warm_at = now
        row.batches, row.events, row.errors = batches, events, errors


def live_workers(now: datetime | None = None) -> list[WorkerSeen]:
    """Workers seen within the last half minute."""
    cutoff = (now or utcnow()) - ALIVE_WITHIN
    with session_scope() as session:
        rows = session.execute(
            select(WorkerHeartbeat).where(WorkerHeartbeat.seen_at >= cutoff).order_by(WorkerHeartbeat.name)
        ).scalars()
        return [
            WorkerSeen(r.name, as_utc(r.warm_at), as_utc(r.seen_at) or cutoff, r.batches, r.events, r.errors)
            for r in rows
        ]
