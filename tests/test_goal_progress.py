"""Goal progress end to end: `health_goal.progressed` moves the HubSpot deal's progress and the Salesforce
Opportunity's stage and probability, from the host's value at send time, and only while the goal is active."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from connectors.hubspot.properties import property_definitions
from ennu.db import session_scope
from ennu.events import HOST_EVENT_TYPES
from ennu.models import HealthGoal, OutboxEvent, SyncLog
from ennu.settings import get_settings
from flows.health_goal_completed import health_goal_completed
from flows.health_goal_created import health_goal_created
from flows.health_goal_progressed import health_goal_progressed
from flows.registry import EVENT_FLOWS
from intake.app import create_app
from tests.factories import add_event, add_goal, add_person

pytestmark = pytest.mark.usefixtures("prefect_server")
CRMS = ("hubspot", "salesforce")


def set_progress(goal_id: int, percent: int, *, status: str | None = None) -> None:
    with session_scope() as session:
        goal = session.get(HealthGoal, goal_id)
        assert goal is not None
        goal.progress_percent = percent
        if status is not None:
            goal.status = status
            goal.completed_at = datetime(2026, 11, 20, tzinfo=UTC)


def progressed(user_id: int, goal_id: int, event_id: str) -> str:
    return add_event("health_goal.progressed", user_id, goal_id, event_id=event_id)


def crm_state(sandbox: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    (deal,) = sandbox.objects("hubspot", "deals")
    (opportunity,) = sandbox.objects("salesforce", "Opportunity")
    return deal["properties"], opportunity


def outcomes(event_id: str) -> list[tuple[str, str]]:
    with session_scope() as session:
        query = select(SyncLog.connector, SyncLog.status).where(
            SyncLog.event_id == event_id, SyncLog.connector.in_(CRMS)
        )
        return sorted(session.execute(query).tuples())


def test_progress_moves_the_deal_and_the_opportunity_stage(database: str, sandbox: Any) -> None:
    user_id = add_person()
    goal_id = add_goal(user_id, kind="improve_sleep")
    health_goal_created(event_ids=[add_event("health_goal.created", user_id, goal_id)])
    set_progress(goal_id, 60)

    event_id = progressed(user_id, goal_id, "progress-1")
    health_goal_progressed(event_ids=[event_id])

    deal, opportunity = crm_state(sandbox)
    assert (
        float(deal["ennu_goal_progress"]) == 60 and deal["dealstage"] == "appointmentscheduled"
    )  # still open
    assert (opportunity["StageName"], opportunity["Probability"]) == ("Value Proposition", 60)
    assert opportunity["Name"] == "ENNU goal: improve sleep"
    assert outcomes(event_id) == [("hubspot", "updated"), ("salesforce", "updated")]

    set_progress(goal_id, 85)
    health_goal_progressed(event_ids=[progressed(user_id, goal_id, "progress-2")])
    deal, opportunity = crm_state(sandbox)
    assert float(deal["ennu_goal_progress"]) == 85
    assert (opportunity["StageName"], opportunity["Probability"]) == ("Negotiation/Review", 85)
    # The deal's own property is a number, created with ENNU's others before HubSpot takes a write of it.
    definitions = property_definitions(get_settings().mappings_dir)["deals"]
    (definition,) = [d for d in definitions if d["name"] == "ennu_goal_progress"]
    assert (definition["type"], definition["fieldType"]) == ("number", "number")


def test_an_older_progress_event_delivered_late_never_puts_back_an_older_value(
    database: str, sandbox: Any
) -> None:
    user_id = add_person()
    goal_id = add_goal(user_id)
    set_progress(goal_id, 30)
    older = progressed(user_id, goal_id, "progress-old")
    set_progress(goal_id, 70)
    newer = progressed(user_id, goal_id, "progress-new")

    health_goal_progressed(event_ids=[newer])
    health_goal_progressed(event_ids=[older])  # arrives last

    deal, opportunity = crm_state(sandbox)
    assert float(deal["ennu_goal_progress"]) == 70
    assert (opportunity["StageName"], opportunity["Probability"]) == ("Value Proposition", 70)
    # The late event read the host's newer value, which both CRMs already had: nothing was sent again.
    assert outcomes(older) == [("hubspot", "unchanged"), ("salesforce", "unchanged")]


def test_progress_after_completion_leaves_the_won_deal_alone(database: str, sandbox: Any) -> None:
    user_id = add_person()
    goal_id = add_goal(user_id)
    set_progress(goal_id, 90)
    late = progressed(user_id, goal_id, "progress-late")
    set_progress(goal_id, 100, status="completed")
    health_goal_completed(event_ids=[add_event("health_goal.completed", user_id, goal_id)])
    sent = {crm: sandbox.request_count(crm) for crm in CRMS}

    health_goal_progressed(event_ids=[late])

    deal, opportunity = crm_state(sandbox)
    assert deal["dealstage"] == "closedwon" and opportunity["StageName"] == "Closed Won"
    assert {crm: sandbox.request_count(crm) for crm in CRMS} == sent  # not a request
    assert outcomes(late) == [("hubspot", "skipped"), ("salesforce", "skipped")]


def test_a_progress_outside_0_to_100_is_rejected_with_the_field_never_sent(
    sqlite_database: str, sandbox: Any
) -> None:
    user_id = add_person()
    goal_id = add_goal(user_id, progress=140)

    event_id = progressed(user_id, goal_id, "progress-odd")
    health_goal_progressed(event_ids=[event_id])

    with session_scope() as session:
        query = select(SyncLog).where(SyncLog.event_id == event_id, SyncLog.connector.in_(CRMS))
        rows = session.execute(query).scalars().all()
        outcomes = sorted((r.connector, r.status, r.error) for r in rows)
    # The field and the expectation it failed, never the value.
    assert outcomes == [
        ("hubspot", "rejected", "ennu_goal_progress: expect_column_values_to_be_between"),
        ("salesforce", "rejected", "Probability: expect_column_values_to_be_between"),
    ]
    assert sandbox.objects("hubspot", "deals") == [] and sandbox.objects("salesforce", "Opportunity") == []


@pytest.fixture()
def intake(database: str) -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def test_the_intake_accepts_progress_events_and_a_flow_carries_them(intake: TestClient) -> None:
    assert "health_goal.progressed" in HOST_EVENT_TYPES
    assert EVENT_FLOWS["health_goal.progressed"].name == "health-goal-progressed"
    body = {
        "id": "progress-intake-1",
        "type": "health_goal.progressed",
        "occurred_at": "2026-11-29T10:00:00Z",
        "subject": 1,
        "resource": "7",
        "payload": {"progress_percent": 40},  # the hub reads the host's column, not the event
    }
    answer = intake.post("/events", json=body, headers={"Authorization": "Bearer dev-intake-token"})
    assert answer.status_code == 202 and answer.json()["dropped_payload_keys"] == 1
    with session_scope() as session:
        stored = session.get(OutboxEvent, "progress-intake-1")
        assert stored is not None and stored.type == "health_goal.progressed" and stored.payload == {}
