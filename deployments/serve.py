"""Serve every deployment from this process: event triggers for the event flows, schedules for maintenance."""

from __future__ import annotations

import argparse
from typing import Any

from prefect import serve
from prefect.events import DeploymentEventTrigger

from ennu.events import EVENT_TYPES
from flows.drain import drain
from flows.registry import EVENT_FLOWS


def event_trigger(event_type: str) -> DeploymentEventTrigger:
    """Run the flow for each `ennu.<type>` event, with the event id as the run's only input."""
    return DeploymentEventTrigger(
        name=f"on {EVENT_TYPES[event_type].prefect_event}",
        expect={EVENT_TYPES[event_type].prefect_event},
        parameters={"event_ids": ["{{ event.payload.event_id }}"]},
    )


def build_deployments() -> list[Any]:
    deployments = [
        event_flow.to_deployment(
            name="default",
            triggers=[event_trigger(event_type)],
            tags=["ennu", "event"],
            description=f"Triggered by {EVENT_TYPES[event_type].prefect_event}.",
        )
        for event_type, event_flow in EVENT_FLOWS.items()
    ]
    deployments.append(
        drain.to_deployment(
            name="hourly",
            cron="0 * * * *",
            tags=["ennu", "maintenance"],
            description="Every pending or deferred event, in batches.",
        )
    )
    return deployments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=4, help="at most this many flow runs at once")
    args = parser.parse_args()
    serve(*build_deployments(), limit=args.limit)


if __name__ == "__main__":
    main()
