"""`ops-alert`: tell the operators, in Slack, Teams and by e-mail, that something needs them.

Started by Prefect automations (see `deployments/catalogue.py`): a failed, crashed or timed-out run of any
of our flows — the delivery workers' in-process batches included, matched by flow name since they have no
deployment — and the `ennu.integration.circuit-opened` event of `test-connections`; and called directly
by `integrations-dashboard` when an integration's error rate or its backlog passes its threshold, and when
critical results have no provider channel (`biomarker-updated`, `test-connections`). The notice names the
flow, the run, its state, the destinations whose deliveries failed (counts, from the sync log) and links
to the Prefect UI; never a message, a parameter or a value. With no channel enabled the alert is still a
markdown artifact and an error line in the run's log.
"""

from __future__ import annotations

import logging
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_UI_URL
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from connectors.endpoint import NotConfigured
from connectors.http import ConnectorError
from connectors.notices import NoticeConnector
from connectors.registry import build_connector
from ennu.db import session_scope
from ennu.models import SyncLog, SyncStatus
from ennu.secrets import SecretUnavailable
from tasks.alert import EMAIL, enabled_alert_channels, send_alert_email
from tasks.status import NO_PROVIDER_CHANNEL

logger = logging.getLogger(__name__)
FLOW_RUN_PREFIX = "prefect.flow-run."
INTEGRATION_PREFIX = "ennu.integration."
KINDS = (
    "flow-run-failed",
    "circuit-opened",
    "no-provider-channel",
    "error-rate",
    "backlog",
    "sms-undelivered",
)


def not_delivered_by(flow_run_id: UUID) -> str:
    """`Dead letters: hubspot/contacts 1. Rejected: stripe/customers 1.` from the run's sync-log rows."""
    with session_scope() as session:
        rows = session.execute(
            select(SyncLog.connector, SyncLog.object, SyncLog.status, func.count())
            .where(
                SyncLog.flow_run_id == str(flow_run_id),
                SyncLog.status.in_([SyncStatus.FAILED.value, SyncStatus.REJECTED.value]),
            )
            .group_by(SyncLog.connector, SyncLog.object, SyncLog.status)
            .order_by(SyncLog.connector, SyncLog.object)
        ).all()
    parts = []
    for status, label in ((SyncStatus.FAILED.value, "Dead letters"), (SyncStatus.REJECTED.value, "Rejected")):
        mine = [f"{c}/{o} {n}" for c, o, s, n in rows if s == status]
        if mine:
            parts.append(f"{label}: {', '.join(mine)}.")
    return " ".join(parts)


def describe_flow_run(resource_id: str) -> tuple[str, str]:
    """(title, text) for a failed run: flow and run names, state, what did not arrive where, UI link."""
    run_id = UUID(resource_id.removeprefix(FLOW_RUN_PREFIX))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        flow_name = client.read_flow(run.flow_id).name
    state = (run.state.name if run.state is not None else None) or "unknown"
    ui = PREFECT_UI_URL.value()
    link = f"{ui}/runs/flow-run/{run_id}" if ui else f"flow run {run_id}"
    try:
        outcomes = not_delivered_by(run_id)
    except SQLAlchemyError as exc:  # the hub database is away: the alert still goes, without the counts
        logger.warning("outcomes of the failed run not read: %s", type(exc).__name__)
        outcomes = "(what did not arrive could not be read from the hub database)"
    text = f"{flow_name} / {run.name} ended {state}. {outcomes + ' ' if outcomes else ''}{link}"
    return f"ENNU flow run {state.lower()}", text


def compose(kind: str, subject: str, detail: str) -> tuple[str, str]:
    """The notice's title and text for each kind of alert (names, counts and links only)."""
    integration = subject.removeprefix(INTEGRATION_PREFIX)
    if kind == "flow-run-failed":
        return describe_flow_run(subject)
    if kind == "circuit-opened":
        text = f"{integration}: circuit opened after repeated failures ({detail or 'no reason given'})."
        return "ENNU integration paused", text
    if kind == "error-rate":
        return f"ENNU: {integration} error rate over threshold", f"{integration}: {detail}."
    if kind == "backlog":
        return f"ENNU: {integration} backlog", f"{integration}: {detail}."
    if kind == "no-provider-channel":
        text = (
            f"{detail or 'Critical results'}: no Slack or Teams route of biomarker.updated is enabled in "
            "mappings/routing.yaml, so no care team is told about critical results. Enable one."
        )
        return f"ENNU: {NO_PROVIDER_CHANNEL}", text
    if kind == "sms-undelivered":
        return f"ENNU: {integration} message not delivered", f"{integration}: {detail}. Call the person."
    raise ValueError(f"unknown alert kind {kind!r}; known: {', '.join(KINDS)}")


def send(channel: str, title: str, text: str) -> str:
    """`sent`, or `failed: <code>` (a code or an exception's type, never its text)."""
    if channel == EMAIL:
        try:
            send_alert_email(title, text)
        except Exception as exc:  # SMTP refusals, an unreachable relay: the other channels still go
            return f"failed: {type(exc).__name__}"
        return "sent"
    try:
        connector = build_connector(channel, rate_limited=False)
    except (NotConfigured, SecretUnavailable) as exc:  # production without its webhook: the others still go
        return f"failed: {exc.reason}"
    assert isinstance(connector, NoticeConnector)
    try:
        connector.notify(title, text)
        return "sent"
    except ConnectorError as exc:
        return f"failed: {exc.reason}"
    finally:
        connector.close()


@flow(name="ops-alert", log_prints=False)
def ops_alert(kind: str, subject: str, detail: str = "") -> dict[str, str]:
    """Send one operator notice to every enabled channel.

    Args:
        kind: "flow-run-failed" (subject: the flow run's resource id), "circuit-opened" (subject:
            `ennu.integration.<name>`, detail: the failure's code), "error-rate" and "backlog" (subject:
            `ennu.integration.<name>`, detail: the figures against the threshold) or "no-provider-channel"
            (subject: `ennu.integration.epic_fhir`, detail: a count such as "2 critical results") or
            "sms-undelivered" (subject: `ennu.integration.twilio`, detail: which message and Twilio's code).
    """
    logger = get_run_logger()
    title, text = compose(kind, subject, detail)
    outcomes = {channel: send(channel, title, text) for channel in enabled_alert_channels()}
    if not outcomes:
        logger.error("no alert channel (slack or teams in routing.yaml, ENNU_ALERT_EMAIL_TO): %s", title)
    create_markdown_artifact(
        key="ops-alert",
        markdown=f"### {title}\n\n{text}\n\nChannels: {outcomes or 'none enabled'}",
        description="Operator alert",
    )
    return outcomes
