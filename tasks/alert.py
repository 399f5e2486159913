"""Alert: the chat channels operator alerts use, and the check that critical results reach a care team."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from ennu.settings import get_settings
from ennu.status import NO_PROVIDER_CHANNEL, provider_channels
from mappings.routing import routing_table
from tasks.extract import extract_records

ALERT_CHANNELS = ("slack", "teams")


def enabled_alert_channels() -> list[str]:
    """The chat channels enabled in routing.yaml: where operator alerts go."""
    table = routing_table(get_settings().mappings_dir)
    return [c for c in ALERT_CHANNELS if c in table.integrations and table.integrations[c].enabled]


@task(name="provider-channel-check", cache_policy=NONE)
def unnotified_critical_results(event_type: str, event_ids: list[str]) -> int:
    """How many critical results of these events reached no care team because no provider channel is
    enabled (0 whenever one is: the usual case costs no read). Each care-team notice itself is a delivery
    of the biomarker.updated routes to slack and teams (routing.yaml), not of this check."""
    if provider_channels(routing_table(get_settings().mappings_dir)):
        return 0
    from tasks.route_filters import critical_biomarker  # connectors and mappings; loaded when needed

    frame = extract_records(event_type, event_ids).frame
    count = int(critical_biomarker(frame).sum()) if len(frame) else 0
    if count:
        get_run_logger().error("%d critical results: %s", count, NO_PROVIDER_CHANNEL)
    return count
