"""`test-connections`: a cheap authenticated read at every enabled integration, hourly."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.events import emit_event

from connectors.endpoint import NotConfigured
from connectors.http import ConnectorError
from connectors.registry import CONNECTORS, build_connector
from ennu import circuit
from ennu.audit import audited_run
from ennu.secrets import SecretUnavailable
from ennu.settings import get_settings
from flows.ops_alert import ops_alert
from mappings.routing import routing_table
from tasks.status import CLINICAL_INTEGRATION, clinical_warnings


@flow(name="test-connections", log_prints=False)
def test_connections() -> list[dict[str, str | int | bool | None]]:
    """Check each integration; failures count toward its circuit, and an opened circuit raises an alert.
    A clinical path with no provider channel is a failed check and alerts the operators."""
    # Started by hand from the Prefect UI: audited; the schedule's runs are not (ennu/audit.py).
    with audited_run("test", None):
        logger = get_run_logger()
        table = routing_table(get_settings().mappings_dir)
        rows: list[dict[str, str | int | bool | None]] = []
        for name, config in sorted(table.integrations.items()):
            if not config.enabled or name not in CONNECTORS:
                continue
            try:
                connector = build_connector(name, rate_limited=False)
            except (NotConfigured, SecretUnavailable) as exc:  # production without credentials, a failed read
                rows.append({"integration": name, "ok": False, "detail": exc.reason, "latency_ms": None})
                logger.error("%s: not tested (%s)", name, exc.reason)
                continue
            try:
                check = connector.test_connection()
                circuit.record_success(name)
                rows.append(
                    {"integration": name, "ok": True, "detail": check.detail, "latency_ms": check.latency_ms}
                )
            except ConnectorError as exc:
                opened = circuit.record_failure(name, exc.reason)
                rows.append({"integration": name, "ok": False, "detail": exc.reason, "latency_ms": None})
                suffix = "; circuit opened" if opened else ""
                logger.error("%s: connection test failed (%s)%s", name, exc.reason, suffix)
                if opened:
                    emit_event(
                        event="ennu.integration.circuit-opened",
                        resource={"prefect.resource.id": f"ennu.integration.{name}"},
                        payload={"reason": exc.reason},
                    )
            finally:
                connector.close()
        for warning in clinical_warnings(table):
            rows.append(
                {"integration": "provider channels", "ok": False, "detail": warning, "latency_ms": None}
            )
            logger.error("%s", warning)
            ops_alert(kind="no-provider-channel", subject=f"ennu.integration.{CLINICAL_INTEGRATION}")
    create_table_artifact(key="connection-tests", table=rows, description="Connection test per integration")
    return rows
