"""Every event type's flow end to end (called directly; `test_trigger.py` covers the triggers)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from ennu import deliveries
from ennu.db import session_scope
from ennu.models import Delivery, OutboxEvent, SyncLog, User
from flows.bulk_sync import CHUNKS_IN_FLIGHT, bulk_sync
from flows.drain import drain
from flows.erase_user import erase_user
from flows.health_goal_completed import health_goal_completed
from flows.health_goal_created import health_goal_created
from flows.pipeline import BATCHES_PER_PUSH, PUSH_THREADS, per_push
from flows.user_login import user_login
from flows.user_registered import user_registered
from tasks.admit import admit
from tests.factories import add_assessment, add_event, add_goal, add_person

pytestmark = pytest.mark.usefixtures("prefect_server")


def sync(**where: Any) -> list[tuple[str, str]]:
    with session_scope() as session:
        query = select(SyncLog).order_by(SyncLog.id)
        for column, value in where.items():
            query = query.where(getattr(SyncLog, column) == value)
        return [(r.connector, r.status) for r in session.execute(query).scalars()]


def test_registration_creates_contact_and_member(sqlite_database: str, sandbox: Any) -> None:
    user_id = add_person(email="new.person@example.com")
    user_registered(event_ids=[add_event("user.registered", user_id)])
    contact = sandbox.objects("hubspot", "contacts")[0]["properties"]
    assert contact["email"] == "new.person@example.com" and contact["ennu_user_id"] == str(user_id)
    assert sandbox.objects("mailchimp", "members")[0]["tags"] == ["ennu:registered"]


def test_logins_on_one_day_cost_one_request(sqlite_database: str, sandbox: Any) -> None:
    user_id = add_person()
    user_login(event_ids=[add_event("user.login", user_id, event_id="login-1")])
    user_login(event_ids=[add_event("user.login", user_id, event_id="login-2")])
    assert sync(connector="hubspot") == [("hubspot", "created"), ("hubspot", "unchanged")]
    assert len(sandbox.requests("hubspot")) == 1
    assert "ennu_last_login_date" in sandbox.objects("hubspot", "contacts")[0]["properties"]


def test_goal_created_opens_a_deal_and_completed_wins_it(database: str, sandbox: Any) -> None:
    user_id = add_person()
    goal_id = add_goal(user_id)
    health_goal_created(event_ids=[add_event("health_goal.created", user_id, goal_id)])
    deal = sandbox.objects("hubspot", "deals")[0]
    assert deal["properties"]["dealstage"] == "appointmentscheduled"
    assert sandbox.objects("mailchimp", "members")[0]["tags"] == ["goal:lose-weight"]

    health_goal_completed(event_ids=[add_event("health_goal.completed", user_id, goal_id)])
    (opportunity,) = sandbox.objects("salesforce", "Opportunity")
    assert opportunity["StageName"] == "Closed Won"
    deals = sandbox.objects("hubspot", "deals")
    assert len(deals) == 1 and deals[0]["properties"]["dealstage"] == "closedwon"
    assert sync(connector="hubspot") == [("hubspot", "created"), ("hubspot", "updated")]


def test_event_for_a_missing_record_is_rejected_with_a_reason_and_settled(
    sqlite_database: str, sandbox: Any
) -> None:
    user_id = add_person()
    event_id = add_event("health_goal.created", user_id, 99999)
    health_goal_created(event_ids=[event_id])
    with session_scope() as session:
        rows = session.execute(select(SyncLog).order_by(SyncLog.connector)).scalars().all()
        # Every destination's delivery of the event is rejected with the reason, and nothing was sent.
        assert [(r.connector, r.status, r.error) for r in rows] == [
            (name, "rejected", "health_goal not found for the event's subject")
            for name in ("ga4", "hubspot", "mailchimp", "salesforce", "zapier")
        ]
        states = session.execute(select(Delivery.status).where(Delivery.event_id == event_id)).scalars()
        assert set(states) == {"rejected"}
        assert session.get(OutboxEvent, event_id).status == "done"  # type: ignore[union-attr]
    assert sandbox.requests("hubspot") == []


def test_erasure_reaches_every_destination_and_leaves_a_pseudonymous_trail(
    database: str, sandbox: Any
) -> None:
    user_id = add_person(email="forget.me@example.com")
    user_registered(event_ids=[add_event("user.registered", user_id)])
    goal_id = add_goal(user_id)
    health_goal_created(event_ids=[add_event("health_goal.created", user_id, goal_id)])
    assert sandbox.objects("hubspot", "contacts") and sandbox.objects("mailchimp", "members")
    assert sandbox.objects("salesforce", "Contact") and sandbox.objects("salesforce", "Opportunity")
    assert sandbox.objects("hubspot", "deals")

    report = erase_user(event_ids=[add_event("user.deletion_requested", user_id)])

    assert sandbox.objects("hubspot", "contacts") == []
    assert sandbox.objects("mailchimp", "members") == []
    assert (
        sandbox.objects("salesforce", "Contact") == [] and sandbox.objects("salesforce", "Opportunity") == []
    )
    assert sandbox.objects("hubspot", "deals") == []
    outcomes = {row["destination"]: row["outcome"] for row in report}
    assert outcomes["hubspot"] == outcomes["mailchimp"] == outcomes["salesforce"] == "erased"
    assert outcomes["epic_fhir"] == "retained" and {row["outstanding"] for row in report} == {"False"}
    with session_scope() as session:
        history = list(session.execute(select(SyncLog).where(SyncLog.user_id == user_id)).scalars())
    assert all(r.remote_id is None and r.payload_hash is None for r in history if r.object != "person")
    assert "forget.me" not in str([(r.error, r.record_key) for r in history])


def test_drain_runs_every_waiting_type_through_its_flow(sqlite_database: str, sandbox: Any) -> None:
    user_id = add_person()
    assessment_id = add_assessment(user_id)
    events = [
        add_event("user.registered", user_id),
        add_event("assessment.completed", user_id, assessment_id),
        add_event("user.login", user_id),
    ]
    processed = drain()
    assert processed == {"user.registered": 1, "assessment.completed": 1, "user.login": 1}
    with session_scope() as session:
        assert {session.get(OutboxEvent, e).status for e in events} == {"done"}  # type: ignore[union-attr]


def test_claims_serve_priority_integrations_first(database: str) -> None:
    login = add_event("user.login", add_person())
    assessed = add_event("assessment.completed", add_person(), 1)
    results = [add_event("biomarker.updated", add_person(), n) for n in (1, 2)]  # EHR: priority 1
    goal = add_event("health_goal.completed", add_person(), 1)  # Twilio: priority 2
    admit()
    claimed = []
    while (claim := deliveries.claim("test-worker", 10)) is not None:
        claimed.append((claim.event_type, claim.event_ids))
    assert claimed == [
        ("biomarker.updated", results),
        ("health_goal.completed", [goal]),
        ("user.login", [login]),  # older than the assessment, same priority (HubSpot's)
        ("assessment.completed", [assessed]),
    ]


def test_bulk_sync_sends_everyone_once_and_then_nothing(sqlite_database: str, sandbox: Any) -> None:
    people = [add_person() for _ in range(7)]
    for user_id in people:
        add_assessment(user_id)
        add_assessment(user_id, overall=8.8)  # the latest one is sent
    (summary,) = bulk_sync(event_type="assessment.completed", integrations=["hubspot"])
    assert summary["destination"] == "hubspot/contacts" and summary["created"] == 7
    contacts = sandbox.objects("hubspot", "contacts")
    assert len(contacts) == 7 and {c["properties"]["ennu_overall_score"] for c in contacts} == {"8.8"}
    assert sandbox.objects("mailchimp", "members") == []
    requests_before = len(sandbox.requests("hubspot"))
    bulk_sync(event_type="assessment.completed", integrations=["hubspot"], user_ids=people[:2])
    assert len(sandbox.requests("hubspot")) == requests_before  # unchanged: nothing sent
    with session_scope() as session:
        assert session.get(User, people[0]) is not None


def test_a_routes_batches_are_cut_into_one_push_task_per_thread_the_batch_has() -> None:
    batches: list[Any] = [[f"batch {n}"] for n in range(20)]
    tasks = per_push(batches, PUSH_THREADS)  # a live batch has the runner's threads to itself
    assert [len(t) for t in tasks] == [3, 3, 3, 3, 3, 3, 2] and [b for t in tasks for b in t] == batches
    # A bulk sync's chunks in flight share the threads: fewer, longer tasks, the same requests side by side
    shared = per_push(batches, PUSH_THREADS // CHUNKS_IN_FLIGHT)
    assert [len(t) for t in shared] == [5, 5, 5, 5] and [b for t in shared for b in t] == batches
    assert [len(t) for t in per_push(batches[:3], PUSH_THREADS)] == [1, 1, 1]
    assert {len(t) for t in per_push(batches * 10, PUSH_THREADS)} == {BATCHES_PER_PUSH}


def test_a_batch_run_shows_one_push_task_per_destination_and_asks_for_no_result_storage(
    sqlite_database: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import SyncPrefectClient, get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from tests.engine_support import wait_for

    asked: list[str] = []
    read_storage = SyncPrefectClient.read_server_default_result_storage

    def counted(client: SyncPrefectClient) -> Any:
        asked.append("storage")
        return read_storage(client)

    monkeypatch.setattr(SyncPrefectClient, "read_server_default_result_storage", counted)
    state = user_registered(event_ids=[add_event("user.registered", add_person())], return_state=True)
    assert asked == []  # the flows name their result path: no round trip for the server's default
    run_id = state.state_details.flow_run_id
    with session_scope() as session:
        sent = {
            f"push {r.connector}/{r.object}"
            for r in session.execute(select(SyncLog).where(SyncLog.flow_run_id == str(run_id))).scalars()
            if r.status not in ("skipped", "rejected")  # these are never pushed
        }

    def task_names() -> list[str] | None:
        """The run's task runs, once the server has recorded those of every destination the run sent to."""
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        names = sorted(t.name for t in runs)
        return names if sent <= set(names) else None

    # prepare and record are plain calls in the flow run: its tasks are the pushes, one per destination here
    # (a destination that took nothing, e.g. Zapier without subscriptions, still has its push)
    names = wait_for(task_names, "the batch's task runs")
    assert len(sent) > 1 and all(n.startswith("push ") for n in names) and len(set(names)) == len(names)
