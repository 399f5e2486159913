"""`health-report`: once a day, a markdown artifact `health-report`: the readiness checks, the standing
problems (clinical path, open circuits) and each integration's last 24 h against the week before."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from ennu.models import utcnow
from tasks.readiness import run_checks
from tasks.status import all_statuses, health_problems


@flow(name="health-report", log_prints=False)
def health_report() -> dict[str, list[str]]:
    """Write today's health report; returns the failing checks and the problems (names only)."""
    now = utcnow()
    checks = run_checks()
    problems = health_problems()
    failing = [c.name for c in checks if not c.ok]
    lines = [
        f"# Health report, {now:%Y-%m-%d %H:%M} UTC",
        "",
        "**Ready**" if not failing else f"**Not ready**: {', '.join(failing)}",
        "",
        "| check | ok | detail |",
        "|---|---|---|",
        *[f"| {c.name} | {'yes' if c.ok else 'NO'} | {c.detail} |" for c in checks],
        "",
        "## Standing problems",
        "",
        *([f"- {p}" for p in problems] or ["- none"]),
        "",
        "## Integrations, last 24 h",
        "",
        "| integration | records | error rate | p50 ms | p95 ms | vs 7 d | dead letters |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in all_statuses():
        if not s.enabled:
            continue
        records = sum(n for k, n in s.counts_24h.items() if k not in ("skipped", "received"))
        rate = "-" if s.error_rate_24h is None else f"{s.error_rate_24h:.1%}"
        lines.append(
            f"| {s.integration} | {records} | {rate} | {s.p50_ms_24h or '-'} | {s.p95_ms_24h or '-'} "
            f"| {s.trend_vs_7d} | {s.deliveries.get('failed', 0)} |"
        )
    create_markdown_artifact(
        key="health-report",
        markdown="\n".join(lines),
        description="Ready" if not failing else f"Not ready: {', '.join(failing)}",
    )
    return {"failing": failing, "problems": problems}
