"""Inbound vendor webhooks: valid, wrong, stale and replayed deliveries, over the real app."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ennu.db import session_scope
from ennu.models import WebhookReceipt
from intake.app import create_app

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture()
def api(sqlite_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRETS", "whsec_new,whsec_old")
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRETS", "hs-secret")
    monkeypatch.setenv("MAILCHIMP_WEBHOOK_SECRETS", "mc-url-secret")
    monkeypatch.setenv("MANDRILL_WEBHOOK_KEYS", "mandrill-key")
    monkeypatch.setenv("TWILIO_AUTH_TOKENS", "tw-token")
    with TestClient(create_app(), base_url="https://hub.example.org") as client:
        yield client


def receipts() -> list[tuple[str, str]]:
    with session_scope() as session:
        return [(r.integration, r.vendor_event_id) for r in session.execute(select(WebhookReceipt)).scalars()]


def stripe_headers(body: bytes, secret: str = "whsec_old", at: int | None = None) -> dict[str, str]:
    t = at or int(time.time())
    sig = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}


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
    ts = str(int(time.time() * 1000))
    uri = "https://hub.example.org/webhooks/hubspot"
    sig = base64.b64encode(
        hmac.new(b"hs-secret", b"POST" + uri.encode() + body + ts.encode(), hashlib.sha256).digest()
    ).decode()
    headers = {"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": ts}
    assert api.post("/webhooks/hubspot", content=body, headers=headers).json()["new"] == 2
    assert api.post("/webhooks/hubspot", content=body, headers=headers).json()["duplicates"] == 2
    old = str(int((time.time() - 400) * 1000))
    headers["X-HubSpot-Request-Timestamp"] = old
    assert api.post("/webhooks/hubspot", content=body, headers=headers).status_code == 401


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


def test_mandrill_and_twilio_signatures(api: TestClient) -> None:
    url = "https://hub.example.org/webhooks/mailchimp-transactional"
    events = json.dumps([{"_id": "m1", "event": "unsub"}])
    sig = base64.b64encode(
        hmac.new(b"mandrill-key", (url + "mandrill_events" + events).encode(), hashlib.sha1).digest()
    ).decode()
    form = urlencode({"mandrill_events": events})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Mandrill-Signature": sig}
    assert api.post("/webhooks/mailchimp-transactional", content=form, headers=headers).json()["new"] == 1

    url = "https://hub.example.org/webhooks/twilio"
    params = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+15550100000"}
    signed = url + "".join(k + v for k, v in sorted(params.items()))
    sig = base64.b64encode(hmac.new(b"tw-token", signed.encode(), hashlib.sha1).digest()).decode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig}
    assert api.post("/webhooks/twilio", content=urlencode(params), headers=headers).json()["new"] == 1
    params["MessageStatus"] = "failed"  # a changed byte
    assert api.post("/webhooks/twilio", content=urlencode(params), headers=headers).status_code == 401
    assert api.post("/webhooks/unknown", content=b"{}").status_code == 404
