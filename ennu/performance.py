"""Per-integration figures from the sync log and the deliveries: volume, error rate, latency, backlog, trend.

One computation for the dashboard artifact, its charts, `GET /integrations/status`, the alerts and the
health report, so they never disagree. Counts and milliseconds only, never a record.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import case, func, or_, select

from ennu.db import session_scope
from ennu.models import NOT_DELIVERY_ATTEMPTS, OPEN_DELIVERY, Delivery, SyncLog, SyncStatus, as_utc, utcnow

ERRORS = frozenset({SyncStatus.FAILED.value, SyncStatus.REJECTED.value})
HUB = "hub"  # the hub's own rows (inbound changes), not an integration
DAYS = 7


def percentile(sorted_values: list[int], share: float) -> int | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(share * len(sorted_values)) - 1))
    return sorted_values[rank]


def error_rate(records: int, errors: int) -> float | None:
    return round(errors / records, 4) if records else None


def trend(now_value: float, before: float) -> str:
    """`+25%` against the previous period; `new` when there was nothing before, `flat` when nothing at all."""
    if before == 0:
        return "new" if now_value else "flat"
    return f"{(now_value - before) / before:+.0%}"


@dataclass(frozen=True)
class DayFigures:
    """One day of one integration (UTC): records attempted, their error rate, p50/p95 latency."""

    day: date
    records: int
    error_rate: float | None
    p50_ms: int | None
    p95_ms: int | None


@dataclass
class Window:
    """Records, errors and durations of one integration over one period, as they are read."""

    records: int = 0
    errors: int = 0
    durations: list[int] = field(default_factory=list)

    def add(self, status: str, duration_ms: int | None) -> None:
        self.records += 1
        self.errors += status in ERRORS
        if duration_ms is not None:
            self.durations.append(duration_ms)

    @property
    def error_rate(self) -> float | None:
        return error_rate(self.records, self.errors)

    def p(self, share: float) -> int | None:
        return percentile(sorted(self.durations), share)


@dataclass(frozen=True)
class Figures:
    """One integration's figures as of `as_of`."""

    integration: str
    as_of: datetime
    records_1h: int
    errors_1h: int
    error_rate_1h: float | None
    p50_ms_1h: int | None
    p95_ms_1h: int | None
    records_24h: int
    errors_24h: int
    error_rate_24h: float | None
    p50_ms_24h: int | None
    p95_ms_24h: int | None
    records_per_day_7d: float  # the 7 days before the last 24 h, per day
    error_rate_7d: float | None
    p95_ms_7d: int | None
    trend_vs_7d: str  # the last 24 h's records against the 7-day daily average
    queue_depth: int  # deliveries still owed (pending, deferred, ambiguous), leased or not
    oldest_waiting_at: datetime | None
    days: list[DayFigures]  # the last DAYS days, oldest first, today last


def _days(as_of: datetime) -> list[date]:
    today = as_of.date()
    return [today - timedelta(days=n) for n in range(DAYS - 1, -1, -1)]


def backlog(now: datetime | None = None) -> dict[str, tuple[int, datetime | None]]:
    """Per integration: deliveries still owed, and since when the longest-waiting due one has waited.

    A delivery deferred to later (quiet hours, a blood-pressure partner, a patient not matched yet) waits by
    design until its `not_before`; from then on it counts as waiting.
    """
    now = now or utcnow()
    due = or_(Delivery.not_before.is_(None), Delivery.not_before <= now)
    waiting_since = case((due, func.coalesce(Delivery.not_before, Delivery.created_at)), else_=None)
    with session_scope() as session:
        rows = session.execute(
            select(Delivery.integration, func.count(), func.min(waiting_since))
            .where(Delivery.status.in_([s.value for s in OPEN_DELIVERY]))
            .group_by(Delivery.integration)
        ).all()
    return {str(name): (int(n), as_utc(oldest)) for name, n, oldest in rows}


def figures(integrations: list[str], as_of: datetime | None = None) -> dict[str, Figures]:
    """Figures for each named integration (those without a record get zeros)."""
    now = as_utc(as_of) or utcnow()
    hour, day, week = now - timedelta(hours=1), now - timedelta(hours=24), now - timedelta(hours=24 * 8)
    chart_start = datetime.combine(_days(now)[0], datetime.min.time(), tzinfo=now.tzinfo)
    start = min(week, chart_start)
    with session_scope() as session:
        rows = session.execute(
            select(SyncLog.connector, SyncLog.status, SyncLog.duration_ms, SyncLog.created_at).where(
                SyncLog.created_at >= start,
                SyncLog.created_at < now,
                SyncLog.connector.in_(integrations),
                SyncLog.status.not_in(NOT_DELIVERY_ATTEMPTS),
            )
        ).all()
    last_hour: dict[str, Window] = defaultdict(Window)
    last_day: dict[str, Window] = defaultdict(Window)
    before: dict[str, Window] = defaultdict(Window)
    per_day: dict[tuple[str, date], Window] = defaultdict(Window)
    for name, status, ms, created in rows:
        at = as_utc(created)
        assert at is not None
        if at >= day:
            last_day[name].add(status, ms)
            if at >= hour:
                last_hour[name].add(status, ms)
        elif at >= week:
            before[name].add(status, ms)
        if at >= chart_start:
            per_day[(name, at.date())].add(status, ms)
    owed = backlog(now)
    out: dict[str, Figures] = {}
    for name in integrations:
        h, d, w = last_hour[name], last_day[name], before[name]
        depth, oldest = owed.get(name, (0, None))
        out[name] = Figures(
            integration=name,
            as_of=now,
            records_1h=h.records,
            errors_1h=h.errors,
            error_rate_1h=h.error_rate,
            p50_ms_1h=h.p(0.50),
            p95_ms_1h=h.p(0.95),
            records_24h=d.records,
            errors_24h=d.errors,
            error_rate_24h=d.error_rate,
            p50_ms_24h=d.p(0.50),
            p95_ms_24h=d.p(0.95),
            records_per_day_7d=round(w.records / DAYS, 1),
            error_rate_7d=w.error_rate,
            p95_ms_7d=w.p(0.95),
            trend_vs_7d=trend(d.records, w.records / DAYS),
            queue_depth=depth,
            oldest_waiting_at=oldest,
            days=[
                DayFigures(
                    when,
                    per_day[(name, when)].records,
                    per_day[(name, when)].error_rate,
                    per_day[(name, when)].p(0.50),
                    per_day[(name, when)].p(0.95),
                )
                for when in _days(now)
            ],
        )
    return out
