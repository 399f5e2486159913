"""The delivery engine with a worker in this process: micro-batches, per-person order, attempt cap, replay,
retries after a vendor outage, ambiguous Twilio sends and webhook receipts — counted at the stand-ins."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ennu import circuit, deliveries
from ennu.db import session_scope
from ennu.models import Delivery, OutboxEvent, SyncLog, SyncStatus, User, WebhookReceipt
from ennu.settings import get_settings, reload_settings
from ennu.zapier_subscriptions import ZapierSubscriptions
from flows import pipeline, webhook_received
from flows.bulk_sync import bulk_sync
from intake.app import create_app
from tasks import admit as tasks_admit
from tests.engine_support import delivery_states, open_deliveries, running_worker, wait_for
from tests.factories import (
    add_assessment,
    add_event,
    add_goal,
    add_person,
    person_with_assessment,
    zone_at_local_hour,
)

pytestmark = pytest.mark.usefixtures("prefect_server")
OPERATOR = {"Authorization": "Bearer operator-token"}


@pytest.fixture()
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Delivery retries a second apart and no request retries, so attempts are counted quickly."""
    monkeypatch.setenv("ENNU_DELIVERY_RETRY_BASE_SECONDS", "0.3")
    monkeypatch.setenv("ENNU_RECONCILE_DELAY_SECONDS", "0.5")
    monkeypatch.setenv("ENNU_HTTP_RETRIES", "0")
    reload_settings()


def sync_statuses(connector: str) -> Counter[str]:
    with session_scope() as session:
        rows = session.execute(select(SyncLog.status).where(SyncLog.connector == connector)).scalars()
        return Counter(rows)


def test_a_lone_event_goes_at_once_and_a_burst_in_batches(sqlite_database: str, sandbox: Any) -> None:
    with running_worker() as worker:
        person_with_assessment()
        wait_for(lambda: len(sandbox.objects("hubspot", "contacts")) == 1, "the lone contact")
        wait_for(lambda: worker.stats.batches >= 1 and open_deliveries() == 0, "the lone event settled")
        lone = worker.stats.batches
        for _ in range(120):
            person_with_assessment()
        wait_for(lambda: open_deliveries() == 0, "the burst settled")
    assert len(sandbox.objects("hubspot", "contacts")) == 121
    assert sync_statuses("hubspot") == Counter({"created": 121})
    # 120 events of one type go in batches of up to 50, not one run each (a destination that batches in
    # flight still push to is left for a later batch, so an event may take two).
    assert worker.stats.batches - lone <= 24


def test_twenty_events_of_one_person_create_one_stripe_customer(database: str, sandbox: Any) -> None:
    user_id = add_person()
    for n in range(20):
        add_event("user.registered", user_id, event_id=f"reg-{n}")
    with running_worker(concurrency=4):
        wait_for(lambda: open_deliveries() == 0, "every registration settled")
    assert len(sandbox.objects("stripe", "customers")) == 1
    assert len(sandbox.objects("hubspot", "contacts")) == 1


def test_a_bulk_sync_for_two_destinations_calls_only_those_two(
    sqlite_database: str, sandbox: Any, quick_retries: None
) -> None:
    for _ in range(6):
        add_person()
    sandbox.fail("hubspot", mode="status", status=503, count=2)  # two attempts fail, the third goes
    with running_worker():
        bulk_sync(event_type="user.registered", integrations=["hubspot", "salesforce"])
        wait_for(lambda: open_deliveries() == 0, "the bulk sync's deliveries settled")
    assert len(sandbox.objects("hubspot", "contacts")) == 6
    assert len(sandbox.objects("salesforce", "Contact")) == 6
    for vendor in ("mailchimp", "stripe", "ga4", "zapier", "twilio"):
        assert sandbox.requests(vendor) == [], vendor
    assert set(delivery_states()) == {"delivered"}


def test_a_bulk_sync_naming_no_destination_updates_the_records_and_announces_nothing(
    sqlite_database: str, sandbox: Any
) -> None:
    for _ in range(3):
        user_id = add_person()
        add_assessment(user_id, overall=8.1)  # no event: only the bulk sync carries these
    announcers = ("ga4", "zapier", "slack", "teams", "twilio", "mailchimp")
    with running_worker():
        bulk_sync(event_type="assessment.completed")
        wait_for(lambda: open_deliveries() == 0, "the bulk sync's deliveries settled")
    with session_scope() as session:
        reached = Counter(session.execute(select(Delivery.integration)).scalars())
    assert reached == Counter({"hubspot": 3, "salesforce": 3, "epic_fhir": 3})
    assert len(sandbox.objects("hubspot", "contacts")) == 3
    for vendor in announcers:  # no SMS, notice, Zap, analytics hit or journey for a past assessment
        assert sandbox.requests(vendor) == [], vendor
    assert set(delivery_states()) == {"delivered"}
    with pytest.raises(ValueError, match="name the integrations"):  # every route of it announces
        bulk_sync(event_type="appointment.scheduled")


def test_a_vendor_outage_heals_without_a_drain_and_spends_no_attempt(
    database: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENNU_CIRCUIT_FAILURE_THRESHOLD", "2")
    monkeypatch.setenv("ENNU_CIRCUIT_PROBE_SECONDS", "1")
    monkeypatch.setenv("ENNU_DELIVERY_RETRY_BASE_SECONDS", "0.5")
    reload_settings()
    sandbox.fail("hubspot", mode="status", status=503, seconds=6)
    events = [person_with_assessment()[2] for _ in range(10)]
    with running_worker():
        wait_for(lambda: open_deliveries() == 0, "delivery after the outage", timeout=90)
    assert sync_statuses("hubspot")["created"] == 10, sync_statuses("hubspot")
    assert len(sandbox.objects("hubspot", "contacts")) == 10
    assert delivery_states("hubspot") == {"delivered": 10}
    with session_scope() as session:
        assert {e.status for e in session.execute(select(OutboxEvent)).scalars()} == {"done"}
    assert len(events) == 10


def test_attempts_are_capped_then_the_dead_letter_is_visible_and_a_replay_delivers_it_once(
    database: str, sandbox: Any, quick_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENNU_CIRCUIT_FAILURE_THRESHOLD", "1000")  # the record's trouble, not an outage
    monkeypatch.setenv("ENNU_OPERATOR_TOKENS", "operator-token")
    reload_settings()
    sandbox.fail("hubspot", mode="status", status=500)
    person_with_assessment()
    with running_worker() as worker:
        wait_for(lambda: delivery_states("hubspot") == {"failed": 1}, "the dead letter")
        # The batch's run ended Failed (a dead letter): an outcome for the worker, not a crash.
        wait_for(lambda: worker.stats.batches >= 3, "the three batches counted")
        assert worker.stats.errors == 0
        assert len(sandbox.requests("hubspot")) == 3  # three attempts, one request each
        with TestClient(create_app()) as api:
            status = {s["integration"]: s for s in api.get("/integrations/status", headers=OPERATOR).json()}
            assert status["hubspot"]["deliveries"] == {"failed": 1}
            assert "gave up after 3 attempts" in (status["hubspot"]["last_error_reason"] or "")
            sandbox.heal("hubspot")
            circuit.reset_circuit("hubspot")
            replayed = api.post("/integrations/replay", headers=OPERATOR, json={"integration": "hubspot"})
        assert replayed.status_code == 200 and replayed.json()["deliveries"] == 1
        wait_for(lambda: delivery_states("hubspot") == {"delivered": 1}, "the replayed delivery")
    assert len(sandbox.objects("hubspot", "contacts")) == 1
    assert sync_statuses("hubspot") == Counter({"deferred": 2, "failed": 1, "created": 1})


@pytest.mark.parametrize("mode", ["commit_then_reset", "commit_then_late"])
def test_a_lost_twilio_answer_is_reconciled_so_each_person_gets_one_sms(
    sqlite_database: str, sandbox: Any, quick_retries: None, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("ENNU_HTTP_TIMEOUT_SECONDS", "2")
    reload_settings()
    people = []
    for n in range(6):
        user_id = add_person(phone=f"(555) 010-{2000 + n}")
        with session_scope() as session:
            session.get(User, user_id).timezone = zone_at_local_hour(13)  # type: ignore[union-attr]
        goal = add_goal(user_id, status="completed")
        add_event("health_goal.completed", user_id, goal)
        people.append(user_id)
    sandbox.fail("twilio", mode=mode, count=2, delay=4)
    with running_worker():
        wait_for(lambda: delivery_states("twilio") == {"delivered": 6}, "every SMS settled", timeout=120)
    recipients = Counter(m["to"] for m in sandbox.objects("twilio", "messages"))
    assert len(recipients) == 6 and set(recipients.values()) == {1}
    assert len(sandbox.stored_but_unanswered("twilio")) == 2
    with session_scope() as session:
        created = session.execute(
            select(SyncLog.user_id, SyncLog.remote_id).where(
                SyncLog.connector == "twilio", SyncLog.status == "created"
            )
        ).all()
    sids = {m["sid"] for m in sandbox.objects("twilio", "messages")}
    assert {user for user, _ in created} == set(people) and {sid for _, sid in created} == sids


def delivery_errors(integration: str) -> Counter[str | None]:
    with session_scope() as session:
        rows = session.execute(select(Delivery.last_error).where(Delivery.integration == integration))
        return Counter(rows.scalars())


@pytest.mark.parametrize(
    ("mode", "collected"),
    [("reset", 6), ("commit_then_reset", 8), ("commit_then_late", 8)],
)
def test_a_lost_ga4_answer_is_sent_again_by_its_worker_with_the_same_event_id(
    sqlite_database: str,
    sandbox: Any,
    quick_retries: None,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    collected: int,
) -> None:
    """The worker that lost its own answer sends again (at least once): a reset before the stand-in stored
    anything lands once; one after it stored the event (GA4 de-duplicates nothing) leaves a copy more, each
    copy with the host event's id for a report to de-duplicate on; the sync log says delivered."""
    monkeypatch.setenv("ENNU_HTTP_TIMEOUT_SECONDS", "2")
    reload_settings()
    for _ in range(6):
        person_with_assessment()
    sandbox.fail("ga4", mode=mode, count=2, delay=4)
    with running_worker():
        wait_for(lambda: delivery_states("ga4") == {"delivered": 6}, "every GA4 delivery settled")
    copies = Counter(e["params"]["event_id"] for e in sandbox.objects("ga4", "events"))
    # Every event at least once, and one copy more for each answer lost after the stand-in stored it.
    assert len(copies) == 6 and sum(copies.values()) == collected
    assert len(sandbox.stored_but_unanswered("ga4")) == collected - 6
    assert sync_statuses("ga4")["created"] == 6
    assert pipeline.NOT_SENT_TWICE not in delivery_errors("ga4")


# Sends without a look-up that a dead worker's successor must not repeat: GA4 hits, care-team messages,
# Zap triggers.
MARKED_SENDS = [("ga4", "events"), ("slack", "messages"), ("teams", "messages"), ("zapier", "payloads")]


def subscribe_a_zap(integration: str) -> None:
    """Zapier has deliveries to send only to a subscribed hook (two here: a record is marked once)."""
    if integration == "zapier":
        for hook in ("zap-a", "zap-b"):
            ZapierSubscriptions().add(
                "assessment.completed", f"{get_settings().sandbox_url}/zapier/hooks/{hook}"
            )


@pytest.mark.parametrize(("integration", "stored"), MARKED_SENDS)
def test_a_marked_delivery_is_unknown_while_its_request_is_in_flight(
    sqlite_database: str, sandbox: Any, integration: str, stored: str
) -> None:
    subscribe_a_zap(integration)
    person_with_assessment()
    sandbox.fail(integration, mode="slow", count=1, delay=3)
    with running_worker():
        wait_for(
            lambda: delivery_states(integration) == {"unknown": 1}, "the mark before the request", every=0.05
        )
        wait_for(lambda: delivery_states(integration) == {"delivered": 1}, "the answered send")
    assert len(sandbox.objects(integration, stored)) == (2 if integration == "zapier" else 1)


@pytest.mark.parametrize(("integration", "stored"), MARKED_SENDS)
def test_a_send_marked_by_a_worker_that_died_is_never_sent_again(
    sqlite_database: str, sandbox: Any, quick_retries: None, integration: str, stored: str
) -> None:
    """A worker marks each request's deliveries just before it leaves; one killed with the request in
    flight leaves them `unknown`, and the next worker fails them with the reason instead of resending:
    only the sender that saw its answer lost sends again."""
    subscribe_a_zap(integration)
    _, _, event_id = person_with_assessment()
    tasks_admit.admit([event_id])
    held = deliveries.take("worker-that-died", [event_id], [integration])
    assert [h.integration for h in held] == [integration]
    deliveries.mark_sending("worker-that-died", [(event_id, integration)])
    with session_scope() as session:  # the dead worker's lease and the reconcile delay run out
        row = session.execute(select(Delivery).where(Delivery.integration == integration)).scalar_one()
        row.lease_expires_at = row.not_before = row.last_attempt_at
    with running_worker():
        wait_for(lambda: delivery_states(integration) == {"failed": 1}, "the marked send settled")
        wait_for(lambda: open_deliveries() == 0, "the other destinations delivered")
    assert sandbox.request_count(integration) == 0 and sandbox.objects(integration, stored) == []
    assert delivery_errors(integration) == Counter({pipeline.NOT_SENT_TWICE: 1})


def test_a_webhook_whose_handler_fails_once_is_applied_later_and_an_unknown_one_is_recorded(
    sqlite_database: str, quick_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = add_person(email="leaving@example.com", marketing=True)
    calls = Counter[str]()
    real = webhook_received.HANDLERS["mailchimp"]

    def flaky(session: Any, payload: dict[str, Any]) -> webhook_received.Handled:
        calls["mailchimp"] += 1
        if calls["mailchimp"] == 1:
            raise RuntimeError("the database went away for a moment")
        return real(session, payload)

    monkeypatch.setitem(webhook_received.HANDLERS, "mailchimp", flaky)
    with session_scope() as session:
        session.add_all(
            [
                WebhookReceipt(
                    integration="mailchimp",
                    vendor_event_id="mc-1",
                    kind="unsubscribe",
                    payload={"type": "unsubscribe", "data[email]": "leaving@example.com"},
                ),
                WebhookReceipt(
                    integration="hubspot", vendor_event_id="hs-1", kind="deal.created", payload={}
                ),
            ]
        )
    with running_worker():

        def processed() -> bool:
            with session_scope() as session:
                rows = session.execute(select(WebhookReceipt)).scalars().all()
                return all(r.processed_at is not None for r in rows)

        wait_for(processed, "both receipts processed")
    with session_scope() as session:
        receipts = {r.vendor_event_id: r for r in session.execute(select(WebhookReceipt)).scalars()}
        assert (receipts["mc-1"].status, receipts["mc-1"].attempts) == ("consent-withdrawn", 1)
        # HubSpot's handler knows contact and deal property changes: another type is recorded, not retried.
        assert (receipts["hs-1"].status, receipts["hs-1"].attempts) == ("ignored", 0)
        assert session.get(User, user_id).marketing_consent is False  # type: ignore[union-attr]
    assert calls["mailchimp"] == 2


def test_an_erasure_cancels_the_persons_open_deliveries_first(
    sqlite_database: str, sandbox: Any, quick_retries: None
) -> None:
    user_id = add_person()
    sandbox.fail("hubspot", mode="status", status=503)
    registered = add_event("user.registered", user_id)
    with running_worker():
        wait_for(lambda: delivery_states("hubspot").get("deferred"), "the HubSpot delivery deferred")
        add_event("user.deletion_requested", user_id)
        wait_for(lambda: open_deliveries() == 0, "the erasure settled")
    with session_scope() as session:
        state = session.execute(
            select(Delivery.status).where(Delivery.event_id == registered, Delivery.integration == "hubspot")
        ).scalar_one()
    assert state == "cancelled"
    assert sandbox.objects("hubspot", "contacts") == []

    # The erasure list: a later event or a bulk sync of everyone never sends the person again.
    sandbox.heal("hubspot")
    again = add_event("user.registered", user_id, event_id="after-erasure")
    with running_worker():
        bulk_sync(event_type="user.registered")
        wait_for(lambda: open_deliveries() == 0, "the later events settled")
    with session_scope() as session:
        skipped = session.execute(
            select(SyncLog.status, SyncLog.error).where(SyncLog.event_id == again)
        ).one()
        later = session.execute(
            select(func.count()).where(Delivery.user_id == user_id, Delivery.event_id.like("bulk-%"))
        ).scalar_one()
    assert tuple(skipped) == ("skipped", "erased") and later == 0
    assert sandbox.objects("hubspot", "contacts") == [] and sandbox.objects("stripe", "customers") == []


def test_claims_never_hold_one_persons_deliveries_to_one_destination_twice(sqlite_database: str) -> None:
    user_id = add_person()
    first = add_event("user.registered", user_id)
    from tasks.admit import admit

    admit()
    held = deliveries.claim("worker-a", 10)
    assert held is not None and held.event_ids == [first]
    second = add_event("user.login", user_id)  # HubSpot, like the registration held by worker-a
    admit()
    assert deliveries.claim("worker-b", 10) is None
    deliveries.release("worker-a")
    again = deliveries.claim("worker-b", 10)
    assert again is not None and again.event_type == "user.registered"
    assert second


def test_a_claim_leaves_the_destinations_a_workers_batches_still_push_to(database: str) -> None:
    from tasks.admit import admit

    first = add_event("user.registered", add_person())
    admit()
    held = deliveries.claim("w1/a", 10)
    assert held is not None and held.event_ids == [first]
    everywhere = sorted({h.integration for h in held.held})
    assert deliveries.busy_integrations("w1/", 1) == everywhere
    assert deliveries.busy_integrations("w1/", 2) == [] and deliveries.busy_integrations("w2/", 1) == []
    # The first batch has settled HubSpot; it still pushes to the others.
    deliveries.settle("w1/a", held.held, [deliveries.Settlement(first, "hubspot", SyncStatus.CREATED)])
    busy = deliveries.busy_integrations("w1/", 1)
    assert busy == [i for i in everywhere if i != "hubspot"]
    second = add_event("user.registered", add_person())
    admit()
    claim = deliveries.claim("w1/b", 10, leave=busy)
    assert claim is not None and {(h.event_id, h.integration) for h in claim.held} == {(second, "hubspot")}
    # The batch's flow run takes what its claim holds, not the deliveries the claim left for later.
    with deliveries.owned_by("w1/b", claimed=True):
        taken = deliveries.take("w1/b", [second])
    assert [(h.event_id, h.integration) for h in taken] == [(second, "hubspot")]
    later = deliveries.claim("w1/c", 10)  # without `leave`: the rest of the second event
    assert later is not None and {h.integration for h in later.held} == set(busy)
    assert later.event_ids == [second]


def test_a_batch_waiting_for_a_slow_destination_holds_up_no_later_batch(
    sqlite_database: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENNU_HTTP_TIMEOUT_SECONDS", "60")
    reload_settings()
    # The first batch's first Mailchimp request is held (a ceiling of 50 s) until the heal below lets it go.
    sandbox.fail("mailchimp", "slow", delay=50.0, count=1)
    with running_worker(concurrency=1) as worker:
        add_event("user.registered", add_person())
        wait_for(lambda: len(sandbox.objects("hubspot", "contacts")) == 1, "the first contact")
        add_event("user.registered", add_person())
        # One batch at work at a time, yet the second goes while the first still waits for Mailchimp.
        wait_for(lambda: len(sandbox.objects("hubspot", "contacts")) == 2, "the second contact")
        assert sandbox.objects("mailchimp", "members") == []
        sandbox.heal("mailchimp")
        wait_for(lambda: open_deliveries() == 0, "both events settled")
    assert len(sandbox.objects("mailchimp", "members")) == 2 and worker.stats.errors == 0
    assert sync_statuses("hubspot") == Counter({"created": 2})
    assert sync_statuses("mailchimp")["created"] == 2


def test_a_batch_says_in_an_artifact_why_each_record_did_not_arrive(
    sqlite_database: str, sandbox: Any
) -> None:
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from flows.assessment_completed import assessment_completed

    _, _, bad = person_with_assessment(email="not-an-email")
    state = assessment_completed(event_ids=[bad], return_state=True)
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["undelivered"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    assert len(found) == 1
    rows = json.loads(found[0].data) if isinstance(found[0].data, str) else found[0].data
    hubspot = [r for r in rows if r["destination"] == "hubspot/contacts"]
    assert hubspot and hubspot[0]["status"] == "rejected" and hubspot[0]["reason"].startswith("email:")
    assert hubspot[0]["sync log"].startswith("/integrations/data/hubspot?record_key=user:")
    assert "did not take every record" in (found[0].description or "")
    assert "not-an-email" not in json.dumps(rows) + (found[0].description or "")


def test_a_bulk_chunk_larger_than_the_admit_limit_is_carried_whole(
    sqlite_database: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Named events are admitted whatever their number: a bulk chunk of 30 with an admit limit of 10."""
    from tasks import admit

    monkeypatch.setenv("ENNU_BULK_BATCH_SIZE", "30")
    reload_settings()
    for _ in range(45):
        add_person()
    real_admit = admit.admit
    monkeypatch.setattr(admit, "admit", lambda event_ids=None, limit=10: real_admit(event_ids, limit))
    import flows.pipeline

    monkeypatch.setattr(flows.pipeline, "admit", admit.admit)

    bulk_sync(event_type="user.registered", integrations=["hubspot"])

    assert len(sandbox.objects("hubspot", "contacts")) == 45
    assert open_deliveries() == 0
