"""Signed vendor webhooks for the tests, made with the vendors' own SDKs where they ship a signer.

Stripe (stripe-python's `WebhookSignature`), HubSpot (hubspot-api-client's `Signature`), Twilio
(twilio-python's `RequestValidator`) and Slack (slack_sdk's `SignatureVerifier`) sign here as they do in
production; Mandrill has no installed SDK, so its documented HMAC-SHA1 is spelled out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
import stripe
from fastapi.testclient import TestClient
from hubspot.utils.signature import Signature
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from ennu.db import session_scope
from ennu.models import WebhookReceipt
from ennu.settings import reload_settings
from intake.app import create_app

BASE = "https://hub.example.org"
FORM = "application/x-www-form-urlencoded"
# The secrets the tests' intake is configured with (set_webhook_secrets).
SECRETS = {
    "STRIPE_WEBHOOK_SECRETS": "whsec_new,whsec_old",
    "HUBSPOT_CLIENT_SECRETS": "hs-secret",
    "MAILCHIMP_WEBHOOK_SECRETS": "mc-url-secret",
    "MANDRILL_WEBHOOK_KEYS": "mandrill-key",
    "TWILIO_AUTH_TOKENS": "tw-token",
}


@contextmanager
def intake_with(
    monkeypatch: pytest.MonkeyPatch, variables: Mapping[str, str] = SECRETS
) -> Iterator[TestClient]:
    """The intake API at BASE with these settings (each vendor's webhook secret by default), then undone."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    reload_settings()
    with TestClient(create_app(), base_url=BASE) as client:
        yield client
    monkeypatch.undo()
    reload_settings()


def stripe_headers(body: bytes, secret: str = "whsec_old", at: int | None = None) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=at)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def hubspot_v3_headers(body: bytes, at_ms: int | None = None, secret: str = "hs-secret") -> dict[str, str]:
    timestamp = str(at_ms if at_ms is not None else int(time.time() * 1000))
    signature = Signature.get_signature(
        secret, body.decode(), "v3", http_uri=f"{BASE}/webhooks/hubspot", timestamp=timestamp
    )
    return {
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


def hubspot_legacy_headers(body: bytes, version: str = "v1", secret: str = "hs-secret") -> dict[str, str]:
    signature = Signature.get_signature(secret, body.decode(), version, http_uri=f"{BASE}/webhooks/hubspot")
    return {
        "X-HubSpot-Signature": signature,
        "X-HubSpot-Signature-Version": version,
        "Content-Type": "application/json",
    }


def twilio_form(params: dict[str, str], token: str = "tw-token") -> tuple[str, dict[str, str]]:
    signature = RequestValidator(token).compute_signature(f"{BASE}/webhooks/twilio", params)
    return urlencode(params), {"Content-Type": FORM, "X-Twilio-Signature": signature}


def mandrill_form(events: list[dict[str, Any]], key: str = "mandrill-key") -> tuple[str, dict[str, str]]:
    url = f"{BASE}/webhooks/mailchimp-transactional"
    encoded = json.dumps(events)
    signed = (url + "mandrill_events" + encoded).encode()
    signature = base64.b64encode(hmac.new(key.encode(), signed, hashlib.sha1).digest()).decode()
    return urlencode({"mandrill_events": encoded}), {"Content-Type": FORM, "X-Mandrill-Signature": signature}


def slack_signature(body: bytes, timestamp: str, secret: str = "sl") -> str:
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return signature


def hubspot_receipts() -> dict[int, WebhookReceipt]:
    """The stored HubSpot webhook receipts by HubSpot's event id, detached from their session."""
    with session_scope() as session:
        found = session.execute(select(WebhookReceipt).where(WebhookReceipt.integration == "hubspot"))
        rows = list(found.scalars())
        for row in rows:
            session.expunge(row)
        return {int(r.vendor_event_id): r for r in rows}
