"""`ops-alert`: tell the operators, in Slack or Teams, that a flow run failed or a circuit opened.

Started by Prefect automations (see `deployments/catalogue.py`): a failed, crashed or timed-out run of any
deployment tagged `ennu`, and the `ennu.integration.circuit-opened` event of `test-connections`; and called
directly when critical results have no provider channel (`biomarker-updated`, `test-connections`). The notice
names the flow, the run and its state with a link to the Prefect UI; never a message, a parameter or a
value. The channels are the chat integrations enabled in `mappings/routing.yaml`; with none enabled the
alert is still a markdown artifact and an error line in the run's log.
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_UI_URL

from connectors.http import ConnectorError
from connectors.notices import NoticeConnector
from connectors.registry import build_connector
from ennu.status import NO_PROVIDER_CHANNEL
from tasks.alert import enabled_alert_channels

FLOW_RUN_PREFIX = "prefect.flow-run."
INTEGRATION_PREFIX = "ennu.integration."


def describe_flow_run(resource_id: str) -> tuple[str, str]:
    """(title, text) for a failed run: flow and run names, state, UI link; nothing the run carried."""
    run_id = UUID(resource_id.removeprefix(FLOW_RUN_PREFIX))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        flow_name = client.read_flow(run.flow_id).name
    state = (run.state.name if run.state is not None else None) or "unknown"
    ui = PREFECT_UI_URL.value()
    link = f"{ui}/runs/flow-run/{run_id}" if ui else f"flow run {run_id}"
    return f"ENNU flow run {state.lower()}", f"{flow_name} / {run.name} ended {state}. {link}"


@flow(name="ops-alert", log_prints=False)
def ops_alert(kind: str, subject: str, detail: str = "") -> dict[str, str]:
    """Send one operator notice.

    Args:
        kind: "flow-run-failed" (subject: the flow run's resource id), "circuit-opened" (subject:
            `ennu.integration.<name>`, detail: the failure's code) or "no-provider-channel" (subject:
            `ennu.integration.epic_fhir`, detail: a count such as "2 critical results").
    """
    logger = get_run_logger()
    if kind == "flow-run-failed":
        title, text = describe_flow_run(subject)
    elif kind == "circuit-opened":
        integration = subject.removeprefix(INTEGRATION_PREFIX)
        title = "ENNU integration paused"
        text = f"{integration}: circuit opened after repeated failures ({detail or 'no reason given'})."
    elif kind == "no-provider-channel":
        title = f"ENNU: {NO_PROVIDER_CHANNEL}"
        text = (
            f"{detail or 'Critical results'}: no Slack or Teams route of biomarker.updated is enabled in "
            "mappings/routing.yaml, so no care team is told about critical results. Enable one."
        )
    else:
        raise ValueError(f"unknown alert kind {kind!r}")
    outcomes: dict[str, str] = {}
    for channel in enabled_alert_channels():
        connector = build_connector(channel, rate_limited=False)
        assert isinstance(connector, NoticeConnector)
        try:
            connector.send(title, text)
            outcomes[channel] = "sent"
        except ConnectorError as exc:
            outcomes[channel] = f"failed: {exc.reason}"
        finally:
            connector.close()
    if not outcomes:
        logger.error("no alert channel enabled (slack or teams in routing.yaml): %s", title)
    create_markdown_artifact(
        key="ops-alert",
        markdown=f"### {title}\n\n{text}\n\nChannels: {outcomes or 'none enabled'}",
        description="Operator alert",
    )
    return outcomes
