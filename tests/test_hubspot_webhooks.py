"""HubSpot webhooks end to end: a signed v3 batch of property changes → receipts (once, minimised) → a
delivery worker → the host's user, in seconds; older changes never overwrite newer ones, the poll included."""

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
from ennu.erasure import scrub_person
from ennu.models import InboundFieldVersion, OutboxEvent, SyncLog, User
from ennu.receipts import HUBSPOT_APPLIED_PROPERTIES, kept_payload
from ennu.settings import get_settings
from flows.inbound_sync import inbound_sync, watermark_variable
from flows.user_registered import user_registered
from mappings.inbound import inbound_mappings
from tests.engine_support import running_worker, wait_for
from tests.factories import add_event, add_person
from tests.webhook_signing import hubspot_receipts, hubspot_v3_headers, intake_with

pytestmark = pytest.mark.usefixtures("prefect_server")
REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


@pytest.fixture()
def api(database: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with intake_with(monkeypatch) as client:
        yield client


def change(event_id: int, object_id: str, name: str, value: str, at_ms: int, kind: str = "contact") -> dict:
    """One event of HubSpot's webhook batch, as HubSpot sends it."""
    return {
        "eventId": event_id,
        "subscriptionId": 2345,
        "portalId": 62515,
        "appId": 98765,
        "occurredAt": at_ms,
        "subscriptionType": f"{kind}.propertyChange",
        "attemptNumber": 0,
        "objectId": int(object_id),
        "propertyName": name,
        "propertyValue": value,
        "changeSource": "CRM_UI",
        "sourceId": "userId:4567",
    }


def host_user(user_id: int) -> User:
    with session_scope() as session:
        user = session.get(User, user_id)
        assert user is not None
        session.expunge(user)
        return user


def registered_contact(sandbox: Any, **person: Any) -> tuple[int, str]:
    user_id = add_person(**person)
    user_registered(event_ids=[add_event("user.registered", user_id)])
    [contact] = [
        c
        for c in sandbox.objects("hubspot", "contacts")
        if c["properties"].get("ennu_user_id") == str(user_id)
    ]
    return user_id, str(contact["id"])


def test_a_signed_batch_of_changes_reaches_the_host_once_newest_first_and_minimised(
    api: TestClient, sandbox: Any
) -> None:
    user_id, contact_id = registered_contact(sandbox, marketing=True)
    now = int(time.time() * 1000)
    batch = [
        change(101, contact_id, "lifecyclestage", "opportunity", now - 5_000),
        change(102, contact_id, "hubspot_owner_id", "31415", now - 4_000),
        change(103, contact_id, "lifecyclestage", "lead", now - 60_000),  # older, and sent after the newer
        change(104, contact_id, "firstname", "Adah", now - 3_000),  # not ours to take
        change(105, "999", "dealname", "Sleep plan", now - 2_000, kind="deal"),  # no deal property of ours
        change(106, contact_id, "hs_email_optout", "true", now - 1_000),
        change(107, "424242", "lifecyclestage", "customer", now - 1_000),  # a contact we never wrote
    ]
    body = json.dumps(batch).encode()

    first = api.post("/webhooks/hubspot", content=body, headers=hubspot_v3_headers(body))
    again = api.post("/webhooks/hubspot", content=body, headers=hubspot_v3_headers(body))  # a redelivery
    assert first.json() == {"received": 7, "new": 7, "duplicates": 0}
    assert again.json() == {"received": 7, "new": 0, "duplicates": 7}

    stored = hubspot_receipts()
    assert stored[101].payload == {
        "eventId": 101,
        "subscriptionType": "contact.propertyChange",
        "objectId": int(contact_id),
        "propertyName": "lifecyclestage",
        "occurredAt": now - 5_000,
        "propertyValue": "opportunity",
    }
    assert stored[104].payload == {"subscriptionType": "contact.propertyChange"}  # no name, no value
    assert stored[105].payload == {"subscriptionType": "deal.propertyChange"}

    with running_worker("hubspot-webhooks"):
        wait_for(lambda: all(r.processed_at for r in hubspot_receipts().values()), "every receipt applied")
        outcomes = {n: r.status for n, r in hubspot_receipts().items()}
        wait_for(
            lambda: host_user(user_id).marketing_consent is False and open_consent_event(user_id),
            "the withdrawal raised and carried",
        )
    assert outcomes == {
        101: "applied",
        102: "applied",
        103: "stale-change",
        104: "not-mapped",
        105: "not-mapped",
        106: "consent-withdrawn",
        107: "unmatched",
    }
    user = host_user(user_id)
    assert (user.lifecycle_stage, user.hubspot_owner_id, user.marketing_consent) == (
        "opportunity",
        "31415",
        False,
    )
    assert user.first_name != "Adah"
    with session_scope() as session:
        received = session.execute(
            select(SyncLog.remote_id).where(SyncLog.connector == "hubspot", SyncLog.status == "received")
        ).scalars()
        assert list(received) == [contact_id] * 3
    # The withdrawal went on as the host's own would: the marketing list lost the member.
    archived = [
        r for r in sandbox.requests("mailchimp") if r["method"] == "DELETE" and "/members/" in r["path"]
    ]
    assert len(archived) == 1


def open_consent_event(user_id: int) -> bool:
    """The hub raised `user.consent_changed` for the person and the workers carried it."""
    with session_scope() as session:
        status = session.execute(
            select(OutboxEvent.status).where(
                OutboxEvent.type == "user.consent_changed", OutboxEvent.subject == user_id
            )
        ).scalar()
        return status == "done"


def test_a_webhook_older_than_what_the_poll_applied_changes_nothing_and_erasure_forgets_versions(
    api: TestClient, sandbox: Any
) -> None:
    Variable.unset(watermark_variable("hubspot"))
    user_id, contact_id = registered_contact(sandbox)
    hubspot = HubSpotConnector.from_settings(get_settings(), rate_limited=False)
    try:  # someone at the clinic moves the contact on in HubSpot; the hourly poll brings it in
        hubspot.http.request(
            "PATCH",
            f"/crm/v3/objects/contacts/{contact_id}",
            json={"properties": {"lifecyclestage": "customer"}},
        )
    finally:
        hubspot.close()
    inbound_sync(integrations=["hubspot"])
    assert host_user(user_id).lifecycle_stage == "customer"

    # The webhook of an earlier change arrives late (HubSpot retries for a day).
    late = json.dumps([change(201, contact_id, "lifecyclestage", "lead", int(time.time() * 1000) - 600_000)])
    body = late.encode()
    assert api.post("/webhooks/hubspot", content=body, headers=hubspot_v3_headers(body)).json()["new"] == 1
    with running_worker("hubspot-late"):
        wait_for(lambda: hubspot_receipts()[201].processed_at is not None, "the late receipt applied")
    assert hubspot_receipts()[201].status == "stale-change"
    assert host_user(user_id).lifecycle_stage == "customer"

    user = host_user(user_id)
    scrub_person(user_id, user.email, user.phone)
    with session_scope() as session:
        left = session.execute(select(InboundFieldVersion).where(InboundFieldVersion.user_id == user_id))
        assert list(left.scalars()) == []


def test_the_kept_properties_are_the_inbound_halves_sources() -> None:
    halves = inbound_mappings(REPO_MAPPINGS)
    for kind, object_type in (("contact", "contacts"), ("deal", "deals")):
        inbound = halves[("hubspot", object_type)].inbound
        assert inbound is not None and inbound.object == object_type
        sources = {spec.source for spec in inbound.fields.values()}
        assert HUBSPOT_APPLIED_PROPERTIES[f"{kind}.propertyChange"] == sources
    assert kept_payload("hubspot", {"subscriptionType": "contact.creation", "objectId": 1}) == {
        "subscriptionType": "contact.creation"
    }
