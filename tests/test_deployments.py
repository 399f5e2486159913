"""The deployment catalogue: prefect.yaml is its rendering, and the operator alert says what failed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.events.schemas.events import ResourceSpecification

from deployments.catalogue import ALERT_TAGS, catalogue
from deployments.render import PREFECT_YAML, render
from devtools.routing import routing_copy
from ennu.events import EVENT_TYPES
from ennu.settings import reload_settings
from flows.ops_alert import ops_alert


def test_prefect_yaml_is_the_rendered_catalogue() -> None:
    assert PREFECT_YAML.read_text() == render(), "run: python -m deployments.render"


def test_every_event_type_and_maintenance_flow_has_a_deployment() -> None:
    specs = {(spec.flow.name, spec.name): spec for spec in catalogue()}
    for event_type in EVENT_TYPES.values():
        spec = specs[(event_type.flow_name, "default")]
        # The delivery workers run event flows in-process; no trigger starts a process per event.
        assert spec.triggers == ()
    alert = specs[("ops-alert", "default")]
    crons = {flow_name: spec.cron for (flow_name, _), spec in specs.items() if spec.cron}
    assert set(crons) == {
        "drain",
        "test-connections",
        "inbound-sync",
        "cleanup",
        "daily-stats",
        "integrations-dashboard",
        "performance",
        "health-report",
    }
    # Every flow of ours but the alert raises it when it fails: by flow name, since the delivery workers'
    # in-process batches have no deployment and no tags.
    (on_failure, _) = alert.triggers
    watched = on_failure.match_related
    assert isinstance(watched, ResourceSpecification) and watched["prefect.resource.role"] == ["flow"]
    names = set(watched["prefect.resource.name"])
    assert {t.flow_name for t in EVENT_TYPES.values()} <= names and "ops-alert" not in names
    assert "ennu" not in alert.tags and set(alert.tags) == set(ALERT_TAGS)  # no alert about an alert
    assert specs[("webhook-received", "default")].triggers == ()
    assert ("replay", "on-demand") in specs


@pytest.fixture()
def slack_enabled(tmp_path: Path) -> Iterator[None]:
    # Slack alone: Teams is on for the sandbox too, and this test counts the Slack notice.
    copy = routing_copy(tmp_path / "mappings", enable=["slack"], disable=["teams"])
    os.environ["ENNU_MAPPINGS_DIR"] = str(copy)
    reload_settings()
    yield
    os.environ.pop("ENNU_MAPPINGS_DIR")
    reload_settings()


@flow(name="failing-for-the-alert")
def failing(secret_looking_parameter: str) -> None:
    raise RuntimeError("boom")


@pytest.mark.usefixtures("prefect_server")
def test_a_failed_run_becomes_one_slack_notice_without_its_parameters(
    sandbox: Any, slack_enabled: None
) -> None:
    state = failing("jane.doe@example.com", return_state=True)
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)  # type: ignore[arg-type]
    outcome = ops_alert(kind="flow-run-failed", subject=f"prefect.flow-run.{run.id}")
    assert outcome == {"slack": "sent"}
    (message,) = sandbox.bodies("slack")
    text = str(message)
    assert "failing-for-the-alert" in text and run.name in text and "Failed" in text
    assert "jane.doe" not in text and "boom" not in text

    assert ops_alert(kind="circuit-opened", subject="ennu.integration.hubspot", detail="http 503") == {
        "slack": "sent"
    }
    assert "hubspot" in str(sandbox.bodies("slack")[-1])
