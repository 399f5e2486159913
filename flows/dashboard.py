"""`integrations-dashboard`: the markdown artifact `integrations-dashboard`, refreshed every few minutes.

Per integration: status, circuit, last success and error, queue depth and the longest wait of a due
delivery, 24 h counts and error rate, p50/p95 latency, the trend against the 7 days before, and a chart
of 7 days (served by the intake, linked signed). The figures are `GET /integrations/status`'s. Each
refresh also checks the alert thresholds (error rate over the last hour, backlog) and alerts once per
crossing.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from ennu.charts import chart_link
from ennu.models import utcnow
from ennu.performance import Figures, figures
from ennu.settings import get_settings
from flows.ops_alert import INTEGRATION_PREFIX, ops_alert
from tasks.status import IntegrationStatus, all_statuses, integration_names
from tasks.thresholds import Breach, breaches, news

ARTIFACT_KEY = "integrations-dashboard"
NONE = "-"  # no figure (nothing recorded)
COLUMNS = (
    "integration",
    "status",
    "circuit",
    "last success",
    "last error",
    "queue",
    "oldest waiting",
    "records 24 h",
    "errors 24 h",
    "error rate 24 h",
    "error rate 1 h",
    "p50 ms",
    "p95 ms",
    "records vs 7 d",
)


def _when(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    seconds = int((now - at).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{max(seconds, 0)} s ago"


def _rate(rate: float | None) -> str:
    return NONE if rate is None else f"{rate:.1%}"


def status_label(s: IntegrationStatus, over: set[str]) -> str:
    if not s.enabled:
        return "disabled"
    if s.circuit != "closed":
        return "paused (circuit)"
    problems = [kind for kind in ("error-rate", "backlog") if f"{kind}:{s.integration}" in over]
    return ", ".join(problems) if problems else "ok"


def row(s: IntegrationStatus, over: set[str], now: datetime) -> list[str]:
    counts = s.counts_24h
    records = sum(n for status, n in counts.items() if status not in ("skipped", "received"))
    errors = counts.get("failed", 0) + counts.get("rejected", 0)
    last_error = _when(s.last_error, now)
    return [
        s.integration,
        status_label(s, over),
        s.circuit,
        _when(s.last_success, now),
        last_error,
        str(s.pending),
        _when(s.oldest_waiting_at, now) if s.oldest_waiting_at else NONE,
        str(records),
        str(errors),
        _rate(s.error_rate_24h),
        _rate(s.error_rate_1h),
        NONE if s.p50_ms_24h is None else str(s.p50_ms_24h),
        NONE if s.p95_ms_24h is None else str(s.p95_ms_24h),
        f"{s.trend_vs_7d} ({s.records_per_day_7d}/day)",
    ]


def dashboard_markdown(
    statuses: list[IntegrationStatus], current: list[Breach], active: set[str], now: datetime
) -> str:
    """`active`: the integrations with a record in the last 7 days (the others get no chart)."""
    settings = get_settings()
    over = {b.key for b in current}
    lines = [
        f"# Integrations, {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Alerts: error rate over {settings.alert_error_rate:.1%} in the last hour (at least "
        f"{settings.alert_error_rate_min_records} records), a due delivery waiting over "
        f"{settings.alert_backlog_seconds} s. "
        + (f"Over now: {', '.join(sorted(over))}." if over else "Nothing over a threshold."),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row(s, over, now)) + " |" for s in statuses]
    reasons = [
        f"- **{s.integration}**, {_when(s.last_error, now)}: `{s.last_error_reason[:80]}`"
        for s in statuses
        if s.last_error and s.last_error_reason
    ]
    if reasons:
        lines += ["", "Last error per integration (field and expectation, or vendor code):", "", *reasons]
    lines += ["", "## Last 7 days: records, error rate, p50/p95 latency", ""]
    charted = [s for s in statuses if s.enabled and s.integration in active]
    # One paragraph: the UI sets the pictures side by side as far as the page is wide.
    stamp = now.timestamp()
    lines.append(" ".join(f"![{s.integration}]({chart_link(s.integration, stamp)})" for s in charted))
    quiet = [s.integration for s in statuses if s.enabled and s.integration not in active]
    if quiet:
        lines += ["", f"No records in 7 days: {', '.join(quiet)}."]
    lines += ["", "Counts only; why a record did not arrive is in each batch's `undelivered` artifact."]
    return "\n".join(lines)


def active_in(perf: dict[str, Figures]) -> set[str]:
    return {name for name, fig in perf.items() if any(day.records for day in fig.days)}


@flow(name="integrations-dashboard", log_prints=False)
def integrations_dashboard() -> dict[str, int]:
    """Refresh the `integrations-dashboard` artifact and alert on newly crossed thresholds."""
    now = utcnow()
    perf = figures(integration_names(), now)
    statuses = all_statuses(perf)
    current = breaches({s.integration: perf[s.integration] for s in statuses if s.enabled})
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=dashboard_markdown(statuses, current, active_in(perf), now),
        description=f"Integrations at {now:%H:%M} UTC: "
        + (f"{len(current)} over a threshold" if current else "nothing over a threshold"),
    )
    fresh = news(current)
    for breach in fresh:
        ops_alert(kind=breach.kind, subject=f"{INTEGRATION_PREFIX}{breach.integration}", detail=breach.detail)
    logger = get_run_logger()
    logger.info("%d integrations, %d over a threshold, %d newly", len(statuses), len(current), len(fresh))
    return {"integrations": len(statuses), "over": len(current), "alerted": len(fresh)}
