"""Serve every deployment from this process: event triggers for the event flows, schedules for maintenance."""

from __future__ import annotations

import argparse
from typing import Any

from prefect import serve
from prefect.events import DeploymentEventTrigger

from ennu.events import EVENT_TYPES
from flows.bulk_sync import bulk_sync
from flows.cleanup import cleanup
from flows.daily_stats import daily_stats
from flows.drain import drain
from flows.registry import EVENT_FLOWS
from flows.test_connections import test_connections
from flows.webhook_received import webhook_received


def event_trigger(event_type: str) -> DeploymentEventTrigger:
    """Run the flow for each `ennu.<type>` event, with the event id as the run's only input."""
    return DeploymentEventTrigger(
        name=f"on {EVENT_TYPES[event_type].prefect_event}",
        expect={EVENT_TYPES[event_type].prefect_event},
        parameters={"event_ids": ["{{ event.payload.event_id }}"]},
    )


def webhook_trigger() -> DeploymentEventTrigger:
    return DeploymentEventTrigger(
        name="on ennu.webhook.*",
        expect={"ennu.webhook.*"},
        parameters={"receipt_ids": ["{{ event.payload.receipt_id }}"]},
    )


def build_deployments() -> list[Any]:
    """Every deployment of the project, as `prefect.yaml` declares them for workers."""
    deployments = [
        event_flow.to_deployment(
            name="default",
            triggers=[event_trigger(event_type)],
            tags=["ennu", "event"],
            description=f"Triggered by {EVENT_TYPES[event_type].prefect_event}.",
        )
        for event_type, event_flow in EVENT_FLOWS.items()
    ]
    deployments += [
        webhook_received.to_deployment(
            name="default",
            triggers=[webhook_trigger()],
            tags=["ennu", "event"],
            description="Triggered by every stored vendor webhook.",
        ),
        drain.to_deployment(
            name="hourly",
            cron="0 * * * *",
            tags=["ennu", "maintenance"],
            description="Every pending or deferred event, in batches.",
        ),
        test_connections.to_deployment(
            name="hourly",
            cron="5 * * * *",
            tags=["ennu", "maintenance"],
            description="A cheap authenticated read at every integration.",
        ),
        cleanup.to_deployment(
            name="daily",
            cron="30 3 * * *",
            tags=["ennu", "maintenance"],
            description="Retention of the sync log, webhook receipts and settled outbox events.",
        ),
        daily_stats.to_deployment(
            name="daily",
            cron="0 6 * * *",
            tags=["ennu", "maintenance"],
            description="Sync counts, error rates, durations and trends per integration.",
        ),
        bulk_sync.to_deployment(
            name="on-demand",
            tags=["ennu", "maintenance"],
            description="Every record of a kind to one or more destinations.",
        ),
    ]
    return deployments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=4, help="at most this many flow runs at once")
    args = parser.parse_args()
    serve(*build_deployments(), limit=args.limit)


if __name__ == "__main__":
    main()
