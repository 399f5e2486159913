"""`performance`: every hour, each integration's p50/p95 latency, volume and error rate of the hour.

Kept twice, both in Prefect: a table artifact `integrations-performance` (one per run, so the runs list
is the history) and one `ennu.integration.performance` event per integration (the event feed, and
something an automation can watch). Counts and milliseconds only.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.events import emit_event

from ennu.models import utcnow
from ennu.performance import figures
from flows.ops_alert import INTEGRATION_PREFIX
from tasks.status import integration_names


@flow(name="performance", log_prints=False)
def performance() -> list[dict[str, str | int | float | None]]:
    """Record the last hour's performance per integration."""
    now = utcnow()
    table: list[dict[str, str | int | float | None]] = []
    for name, fig in figures(integration_names(), now).items():
        row: dict[str, str | int | float | None] = {
            "integration": name,
            "records_1h": fig.records_1h,
            "error_rate_1h": fig.error_rate_1h,
            "p50_ms_1h": fig.p50_ms_1h,
            "p95_ms_1h": fig.p95_ms_1h,
            "p95_ms_7d": fig.p95_ms_7d,
            "queue_depth": fig.queue_depth,
        }
        table.append(row)
        emit_event(
            "ennu.integration.performance",
            resource={"prefect.resource.id": f"{INTEGRATION_PREFIX}{name}"},
            payload={k: v for k, v in row.items() if k != "integration"},
        )
    create_table_artifact(
        key="integrations-performance",
        table=table,
        description=f"The hour to {now:%Y-%m-%d %H:%M} UTC: p50/p95 latency, records and error rate",
    )
    return table
