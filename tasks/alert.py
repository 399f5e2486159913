"""Alert: critical biomarker results to the care team's channels, without values or names."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from connectors.fhir_observations import critical_alerts
from connectors.http import ConnectorError
from connectors.notices import NoticeConnector
from ennu.models import SyncStatus
from ennu.settings import get_settings
from mappings import apply_mapping, load_all_mappings
from mappings.routing import routing_table
from tasks.push import connector_for, to_records
from tasks.record import SyncEntry

ALERT_CHANNELS = ("slack", "teams")


def enabled_alert_channels() -> list[str]:
    """The chat channels enabled in routing.yaml: where critical results and operator alerts go."""
    table = routing_table(get_settings().mappings_dir)
    return [c for c in ALERT_CHANNELS if c in table.integrations and table.integrations[c].enabled]


@task(name="alert-critical", cache_policy=NONE, retries=2, retry_delay_seconds=[5, 30])
def alert_critical(frame: pd.DataFrame) -> list[SyncEntry]:
    """One notice per critical result to every enabled channel; returns the outcomes for the sync log."""
    settings = get_settings()
    mapping = load_all_mappings(settings.mappings_dir).get(("biomarker.updated", "epic_fhir"))
    if mapping is None or frame.empty:
        return []
    alerts = critical_alerts(to_records(apply_mapping(mapping, frame)))
    channels = enabled_alert_channels()
    entries: list[SyncEntry] = []
    event_of = dict(zip(frame["biomarker.id"].astype(int).astype(str), frame["event.id"], strict=False))
    for alert in alerts:
        event_id = event_of.get(alert.record_key.rsplit(":", 1)[-1])
        for channel in channels:
            connector = connector_for(channel)
            assert isinstance(connector, NoticeConnector)
            try:
                connector.send("Critical result", alert.text)
                status, error = SyncStatus.CREATED, None
            except ConnectorError as exc:
                status, error = SyncStatus.FAILED, exc.reason
            entries.append(
                SyncEntry(channel, "alerts", alert.record_key, event_id, alert.user_id, status, error=error)
            )
    get_run_logger().info("%d critical results, %d notices", len(alerts), len(entries))
    return entries
