"""Every deployment of the project, once: what `deployments/serve.py` serves and `prefect.yaml` declares.

`python -m deployments.render` writes `deployments/prefect.yaml` from this table, and a test holds the
file equal to it, so the served and the worker-run deployments cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import Flow
from prefect.events import DeploymentEventTrigger
from prefect.events.schemas.events import ResourceSpecification

from ennu.events import EVENT_TYPES
from flows.bulk_sync import bulk_sync
from flows.cleanup import cleanup
from flows.daily_stats import daily_stats
from flows.dashboard import integrations_dashboard
from flows.drain import drain
from flows.health_report import health_report
from flows.inbound_sync import inbound_sync
from flows.ops_alert import ops_alert
from flows.performance import performance
from flows.registry import EVENT_FLOWS
from flows.replay import replay
from flows.test_connections import test_connections
from flows.webhook_received import webhook_received

EVENT_TAGS = ("ennu", "event")
MAINTENANCE_TAGS = ("ennu", "maintenance")
# Not tagged `ennu`: a failing alert must not raise an alert about itself.
ALERT_TAGS = ("ennu-ops",)
FAILED_STATES = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut")


@dataclass(frozen=True)
class DeploymentSpec:
    flow: Flow[..., Any]
    name: str
    description: str
    tags: tuple[str, ...]
    cron: str | None = None
    triggers: tuple[DeploymentEventTrigger, ...] = field(default=())

    @property
    def entrypoint(self) -> str:
        """`flows/drain.py:drain`, relative to the repository root."""
        module = self.flow.fn.__module__
        return f"{module.replace('.', '/')}.py:{self.flow.fn.__name__}"

    def to_deployment(self) -> Any:
        return self.flow.to_deployment(
            name=self.name,
            cron=self.cron,
            triggers=list(self.triggers) or None,
            tags=list(self.tags),
            description=self.description,
        )


def failure_trigger(watched: list[str]) -> DeploymentEventTrigger:
    """Any run of one of our flows that fails, crashes or times out — a deployment's run, a subflow, or a
    delivery worker's in-process batch (no deployment, no tags: it is known by its flow's name). A batch
    fails when deliveries became dead letters (tasks/run_state.py)."""
    return DeploymentEventTrigger(
        name="on a failed ennu flow run",
        expect=set(FAILED_STATES),
        match_related=ResourceSpecification(
            {"prefect.resource.role": "flow", "prefect.resource.name": watched}
        ),
        parameters={"kind": "flow-run-failed", "subject": "{{ event.resource.id }}"},
    )


def circuit_trigger() -> DeploymentEventTrigger:
    return DeploymentEventTrigger(
        name="on ennu.integration.circuit-opened",
        expect={"ennu.integration.circuit-opened"},
        parameters={
            "kind": "circuit-opened",
            "subject": "{{ event.resource.id }}",
            "detail": "{{ event.payload.reason }}",
        },
    )


def catalogue() -> list[DeploymentSpec]:
    # The delivery workers (engine/worker.py) run these flows in-process on claimed batches; the
    # deployments are how a data engineer re-runs a batch of event ids from the UI.
    specs = [
        DeploymentSpec(
            event_flow,
            "default",
            f"Carries {EVENT_TYPES[event_type].name} events (by id) to their destinations; the delivery "
            "workers run it on every batch, and a run from here re-runs the given events.",
            EVENT_TAGS,
        )
        for event_type, event_flow in EVENT_FLOWS.items()
    ]
    specs += [
        DeploymentSpec(
            webhook_received,
            "default",
            "Applies stored vendor webhooks (by receipt id); the delivery workers run it on every receipt.",
            EVENT_TAGS,
        ),
        DeploymentSpec(
            replay,
            "on-demand",
            "Dead letters (failed deliveries and receipts) offered again after a fix.",
            MAINTENANCE_TAGS,
        ),
        DeploymentSpec(
            drain,
            "hourly",
            "Retry everything now: every open delivery made due and carried, in batches.",
            MAINTENANCE_TAGS,
            "0 * * * *",
        ),
        DeploymentSpec(
            test_connections,
            "hourly",
            "A cheap authenticated read at every integration.",
            MAINTENANCE_TAGS,
            "5 * * * *",
        ),
        DeploymentSpec(
            inbound_sync,
            "hourly",
            "Changes made at HubSpot and Salesforce since the last watermark, back to the host's users.",
            MAINTENANCE_TAGS,
            "20 * * * *",
        ),
        DeploymentSpec(
            cleanup,
            "daily",
            "Retention of the sync log, webhook receipts and settled outbox events.",
            MAINTENANCE_TAGS,
            "30 3 * * *",
        ),
        DeploymentSpec(
            daily_stats,
            "daily",
            "Sync counts, error rates, durations and trends per integration.",
            MAINTENANCE_TAGS,
            "0 6 * * *",
        ),
        DeploymentSpec(
            bulk_sync, "on-demand", "Every record of a kind to one or more destinations.", MAINTENANCE_TAGS
        ),
        DeploymentSpec(
            integrations_dashboard,
            "every-5-minutes",
            "The integrations-dashboard artifact refreshed; error-rate and backlog thresholds alerted once.",
            MAINTENANCE_TAGS,
            "*/5 * * * *",
        ),
        DeploymentSpec(
            performance,
            "hourly",
            "The last hour's p50/p95 latency, volume and error rate per integration, recorded.",
            MAINTENANCE_TAGS,
            "10 * * * *",
        ),
        DeploymentSpec(
            health_report,
            "daily",
            "The readiness checks, standing problems and each integration's day, as a report artifact.",
            MAINTENANCE_TAGS,
            "15 6 * * *",
        ),
    ]
    # Every flow of ours alerts when it fails, but the alert itself (no alert about an alert).
    watched = sorted({spec.flow.name for spec in specs} | {f.name for f in EVENT_FLOWS.values()})
    specs += [
        DeploymentSpec(
            ops_alert,
            "default",
            "Tells the operators (Slack, Teams, e-mail) about a failed flow run or an opened circuit.",
            ALERT_TAGS,
            triggers=(failure_trigger(watched), circuit_trigger()),
        ),
    ]
    return specs
