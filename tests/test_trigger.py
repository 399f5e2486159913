"""The path of `make up`: events posted to the intake API are carried by a delivery worker process, every
host event type; a failed deployment run raises the operators' alert through the served automation."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
)
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL

from ennu.db import session_scope
from ennu.events import EVENT_TYPES
from ennu.heartbeats import live_workers
from ennu.models import Appointment, Biomarker, OutboxEvent, User
from intake.app import create_app
from tests.engine_support import wait_for
from tests.factories import add_appointment, add_assessment, add_goal, add_person, zone_at_local_hour
from tests.tiers import e2e_fixture

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.e2e]
DEPLOYMENT = "assessment-completed/default"


@pytest.fixture(scope="module")
@e2e_fixture
def served_once(sqlite_url: str, sandbox_url: str, prefect_server: None) -> Iterator[None]:
    """`deployments.serve` for the module (a start costs 15-40 s), on the test database (emptied per test),
    with the operators' e-mail to the sandbox's SMTP stand-in."""
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "DATABASE_URL": sqlite_url,
        "ENNU_SANDBOX_URL": sandbox_url,
        "ENNU_ALERT_EMAIL_TO": "ops@example.org",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    process = subprocess.Popen([sys.executable, "-m", "deployments.serve"], env=env)
    try:
        wait_for(lambda: deployed(process), "the served deployments", timeout=180)
        wait_for(automation_exists, "the ops-alert automation", timeout=180)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture()
def served(served_once: None, sqlite_database: str) -> None:
    """The served deployments, and this test's empty tables in the database they use."""


def deployed(process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "deployments.serve exited"
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(DEPLOYMENT)
        except Exception:
            return False
    return True


def automation_exists() -> bool:
    with get_client(sync_client=True) as client:
        return any(a.name == "on a failed ennu flow run" for a in client.read_automations())


def post(api: TestClient, event_id: str, event_type: str, subject: int, resource: int | None = None) -> None:
    body = {"id": event_id, "type": event_type, "occurred_at": "2026-11-29T10:00:00Z", "subject": subject}
    if resource is not None:
        body["resource"] = str(resource)
    response = api.post("/events", headers={"Authorization": "Bearer dev-intake-token"}, json=body)
    assert response.status_code == 202, response.text


def settled(event_ids: list[str], timeout: float = 180) -> dict[str, str]:
    """Wait until the events are settled (done) or the generous ceiling is up; their statuses."""

    def statuses() -> dict[str, str]:
        with session_scope() as session:
            return {e: session.get(OutboxEvent, e).status for e in event_ids}  # type: ignore[union-attr]

    with contextlib.suppress(AssertionError):  # the caller asserts on what it got
        wait_for(lambda: set(statuses().values()) == {"done"}, "the events settled", timeout=timeout)
    return statuses()


def runs_of(deployment_name: str) -> list[Any]:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]))
        )


@pytest.fixture()
@e2e_fixture
def worker(sqlite_database: str, sandbox_url: str) -> Iterator[None]:
    """A delivery worker process (`python -m engine`) on the test database and the harness's Prefect."""
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "DATABASE_URL": sqlite_database,
        "ENNU_SANDBOX_URL": sandbox_url,
    }
    process = subprocess.Popen([sys.executable, "-m", "engine", "--name", "trigger-test"], env=env)
    try:
        wait_for(
            lambda: any(w.name == "trigger-test" and w.warm_at for w in live_workers()),
            "the delivery worker warm",
            timeout=180,
        )
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


def flow_runs_named(name: str) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])))


def test_posted_events_of_every_type_are_delivered_by_the_worker_in_flow_runs(
    worker: None, sandbox: Any
) -> None:
    user_id = add_person()
    assessment_id = add_assessment(user_id)
    with TestClient(create_app()) as api:
        response = api.post(
            "/events",
            headers={"Authorization": "Bearer dev-intake-token"},
            json={
                "id": "trigger-1",
                "type": "assessment.completed",
                "occurred_at": "2026-11-29T10:00:00Z",
                "subject": user_id,
                "resource": str(assessment_id),
            },
        )
    assert response.status_code == 202

    wait_for(lambda: sandbox.objects("hubspot", "contacts"), "the contact at the stand-in")
    assert len(sandbox.objects("hubspot", "contacts")) == 1

    def this_batch() -> list[Any]:
        runs = flow_runs_named("assessment-completed")
        return [run for run in runs if "trigger-1" in (run.parameters or {}).get("event_ids", [])]

    runs = wait_for(this_batch, "the batch's flow run")
    assert [run.parameters for run in runs] == [{"event_ids": ["trigger-1"], "force": False}]  # ids only

    # Every other host event type, each through its own deployment's trigger.
    registered, goal_owner, leaver = add_person(), add_person(), add_person()
    goal = add_goal(goal_owner)
    appointment = add_appointment(goal_owner, datetime.now(UTC) + timedelta(days=3))
    with session_scope() as session:
        # daytime where the goal owner lives: the SMS for the completed goal is not held for quiet hours
        session.get(User, goal_owner).timezone = zone_at_local_hour(13)  # type: ignore[union-attr]
        result = Biomarker(
            user_id=goal_owner,
            name="glucose",
            loinc_code="2345-7",
            value=92,
            unit="mg/dL",
            observed_at=datetime(2026, 11, 2, 8, 0, tzinfo=UTC),
        )
        session.add(result)
        session.flush()
        result_id = result.id
    with TestClient(create_app()) as api:
        post(api, "t-registered", "user.registered", registered)
        post(api, "t-login", "user.login", registered)
        post(api, "t-biomarker", "biomarker.updated", goal_owner, result_id)
        post(api, "t-goal-created", "health_goal.created", goal_owner, goal)
        post(api, "t-leaver", "user.registered", leaver)
        post(api, "t-consent", "user.consent_changed", registered)
        post(api, "t-clinic", "user.clinic_changed", registered)
        post(api, "t-progressed", "health_goal.progressed", goal_owner, goal)
        post(api, "t-appointment", "appointment.scheduled", goal_owner, appointment)
        first_wave = [
            "t-registered",
            "t-login",
            "t-biomarker",
            "t-goal-created",
            "t-leaver",
            "t-consent",
            "t-clinic",
            "t-progressed",
            "t-appointment",
        ]
        assert set(settled(first_wave).values()) == {"done"}
        cancel_appointment(appointment)
        post(api, "t-cancelled", "appointment.cancelled", goal_owner, appointment)
        post(api, "t-goal-completed", "health_goal.completed", goal_owner, goal)
        post(api, "t-erase", "user.deletion_requested", leaver)
        assert set(settled(["t-goal-completed", "t-erase", "t-cancelled"]).values()) == {"done"}
    for event_type in EVENT_TYPES.values():
        if event_type.origin == "host":
            assert flow_runs_named(event_type.flow_name), event_type.name
    assert sandbox.objects("fhir", "Observation") and sandbox.objects("hubspot", "deals")
    assert sandbox.request_count("hubspot", "gdpr-delete") == 1


def cancel_appointment(appointment_id: int) -> None:
    with session_scope() as session:
        row = session.get(Appointment, appointment_id)
        assert row is not None
        row.status = "cancelled"


def test_a_failed_deployment_run_raises_the_operators_alert(served: None) -> None:
    # A run that fails (bulk-sync refuses an event type without records) starts the ops-alert automation.
    failed = run_deployment(
        "bulk-sync/on-demand", parameters={"event_type": "user.deletion_requested"}, timeout=300
    )
    assert failed.state is not None and failed.state.is_failed()  # type: ignore[union-attr]

    def finished_alerts() -> list[Any]:  # this run's alert (another test's may be in the harness too)
        return [
            run
            for run in runs_of("ops-alert/default")
            if run.state and run.state.is_final() and str(failed.id) in str(run.parameters)
        ]

    alerts = wait_for(finished_alerts, "the ops-alert run")
    assert [(run.parameters, run.state.name) for run in alerts] == [
        ({"kind": "flow-run-failed", "subject": f"prefect.flow-run.{failed.id}"}, "Completed")  # type: ignore[union-attr]
    ]


def test_a_batch_with_a_rejected_and_a_failed_record_fails_and_alerts_chat_and_email_without_data(
    served: None, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from ennu.settings import reload_settings
    from flows.user_registered import user_registered
    from tasks.run_state import raise_unless_recorded

    monkeypatch.setenv("ENNU_ALERT_EMAIL_TO", "ops@example.org")  # as the served process has it
    # One attempt, no request retries: HubSpot's 503 makes the valid person's contact a dead letter at once.
    monkeypatch.setenv("ENNU_DELIVERY_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("ENNU_HTTP_RETRIES", "0")
    monkeypatch.setenv("ENNU_CIRCUIT_FAILURE_THRESHOLD", "1000")
    reload_settings()
    bad_phone, good_email = "(555) 01", "grace.canary@example.org"
    rejected = add_person(phone=bad_phone, first_name="Zelda")
    failed = add_person(email=good_email, first_name="Quinta")
    from tests.factories import add_event

    events = [add_event("user.registered", rejected), add_event("user.registered", failed)]
    sandbox.fail("hubspot", mode="status", status=503)

    # As the delivery worker runs it: in-process, no deployment, no tags.
    state = user_registered(event_ids=events, return_state=True)
    raise_unless_recorded(state)  # a Failed batch is an outcome, not a crash
    assert state.is_failed()
    assert (state.message or "").startswith("failed deliveries: hubspot/contacts 1; rejected: ")
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["undelivered"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            )
        )
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    at_hubspot = {r["status"]: r for r in rows if r["destination"] == "hubspot/contacts"}
    assert at_hubspot["rejected"]["reason"].startswith("phone: expect_column_values_to_match_regex")
    assert at_hubspot["rejected"]["record"] == f"user:{rejected}"
    assert "503" in at_hubspot["failed"]["reason"] and at_hubspot["failed"]["attempt"] == "1"
    assert {r["destination"] for r in rows if r["status"] == "rejected"} >= {"stripe/customers"}

    def finished_alert() -> list[Any]:
        return [
            run
            for run in runs_of("ops-alert/default")
            if run.state and run.state.is_final() and str(run_id) in str(run.parameters)
        ]

    (alert,) = wait_for(finished_alert, "the ops-alert run of the failed batch", timeout=180)
    assert alert.state.name == "Completed"  # type: ignore[union-attr]
    notices = {
        "slack": [str(b["body"]) for b in sandbox.bodies("slack")],
        "teams": [str(b["body"]) for b in sandbox.bodies("teams")],
        "email": [f"{m['subject']} {m['text']}" for m in sandbox.objects("email", "messages")],
    }
    assert {channel: len(sent) for channel, sent in notices.items()} == {"slack": 1, "teams": 1, "email": 1}
    (message,) = sandbox.objects("email", "messages")
    assert message["to"] == ["ops@example.org"]
    # ("grace.canary", not "grace": Prefect names runs like "graceful-lemur", which an alert may quote.)
    personal = (bad_phone, "55501", good_email, "grace.canary", "Zelda", "Quinta", "Tester")
    for channel, (text,) in notices.items():
        assert "user-registered" in text and "Dead letters: hubspot/contacts 1" in text, channel
        assert not [p for p in personal if p in text], channel
    assert not [p for p in personal if p in json.dumps(rows) + str(artifact.description) + str(state.message)]
