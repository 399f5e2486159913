"""HubSpot deal changes end to end: a signed v3 batch of `deal.propertyChange` events → receipts → a delivery
worker → the goal's CRM view (stage, owner), newest first; our own stage coming back is no CRM change; a deal
won at HubSpot never completes the host's goal; the hourly poll reads deals as the safety net."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prefect.variables import Variable
from sqlalchemy import select

from connectors.hubspot import HubSpotConnector
from ennu.db import session_scope
from ennu.models import HealthGoal, InboundFieldVersion, SyncLog
from ennu.settings import get_settings
from flows.health_goal_completed import health_goal_completed
from flows.health_goal_created import health_goal_created
from flows.inbound_sync import inbound_sync, watermark_variable
from mappings.inbound import inbound_mappings
from mappings.loader import MappingError
from tests.engine_support import running_worker, wait_for
from tests.factories import add_event, add_goal, add_person
from tests.webhook_signing import hubspot_receipts, hubspot_v3_headers, intake_with

pytestmark = pytest.mark.usefixtures("prefect_server")
OPEN, WON = "appointmentscheduled", "closedwon"  # the stage ids the host sends (HubSpot's defaults)


@pytest.fixture()
def api(database: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with intake_with(monkeypatch) as client:
        yield client


def deal_change(event_id: int, deal_id: str, name: str, value: str, at_ms: int) -> dict[str, Any]:
    """One event of HubSpot's webhook batch, as HubSpot sends a deal's property change."""
    return {
        "eventId": event_id,
        "subscriptionId": 2346,
        "portalId": 62515,
        "appId": 98765,
        "occurredAt": at_ms,
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": int(deal_id),
        "propertyName": name,
        "propertyValue": value,
        "changeSource": "CRM_UI",
        "sourceId": "userId:4567",
    }


def deal_of_new_goal(sandbox: Any, event_id: str) -> tuple[int, str]:
    """A goal the host created and synced: its id and its HubSpot deal's."""
    user_id = add_person()
    goal_id = add_goal(user_id, kind="improve_sleep")
    health_goal_created(event_ids=[add_event("health_goal.created", user_id, goal_id, event_id=event_id)])
    [deal] = [
        d for d in sandbox.objects("hubspot", "deals") if d["properties"].get("ennu_goal_id") == str(goal_id)
    ]
    assert deal["properties"]["dealstage"] == OPEN
    return goal_id, str(deal["id"])


def host_goal(goal_id: int) -> HealthGoal:
    with session_scope() as session:
        goal = session.get(HealthGoal, goal_id)
        assert goal is not None
        session.expunge(goal)
        return goal


def deliver(api: TestClient, batch: list[dict[str, Any]], worker: str) -> dict[int, str]:
    """Post one signed batch and let a worker apply it: each event's outcome by its id."""
    body = json.dumps(batch).encode()
    answer = api.post("/webhooks/hubspot", content=body, headers=hubspot_v3_headers(body))
    assert answer.json()["new"] == len(batch)
    wanted = {e["eventId"] for e in batch}
    with running_worker(worker):
        wait_for(
            lambda: all(r.processed_at for n, r in hubspot_receipts().items() if n in wanted),
            "the batch applied",
        )
    return {n: r.status for n, r in hubspot_receipts().items() if n in wanted}


def received(goal_id: int) -> list[str | None]:
    with session_scope() as session:
        found = session.execute(
            select(SyncLog.remote_id).where(
                SyncLog.connector == "hubspot",
                SyncLog.status == "received",
                SyncLog.record_key == f"health_goal:{goal_id}",
            )
        )
        return list(found.scalars())


def test_staff_changes_to_a_deal_reach_its_goals_crm_view_newest_first_and_never_its_state(
    api: TestClient, sandbox: Any
) -> None:
    goal_id, deal_id = deal_of_new_goal(sandbox, "created-1")
    now = int(time.time() * 1000)
    outcomes = deliver(
        api,
        [
            deal_change(301, deal_id, "dealstage", WON, now - 5_000),  # won at HubSpot by the clinic
            deal_change(302, deal_id, "dealstage", "qualifiedtobuy", now - 60_000),  # older, sent after
            deal_change(303, deal_id, "hubspot_owner_id", "31415", now - 4_000),
            deal_change(304, deal_id, "dealname", "Sleep plan", now - 3_000),  # not the host's to take
            deal_change(305, "777777", "dealstage", "closedlost", now - 2_000),  # a deal we never wrote
        ],
        "hubspot-deals",
    )
    assert outcomes == {
        301: "applied",
        302: "stale-change",
        303: "applied",
        304: "not-mapped",
        305: "unmatched",
    }
    goal = host_goal(goal_id)
    assert (goal.crm_stage, goal.crm_owner_id) == (WON, "31415")
    # The host owns the goal: a deal won at the CRM neither completes it nor renames it.
    assert (goal.status, goal.completed_at, goal.kind) == ("active", None, "improve_sleep")
    assert received(goal_id) == [deal_id, deal_id]
    stored = hubspot_receipts()
    assert stored[304].payload == {"subscriptionType": "deal.propertyChange"}  # no name, no value
    assert stored[305].payload["propertyValue"] == "closedlost"  # kept: recorded, then found no goal
    with session_scope() as session:
        versions = session.execute(
            select(InboundFieldVersion.record, InboundFieldVersion.column).where(
                InboundFieldVersion.record_id == goal_id, InboundFieldVersion.record == "health_goal"
            )
        ).tuples()
        assert sorted(versions) == [("health_goal", "crm_owner_id"), ("health_goal", "crm_stage")]


def test_our_own_stage_coming_back_is_no_crm_change_and_clears_a_view_it_overwrote(
    api: TestClient, sandbox: Any
) -> None:
    goal_id, deal_id = deal_of_new_goal(sandbox, "created-2")
    now = int(time.time() * 1000)
    # HubSpot tells of our own create (the open stage): nothing for the host to learn.
    assert deliver(api, [deal_change(401, deal_id, "dealstage", OPEN, now - 30_000)], "echo-1") == {
        401: "own-value"
    }
    assert host_goal(goal_id).crm_stage is None
    assert received(goal_id) == []

    # The clinic marks the deal lost; later the host completes the goal and wins the deal, which HubSpot
    # echoes: the CRM now holds the host's stage, so its earlier view is gone.
    assert deliver(api, [deal_change(402, deal_id, "dealstage", "closedlost", now - 20_000)], "echo-2") == {
        402: "applied"
    }
    assert host_goal(goal_id).crm_stage == "closedlost"
    with session_scope() as session:
        completed = session.get(HealthGoal, goal_id)
        assert completed is not None
        completed.status, user_id = "completed", completed.user_id
    health_goal_completed(
        event_ids=[add_event("health_goal.completed", user_id, goal_id, event_id="completed-2")]
    )
    [deal] = [d for d in sandbox.objects("hubspot", "deals") if str(d["id"]) == deal_id]
    assert deal["properties"]["dealstage"] == WON
    assert deliver(api, [deal_change(403, deal_id, "dealstage", WON, now - 10_000)], "echo-3") == {
        403: "own-value"
    }
    goal = host_goal(goal_id)
    assert (goal.crm_stage, goal.status) == (None, "completed")
    # A late echo of the create (older than the clinic's change) is stale, not a second clearing.
    assert deliver(api, [deal_change(404, deal_id, "dealstage", OPEN, now - 25_000)], "echo-4") == {
        404: "stale-change"
    }
    assert received(goal_id) == [deal_id, deal_id]  # the clinic's change and its clearing


def test_the_hourly_poll_reads_changed_deals_and_a_late_webhook_changes_nothing(
    api: TestClient, sandbox: Any
) -> None:
    Variable.unset(watermark_variable("hubspot"))
    Variable.unset(watermark_variable("hubspot", "deals"))
    goal_id, deal_id = deal_of_new_goal(sandbox, "created-3")
    hubspot = HubSpotConnector.from_settings(get_settings(), rate_limited=False)
    try:  # the clinic moves the deal on in HubSpot and gives it an owner; no webhook arrives
        hubspot.http.request(
            "PATCH",
            f"/crm/v3/objects/deals/{deal_id}",
            json={"properties": {"dealstage": "closedlost", "hubspot_owner_id": "27182"}},
        )
    finally:
        hubspot.close()
    rows = inbound_sync(integrations=["hubspot"])
    [deals] = [r for r in rows if r["object"] == "deals"]
    assert (deals["fetched"], deals["applied"], deals["unmatched"]) == (1, 1, 0)
    assert Variable.get(watermark_variable("hubspot", "deals")) == deals["watermark"]
    goal = host_goal(goal_id)
    assert (goal.crm_stage, goal.crm_owner_id, goal.status) == ("closedlost", "27182", "active")
    searches = [r for r in sandbox.requests("hubspot") if r["path"].endswith("/crm/v3/objects/deals/search")]
    assert len(searches) == 1

    # The webhook of an earlier change arrives late: the poll's newer value stays.
    late = deal_change(501, deal_id, "dealstage", "qualifiedtobuy", int(time.time() * 1000) - 600_000)
    assert deliver(api, [late], "deals-late") == {501: "stale-change"}
    assert host_goal(goal_id).crm_stage == "closedlost"
    # A second poll finds nothing newer than its watermark to change.
    again = next(r for r in inbound_sync(integrations=["hubspot"]) if r["object"] == "deals")
    assert again["applied"] == 0


def test_reading_back_the_deal_stage_needs_the_hosts_own_value_declared(tmp_path: Path) -> None:
    """The loop guard: `dealstage` is written by the deal mappings, so its inbound field must say what the
    host sends (our write coming back is then never the CRM's change); without it the mappings are refused."""
    root = Path(get_settings().mappings_dir)
    for path in root.glob("*/*.yaml"):
        target = tmp_path / path.parent.name / path.name
        target.parent.mkdir(exist_ok=True)
        target.write_text(path.read_text())
    halves = inbound_mappings(tmp_path)
    deals = halves[("hubspot", "deals")].inbound
    assert deals is not None and deals.record == "health_goal"
    created = tmp_path / "health_goal.created" / "hubspot.yaml"
    created.write_text(created.read_text().replace("      own_value: deal_stage\n", ""))
    with pytest.raises(MappingError, match=r"crm_stage: 'dealstage' is written by health_goal\.completed"):
        inbound_mappings(tmp_path)
