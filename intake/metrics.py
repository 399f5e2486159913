"""`GET /metrics`: the hub in the Prometheus text format, read from the hub database at each scrape.

Every figure comes from the sync log, the deliveries, the circuit breaker, the webhook receipts and the
worker heartbeats, so any replica of the intake answers the same and nothing is lost on a restart.
Labels are integration names and states, never a record. A viewer token is needed (Prometheus sends it
with `authorization: {credentials_file: ...}`): volumes per vendor are the clinic's business.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from ennu.circuit import circuit_state
from ennu.db import session_scope
from ennu.heartbeats import live_workers
from ennu.models import SyncLog, WebhookReceipt, utcnow
from ennu.performance import HUB, backlog
from ennu.settings import get_settings
from intake.audit import AUDIT_RESPONSES, AUDITED
from intake.auth import require_viewer
from intake.errors import error_responses

router = APIRouter(tags=["metrics"], dependencies=AUDITED, responses=AUDIT_RESPONSES)
# Seconds; a delivery's duration is the vendor's answer time for its batch.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _integrations() -> list[str]:
    from mappings.routing import routing_table

    return sorted(routing_table(get_settings().mappings_dir).integrations)


def latency_histograms() -> dict[str, tuple[list[int], float, int]]:
    """Per integration: cumulative counts per bucket (ms thresholds), sum of seconds, count."""
    bounds_ms = [int(b * 1000) for b in LATENCY_BUCKETS]
    columns = [func.sum(case((SyncLog.duration_ms <= ms, 1), else_=0)) for ms in bounds_ms]
    with session_scope() as session:
        rows = session.execute(
            select(SyncLog.connector, *columns, func.sum(SyncLog.duration_ms), func.count())
            .where(SyncLog.duration_ms.is_not(None), SyncLog.connector != HUB)
            .group_by(SyncLog.connector)
        ).all()
    out: dict[str, tuple[list[int], float, int]] = {}
    for row in rows:
        counts = [int(n or 0) for n in row[1 : 1 + len(bounds_ms)]]
        out[str(row[0])] = (counts, int(row[-2] or 0) / 1000, int(row[-1]))
    return out


class HubCollector(Collector):
    """Collects at scrape time; registered on a registry of its own (not the process-global one)."""

    def collect(self) -> Iterator[Any]:
        with session_scope() as session:
            outcomes = session.execute(
                select(SyncLog.connector, SyncLog.status, func.count())
                .where(SyncLog.connector != HUB)
                .group_by(SyncLog.connector, SyncLog.status)
            ).all()
            receipts = session.execute(
                select(WebhookReceipt.integration, WebhookReceipt.status, func.count()).group_by(
                    WebhookReceipt.integration, WebhookReceipt.status
                )
            ).all()
        deliveries = CounterMetricFamily(
            "ennu_deliveries",
            "Outcomes recorded in the sync log (one per record and destination), by integration and status.",
            labels=["integration", "status"],
        )
        for integration, status, n in outcomes:
            deliveries.add_metric([integration, status], int(n))
        yield deliveries

        latency = HistogramMetricFamily(
            "ennu_delivery_duration_seconds",
            "How long the vendor took to answer for a record's batch, by integration.",
            labels=["integration"],
        )
        for integration, (counts, total, count) in sorted(latency_histograms().items()):
            buckets = [(str(b), n) for b, n in zip(LATENCY_BUCKETS, counts, strict=True)]
            latency.add_metric([integration], [*buckets, ("+Inf", count)], total)
        yield latency

        now = utcnow()
        owed = backlog(now)
        depth = GaugeMetricFamily(
            "ennu_queue_depth", "Deliveries still owed (pending, deferred, unknown).", labels=["integration"]
        )
        oldest = GaugeMetricFamily(
            "ennu_oldest_waiting_seconds",
            "How long the longest-waiting due delivery has waited (0: none).",
            labels=["integration"],
        )
        circuit = GaugeMetricFamily(
            "ennu_circuit_open", "1 while the integration's circuit breaker is open.", labels=["integration"]
        )
        for integration in _integrations():
            n, since = owed.get(integration, (0, None))
            depth.add_metric([integration], n)
            oldest.add_metric([integration], (now - since).total_seconds() if since else 0.0)
            circuit.add_metric([integration], 1.0 if circuit_state(integration, now).open else 0.0)
        yield depth
        yield oldest
        yield circuit

        webhooks = CounterMetricFamily(
            "ennu_webhook_receipts",
            "Vendor webhooks stored (once per vendor event id), by integration and status.",
            labels=["integration", "status"],
        )
        for integration, status, n in receipts:
            webhooks.add_metric([integration, status], int(n))
        yield webhooks

        workers = GaugeMetricFamily("ennu_live_workers", "Delivery workers seen in the last 30 s.")
        workers.add_metric([], len(live_workers(now)))
        yield workers


def exposition() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector())
    return generate_latest(registry)


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(require_viewer)],
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        **error_responses(401, 403),
    },
)
def metrics() -> Response:
    """Deliveries by integration and status, latency histograms, queue depth, circuits, webhook receipts."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
