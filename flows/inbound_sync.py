"""`inbound-sync`: hourly, what changed at HubSpot and Salesforce since the last watermark, back to the host.

Each inbound half in the mappings (see `mappings/inbound.py`: a CRM's people, HubSpot's deals of health
goals) is asked for records changed since its watermark, kept in the Prefect Variable
`ennu_inbound_watermark_<integration>` (people) or `ennu_inbound_watermark_<integration>_<object>`
(`..._hubspot_deals`). HubSpot's webhooks bring the same changes in seconds; this is their safety net. The
watermark moves
to the newest change seen only after the changes are applied, so a failed run is simply repeated; each run
re-reads a short overlap before the watermark because applying a change twice changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.variables import Variable

from ennu import circuit
from ennu.models import utcnow
from ennu.settings import get_settings
from mappings.inbound import inbound_mappings
from mappings.routing import routing_table
from mappings.schema import InboundMapping
from tasks.inbound import InboundSummary, apply_changes, fetch_changes, withdraw_marketing
from tasks.record import current_flow_run_id, write_sync_log
from tasks.status import disabled_reason


def watermark_variable(integration: str, records: str | None = None) -> str:
    """The Variable of an inbound half's watermark: the people's half by its CRM's name, another half (the
    vendor object `records`, e.g. HubSpot's deals) with the object's name after it."""
    return f"ennu_inbound_watermark_{integration}" + (f"_{records}" if records else "")


def half_watermark(inbound: InboundMapping, integration: str) -> str:
    return watermark_variable(integration, None if inbound.record == "user" else inbound.object)


def read_watermark(variable: str) -> datetime | None:
    stored = Variable.get(variable, default=None)
    return datetime.fromisoformat(str(stored)) if stored else None


@flow(name="inbound-sync", log_prints=False)
def inbound_sync(integrations: list[str] | None = None) -> list[dict[str, str | int | None]]:
    """Pull CRM-side changes (lifecycle stage, owner, opt-outs) into the host's users, and the CRM's view of
    goals' deals (stage, owner) into their health goals.

    An e-mail opt-out at a CRM also unsubscribes the person at the marketing destinations (Mailchimp).

    Args:
        integrations: only these CRMs (default: every enabled one whose mappings have an inbound half).
    """
    logger = get_run_logger()
    settings = get_settings()
    table = routing_table(settings.mappings_dir)
    rows: list[dict[str, str | int | None]] = []
    for (name, _), mapping in sorted(inbound_mappings(settings.mappings_dir).items()):
        config = table.integrations.get(name)
        if integrations is not None and name not in integrations:
            continue
        if config is None or not config.enabled or not circuit.allows_calls(name):
            logger.info("%s: skipped (disabled or circuit open)", name)
            continue
        unavailable = disabled_reason(name)
        if unavailable is not None:  # production without credentials
            logger.info("%s: skipped (%s)", name, unavailable)
            continue
        assert mapping.inbound is not None
        started = utcnow()
        variable = half_watermark(mapping.inbound, name)
        previous = read_watermark(variable)
        since = (
            previous - timedelta(seconds=settings.inbound_overlap_seconds)
            if previous is not None
            else started - timedelta(hours=settings.inbound_initial_lookback_hours)
        )
        changes = fetch_changes(name, mapping.inbound, since)
        summary: InboundSummary = apply_changes(name, mapping.inbound, changes)
        if summary.withdrawn_marketing:
            write_sync_log(withdraw_marketing(summary.withdrawn_marketing), current_flow_run_id())
        newest = max((c.modified_at for c in changes), default=None)
        watermark = max(filter(None, [previous, newest]), default=since)
        Variable.set(variable, watermark.isoformat(), overwrite=True)
        summary.since, summary.watermark = since.isoformat(), watermark.isoformat()
        logger.info(
            "%s %s: %d changed records, %d updated, %d unchanged, %d not ours",
            name,
            mapping.inbound.object,
            summary.fetched,
            summary.applied,
            summary.unchanged,
            summary.unmatched,
        )
        rows.append(summary.row())
    create_table_artifact(
        key="inbound-sync",
        table=rows,
        description="CRM changes applied to the host's users and goals (counts only)",
    )
    return rows
