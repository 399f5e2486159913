"""Inbound vendor webhooks: valid, wrong, stale and replayed deliveries, over the real app.

Signed with the vendors' own SDKs (tests/webhook_signing.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ennu.db import session_scope
from ennu.models import OutboxEvent, Subscription, User, WebhookReceipt
from ennu.settings import reload_settings
from flows.subscription_changed import subscription_changed
from flows.user_registered import user_registered
from flows.webhook_received import webhook_received
from tests.factories import add_event, add_person
from tests.webhook_signing import (
    hubspot_legacy_headers,
    hubspot_v3_headers,
    intake_with,
    mandrill_form,
    stripe_headers,
    twilio_form,
)

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture()
def api(sqlite_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with intake_with(monkeypatch) as client:
        yield client


def configured(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    reload_settings()


def receipts() -> list[tuple[str, str]]:
    with session_scope() as session:
        return [(r.integration, r.vendor_event_id) for r in session.execute(select(WebhookReceipt)).scalars()]


def test_stripe_valid_once_replay_acknowledged_wrong_and_stale_refused(api: TestClient) -> None:
    body = json.dumps({"id": "evt_1", "type": "customer.subscription.updated", "data": {}}).encode()
    first = api.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    replay = api.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert first.status_code == 200 and first.json()["new"] == 1
    assert replay.status_code == 200 and replay.json()["duplicates"] == 1
    assert receipts() == [("stripe", "evt_1")]

    assert (
        api.post("/webhooks/stripe", content=body, headers=stripe_headers(body, "whsec_x")).status_code == 401
    )
    stale = stripe_headers(body, at=int(time.time()) - 301)
    assert api.post("/webhooks/stripe", content=body, headers=stale).status_code == 401
    reserialised = json.dumps(json.loads(body), indent=1).encode()
    assert api.post("/webhooks/stripe", content=reserialised, headers=stripe_headers(body)).status_code == 401
    assert api.post("/webhooks/stripe", content=body).status_code == 401


def test_hubspot_v3_each_event_stored_once(api: TestClient) -> None:
    body = json.dumps(
        [
            {"eventId": 11, "subscriptionType": "contact.propertyChange"},
            {"eventId": 12, "subscriptionType": "contact.deletion"},
        ]
    ).encode()
    headers = hubspot_v3_headers(body)
    assert api.post("/webhooks/hubspot", content=body, headers=headers).json()["new"] == 2
    assert api.post("/webhooks/hubspot", content=body, headers=headers).json()["duplicates"] == 2
    stale = hubspot_v3_headers(body, at_ms=int((time.time() - 400) * 1000))
    assert api.post("/webhooks/hubspot", content=body, headers=stale).status_code == 401


def test_mailchimp_url_secret_and_validation_ping(api: TestClient) -> None:
    assert api.get("/webhooks/mailchimp?secret=mc-url-secret").status_code == 200
    assert api.get("/webhooks/mailchimp?secret=guess").status_code == 401
    form = urlencode(
        {"type": "unsubscribe", "fired_at": "2026-11-29 10:00:00", "data[email]": "a@example.com"}
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert (
        api.post("/webhooks/mailchimp?secret=mc-url-secret", content=form, headers=headers).json()["new"] == 1
    )
    assert api.post("/webhooks/mailchimp?secret=nope", content=form, headers=headers).status_code == 401


def test_wrong_mailchimp_url_secrets_are_throttled_like_tokens_and_signed_vendors_are_not(
    api: TestClient,
) -> None:
    """Mailchimp's audience webhooks carry only a URL secret: guessing it is guessing a credential, so the
    21st wrong one in a minute is 429 (GET ping and POST alike), while the right one still passes. A signed
    body (Stripe) is not a guess at a stored secret and is never throttled."""
    form = urlencode(
        {"type": "unsubscribe", "fired_at": "2026-11-29 10:00:00", "data[email]": "b@example.com"}
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    guesses = [api.get(f"/webhooks/mailchimp?secret=guess-{n}").status_code for n in range(10)]
    guesses += [
        api.post(f"/webhooks/mailchimp?secret=guess-{n}", content=form, headers=headers).status_code
        for n in range(10)
    ]
    throttled = api.post("/webhooks/mailchimp?secret=guess-x", content=form, headers=headers)
    ping = api.get("/webhooks/mailchimp?secret=guess-y")
    right = api.post("/webhooks/mailchimp?secret=mc-url-secret", content=form, headers=headers)
    body = json.dumps({"id": "evt_t", "type": "customer.updated", "data": {"object": {}}}).encode()
    stripe = [
        api.post("/webhooks/stripe", content=body, headers=stripe_headers(body, "whsec_x")).status_code
        for _ in range(3)
    ]

    assert guesses == [401] * 20
    assert throttled.status_code == 429 and ping.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60 and "guess" not in throttled.text
    assert right.status_code == 200 and right.json()["new"] == 1
    assert stripe == [401] * 3


def test_mandrill_and_twilio_signatures(api: TestClient) -> None:
    form, headers = mandrill_form([{"_id": "m1", "event": "unsub"}])
    assert api.post("/webhooks/mailchimp-transactional", content=form, headers=headers).json()["new"] == 1

    params = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+15550100000"}
    form, headers = twilio_form(params)
    assert api.post("/webhooks/twilio", content=form, headers=headers).json()["new"] == 1
    params["MessageStatus"] = "failed"  # a changed byte
    assert api.post("/webhooks/twilio", content=urlencode(params), headers=headers).status_code == 401
    assert api.post("/webhooks/unknown", content=b"{}").status_code == 404


# --------------------------------------------------------------- what the webhook-received flow does


def receipt_ids(integration: str) -> list[int]:
    with session_scope() as session:
        return list(
            session.execute(
                select(WebhookReceipt.id)
                .where(WebhookReceipt.integration == integration)
                .order_by(WebhookReceipt.id)
            ).scalars()
        )


def subscription_event(event_id: str, kind: str, status: str, created: int, customer: str) -> bytes:
    """A `customer.subscription.*` event as Stripe sends it (API 2025-03-31+: the period on the item)."""
    item = {"id": "si_1", "price": {"id": "price_monthly"}, "current_period_end": 1_798_761_600}
    subscription = {
        "id": "sub_1",
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": False,
        "items": {"object": "list", "data": [item]},
        "metadata": {},
    }
    event = {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": created,
        "data": {"object": subscription},
    }
    return json.dumps(event).encode()


def test_stripe_subscription_events_update_the_host_and_reach_the_crms(api: TestClient, sandbox: Any) -> None:
    user_id = add_person()
    user_registered(event_ids=[add_event("user.registered", user_id, event_id="reg-sub")])
    customer = sandbox.objects("stripe", "customers")[0]["id"]
    now = int(time.time())
    for event_id, kind, status, created in (
        ("evt_sub_created", "customer.subscription.created", "trialing", now - 60),
        ("evt_sub_updated", "customer.subscription.updated", "active", now - 30),
        ("evt_sub_late", "customer.subscription.updated", "incomplete", now - 45),  # older, arrives last
    ):
        body = subscription_event(event_id, kind, status, created, customer)
        assert api.post("/webhooks/stripe", content=body, headers=stripe_headers(body)).status_code == 200
    outcomes = webhook_received(receipt_ids=receipt_ids("stripe"))
    assert outcomes == {"subscription updated": 2, "stale event": 1}
    with session_scope() as session:
        row = session.execute(select(Subscription)).scalar_one()
        assert (row.user_id, row.status, row.price_id) == (user_id, "active", "price_monthly")
        assert row.current_period_end is not None and row.current_period_end.year == 2027
        raised = list(
            session.execute(
                select(OutboxEvent.id).where(OutboxEvent.type == "subscription.changed")
            ).scalars()
        )
    assert sorted(raised) == ["stripe-evt_sub_created", "stripe-evt_sub_updated"]
    assert webhook_received(receipt_ids=receipt_ids("stripe")) == {}  # each receipt is applied once

    subscription_changed(event_ids=raised)
    contact = next(c for c in sandbox.objects("hubspot", "contacts") if c["properties"].get("ennu_user_id"))
    assert contact["properties"]["ennu_subscription_status"] == "active"
    salesforce = sandbox.objects("salesforce", "Contact")[0]
    assert salesforce["ENNU_Subscription_Status__c"] == "active"


def test_unsubscribes_and_stop_replies_withdraw_consent(api: TestClient) -> None:
    person = add_person(email="leaver@example.com", phone="+1 555 010 9999")
    form = urlencode(
        {"type": "unsubscribe", "fired_at": "2026-11-29 10:00:00", "data[email]": "Leaver@example.com"}
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert (
        api.post("/webhooks/mailchimp?secret=mc-url-secret", content=form, headers=headers).status_code == 200
    )
    params = {"MessageSid": "SMstop", "From": "+15550109999", "To": "+15550100000", "Body": "STOP"}
    form, twilio = twilio_form(params)
    assert api.post("/webhooks/twilio", content=form, headers=twilio).status_code == 200

    outcomes = webhook_received(receipt_ids=receipt_ids("mailchimp") + receipt_ids("twilio"))
    assert outcomes == {"consent withdrawn": 2}
    with session_scope() as session:
        user = session.get(User, person)
        assert user is not None and (user.marketing_consent, user.communication_consent) == (False, False)


# --------------------------------------------------------------- freshness and odd input


def test_hubspot_v1_and_v2_only_deliveries_are_refused_unless_enabled(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps([{"eventId": 21, "subscriptionType": "contact.creation"}]).encode()
    for version in ("v1", "v2"):
        legacy = hubspot_legacy_headers(body, version)
        assert api.post("/webhooks/hubspot", content=body, headers=legacy).status_code == 401
    assert receipts() == []

    configured(monkeypatch, ENNU_WEBHOOK_HUBSPOT_LEGACY_SIGNATURES="true")
    legacy = hubspot_legacy_headers(body, "v1")
    assert api.post("/webhooks/hubspot", content=body, headers=legacy).json()["new"] == 1
    wrong = hubspot_legacy_headers(body, "v1", secret="not-the-secret")
    assert api.post("/webhooks/hubspot", content=body, headers=wrong).status_code == 401
    # A v3 header is still checked as v3 (with its timestamp) when legacy signatures are on.
    stale = hubspot_v3_headers(body, at_ms=int((time.time() - 400) * 1000))
    assert api.post("/webhooks/hubspot", content=body, headers={**legacy, **stale}).status_code == 401


@pytest.mark.parametrize("vendor", ["stripe", "hubspot"])
def test_one_tolerance_holds_for_every_signed_timestamp(
    vendor: str, api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    configured(monkeypatch, ENNU_WEBHOOK_TOLERANCE_SECONDS="60")

    def delivery(event_id: str, age: int) -> tuple[bytes, dict[str, str]]:
        at = int(time.time()) - age
        if vendor == "stripe":
            body = json.dumps({"id": event_id, "type": "customer.updated"}).encode()
            return body, stripe_headers(body, at=at)
        body = json.dumps([{"eventId": event_id, "subscriptionType": "contact.creation"}]).encode()
        return body, hubspot_v3_headers(body, at_ms=at * 1000)

    for event_id, age, status in (("fresh", 20, 200), ("stale", 90, 401), ("future", -90, 401)):
        body, headers = delivery(f"{vendor}-{event_id}", age)
        assert api.post(f"/webhooks/{vendor}", content=body, headers=headers).status_code == status, event_id
    assert receipts() == [(vendor, f"{vendor}-fresh")]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused_with_422(number: str, api: TestClient) -> None:
    body = b'{"id": "evt_nan", "type": "customer.subscription.updated", "created": ' + number.encode() + b"}"
    answer = api.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert answer.status_code == 422
    assert number not in answer.text
    assert receipts() == []
