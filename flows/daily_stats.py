"""`daily-stats`: per integration, the last day's counts, error rate and durations against the week before."""

from __future__ import annotations

from datetime import datetime, timedelta
from statistics import median

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from sqlalchemy import select

from ennu.db import session_scope
from ennu.models import NOT_DELIVERY_ATTEMPTS, SyncLog, SyncStatus, as_utc, utcnow

ERRORS = {SyncStatus.FAILED.value, SyncStatus.REJECTED.value}


def window_stats(
    rows: list[tuple[str, str, int | None]], integration: str, days: float
) -> dict[str, float | int]:
    mine = [(status, ms) for name, status, ms in rows if name == integration]
    attempted = [s for s, _ in mine if s not in NOT_DELIVERY_ATTEMPTS]
    durations = sorted(ms for _, ms in mine if ms is not None)
    p95 = durations[min(len(durations) - 1, int(0.95 * len(durations)))] if durations else 0
    return {
        "synced_per_day": round(len(attempted) / days, 1),
        "error_rate": round(sum(1 for s in attempted if s in ERRORS) / len(attempted), 4)
        if attempted
        else 0.0,
        "median_ms": int(median(durations)) if durations else 0,
        "p95_ms": int(p95),
    }


def trend(now_value: float, before: float) -> str:
    if before == 0:
        return "new" if now_value else "flat"
    change = (now_value - before) / before
    return f"{change:+.0%}"


@flow(name="daily-stats", log_prints=False)
def daily_stats(as_of: datetime | None = None) -> list[dict[str, str | float | int]]:
    """The last 24 h against the 7 days before, per integration: a table and a markdown artifact."""
    end = as_utc(as_of) or utcnow()
    day_start, week_start = end - timedelta(days=1), end - timedelta(days=8)
    with session_scope() as session:
        rows = session.execute(
            select(SyncLog.connector, SyncLog.status, SyncLog.duration_ms, SyncLog.created_at).where(
                SyncLog.created_at >= week_start, SyncLog.created_at < end, SyncLog.connector != "hub"
            )
        ).all()
    day = [(c, s, d) for c, s, d, at in rows if as_utc(at) >= day_start]  # type: ignore[operator]
    week = [(c, s, d) for c, s, d, at in rows if as_utc(at) < day_start]  # type: ignore[operator]
    table: list[dict[str, str | float | int]] = []
    for integration in sorted({c for c, _, _ in day} | {c for c, _, _ in week}):
        today, before = window_stats(day, integration, 1), window_stats(week, integration, 7)
        table.append(
            {
                "integration": integration,
                **today,
                "synced_trend_vs_7d": trend(float(today["synced_per_day"]), float(before["synced_per_day"])),
                "error_rate_7d": before["error_rate"],
            }
        )
    create_table_artifact(
        key="daily-stats", table=table, description=f"Sync statistics to {end:%Y-%m-%d %H:%M} UTC"
    )
    lines = [f"# Integrations, 24 h to {end:%Y-%m-%d %H:%M} UTC", ""]
    for row in table:
        rate, rate_7d = float(row["error_rate"]), float(row["error_rate_7d"])
        lines.append(
            f"- **{row['integration']}**: {row['synced_per_day']} records "
            f"({row['synced_trend_vs_7d']} vs the 7-day average), "
            f"error rate {rate:.1%} (7 days: {rate_7d:.1%}), "
            f"median {row['median_ms']} ms, p95 {row['p95_ms']} ms"
        )
    create_markdown_artifact(key="daily-stats-summary", markdown="\n".join(lines) or "No syncs.")
    return table
