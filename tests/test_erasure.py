"""Erasure: what stays of a person, a batch in flight, a disabled destination; a host consent withdrawal."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, update

from devtools.routing import routing_copy
from ennu import deliveries
from ennu.db import session_scope
from ennu.erasure import scrub_person
from ennu.models import (
    Delivery,
    DeliveryStatus,
    ErasedPerson,
    OutboxEvent,
    SyncLog,
    User,
    WebhookReceipt,
    utcnow,
)
from ennu.settings import reload_settings
from flows.consent_changed import consent_changed
from flows.drain import drain
from flows.erase_user import erase_user
from flows.user_registered import user_registered
from intake.app import create_app
from tasks.admit import admit
from tests.engine_support import wait_for
from tests.factories import add_event, add_person

pytestmark = pytest.mark.usefixtures("prefect_server")
OPERATOR = {"Authorization": "Bearer operator-token"}


def erasure_report(user_id: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("ENNU_OPERATOR_TOKENS", "operator-token")
    with TestClient(create_app()) as api:
        answer = api.get(f"/integrations/erasures/{user_id}", headers=OPERATOR)
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def by_destination(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["destination"]: d for d in report["destinations"]}


def test_a_scrub_keeps_only_pseudonymous_facts_and_no_path_sends_an_erased_person(database: str) -> None:
    erased = add_person(email="gone@example.org", phone="+15550100001")
    other = add_person(email="stays@example.org", phone="+15550100002")
    now = utcnow()
    with session_scope() as session:
        for user_id, event_id in ((erased, "login-1"), (other, "login-2")):
            session.add(
                OutboxEvent(id=event_id, type="user.login", subject=user_id, payload={"ip": "203.0.113.9"})
            )
        session.flush()
        session.execute(
            insert(SyncLog),
            [
                {
                    "event_id": "login-1",
                    "connector": "mailchimp",
                    "object": "members",
                    "record_key": f"user:{erased}",
                    "user_id": erased,
                    "status": "created",
                    "remote_id": "cus_GoneCustomer1",
                    "payload_hash": "f" * 64,
                    "error": "a vendor said something",
                    "created_at": now,
                },
                {
                    "event_id": "login-2",
                    "connector": "mailchimp",
                    "object": "members",
                    "record_key": f"user:{other}",
                    "user_id": other,
                    "status": "created",
                    "remote_id": "cus_StaysCustomer",
                    "payload_hash": "e" * 64,
                    "created_at": now,
                },
            ],
        )
        session.execute(
            insert(WebhookReceipt),
            [
                {
                    "integration": "stripe",
                    "vendor_event_id": "evt_1",
                    "payload": {"customer": "cus_GoneCustomer1"},
                },
                {"integration": "twilio", "vendor_event_id": "SM1", "payload": {"From": "+1 (555) 010-0001"}},
                {
                    "integration": "stripe",
                    "vendor_event_id": "evt_2",
                    "payload": {"customer": "cus_StaysCustomer"},
                },
            ],
        )
        session.add(ErasedPerson(user_id=erased, event_id="erase-1"))

    scrubbed = scrub_person(erased, "gone@example.org", "+15550100001")

    assert (scrubbed.sync_log, scrubbed.outbox, scrubbed.receipts) == (1, 1, 2)
    with session_scope() as session:
        rows = {r.user_id: r for r in session.execute(select(SyncLog)).scalars()}
        assert (
            rows[erased].status,
            rows[erased].remote_id,
            rows[erased].payload_hash,
            rows[erased].error,
        ) == (
            "created",
            None,
            None,
            None,
        )
        assert rows[other].remote_id == "cus_StaysCustomer"  # nobody else's history changes
        payloads: dict[str, Any] = dict(
            session.execute(select(OutboxEvent.id, OutboxEvent.payload)).tuples().all()
        )
        receipts = {r.vendor_event_id: r.payload for r in session.execute(select(WebhookReceipt)).scalars()}
    assert payloads == {"login-1": {}, "login-2": {"ip": "203.0.113.9"}}
    assert receipts["evt_2"] == {"customer": "cus_StaysCustomer"}
    assert "cus_GoneCustomer1" not in json.dumps(receipts) and "010-0001" not in json.dumps(receipts)

    # Neither a worker's claim nor a replay ever carries an erased person's delivery; others go on.
    for user_id, event_id in ((erased, "login-1"), (other, "login-2")):
        with session_scope() as session:
            session.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(routed_at=now))
            deliveries.create(session, [(event_id, "user.login", user_id, "hubspot", 5)])
    claim = deliveries.claim("worker-a", 10)
    assert claim is not None and claim.event_ids == ["login-2"]
    with session_scope() as session:
        session.execute(update(Delivery).values(status=DeliveryStatus.FAILED.value, lease_expires_at=None))
    assert deliveries.reopen(statuses=["failed"]) == 1


def test_an_erasure_waits_out_a_batch_in_flight_and_nothing_arrives_after_it(
    sqlite_database: str, sandbox: Any
) -> None:
    user_id = add_person(email="in.flight@example.org")
    registered = add_event("user.registered", user_id)
    sandbox.fail("hubspot", mode="slow", delay=3.0, count=1)  # the batch's HubSpot push is under way
    batch = threading.Thread(target=lambda: user_registered(event_ids=[registered]))
    batch.start()
    wait_for(lambda: deliveries.in_flight_for(user_id), "the registration's batch holding its deliveries")
    erasure = add_event("user.deletion_requested", user_id)

    first = erase_user(event_ids=[erasure])  # the deliveries in flight are waited out, not raced

    assert {row["outcome"] for row in first} == {"pending"}
    batch.join(60)
    wait_for(
        lambda: all(r["outcome"] != "pending" for r in erase_user(event_ids=[erasure])),
        "the erasure at every destination, once the batch in flight is done",
        timeout=180,
    )
    seen = {
        vendor: len(sandbox.requests(vendor)) for vendor in ("hubspot", "salesforce", "stripe", "mailchimp")
    }
    drain()
    assert {vendor: len(sandbox.requests(vendor)) for vendor in seen} == seen
    for vendor, kind in (("hubspot", "contacts"), ("salesforce", "Contact"), ("stripe", "customers")):
        assert sandbox.objects(vendor, kind) == [], vendor
    with session_scope() as session:
        kept = session.execute(
            select(SyncLog.remote_id).where(SyncLog.user_id == user_id, SyncLog.object != "person")
        )
        assert set(kept.scalars()) == {None}


def test_a_disabled_destination_that_held_the_person_waits_and_erases_once_enabled(
    sqlite_database: str, sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = add_person(email="was.at.salesforce@example.org")
    user_registered(event_ids=[add_event("user.registered", user_id)])
    assert len(sandbox.objects("salesforce", "Contact")) == 1
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(routing_copy(tmp_path / "mappings", disable=["salesforce"])))
    reload_settings()

    erase_user(event_ids=[add_event("user.deletion_requested", user_id)])

    report = erasure_report(user_id, monkeypatch)
    salesforce = by_destination(report)["salesforce"]
    assert (salesforce["outcome"], salesforce["reason"]) == ("pending", "pending: destination disabled")
    assert (
        report["outstanding"] == ["salesforce"] and by_destination(report)["hubspot"]["outcome"] == "erased"
    )
    assert len(sandbox.objects("salesforce", "Contact")) == 1

    monkeypatch.delenv("ENNU_MAPPINGS_DIR")  # enabled again: the next drain (or the hourly retry) erases
    reload_settings()
    drain()

    report = erasure_report(user_id, monkeypatch)
    assert by_destination(report)["salesforce"]["outcome"] == "erased" and report["outstanding"] == []
    assert sandbox.objects("salesforce", "Contact") == []


def test_a_consent_withdrawn_in_the_host_unsubscribes_at_mailchimp_and_sets_the_crm_opt_outs(
    sqlite_database: str, sandbox: Any
) -> None:
    user_id = add_person(email="changed.mind@example.org", marketing=True, communication=True)
    user_registered(event_ids=[add_event("user.registered", user_id)])
    with session_scope() as session:
        session.execute(
            update(User)
            .where(User.id == user_id)
            .values(marketing_consent=False, communication_consent=False)
        )
    changed = add_event("user.consent_changed", user_id)
    admit([changed])
    with session_scope() as session:
        asked = set(
            session.execute(select(Delivery.integration).where(Delivery.event_id == changed)).scalars()
        )
    assert asked == {"mailchimp", "hubspot", "salesforce"}

    consent_changed(event_ids=[changed])

    assert [m["status"] for m in sandbox.objects("mailchimp", "members")] == ["archived"]
    [contact] = sandbox.objects("hubspot", "contacts")
    assert contact["properties"]["hs_email_optout"] == "true"
    [crm] = sandbox.objects("salesforce", "Contact")
    assert (crm["HasOptedOutOfEmail"], crm["DoNotCall"]) == (True, True)
    with session_scope() as session:
        states = set(session.execute(select(Delivery.status).where(Delivery.event_id == changed)).scalars())
    assert states == {"delivered"}
