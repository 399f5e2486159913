"""Webhook signature checks against the vendors' documented examples and SDKs, rotation, tampering and
staleness under the one configured tolerance."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator

import pytest
import stripe
from hubspot.utils.signature import Signature

from ennu.settings import reload_settings
from intake.signatures import (
    SignatureError,
    verify_hubspot_legacy,
    verify_hubspot_v3,
    verify_mandrill,
    verify_slack,
    verify_stripe,
    verify_twilio,
    verify_url_secret,
)
from tests.webhook_signing import slack_signature

NOW = 1_764_000_000.0


def stripe_header(body: bytes, secret: str, t: int) -> str:
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=t)


def hubspot_v3(secret: str, uri: str, body: bytes, timestamp_ms: str) -> str:
    return Signature.get_signature(secret, body.decode(), "v3", http_uri=uri, timestamp=timestamp_ms)


@pytest.fixture()
def tolerance(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setenv("ENNU_WEBHOOK_TOLERANCE_SECONDS", "30")
    reload_settings()
    yield 30
    monkeypatch.undo()
    reload_settings()


def test_stripe_accepts_a_valid_signature_and_any_rotated_secret() -> None:
    body = b'{"id":"evt_1","type":"customer.subscription.updated"}'
    verify_stripe(body, stripe_header(body, "whsec_old", int(NOW)), ["whsec_new", "whsec_old"], now=NOW)
    header = stripe_header(body, "whsec_new", int(NOW)) + ",v1=" + "0" * 64
    verify_stripe(body, header, ["whsec_new"], now=NOW)


@pytest.mark.parametrize("tamper", ["missing", "byte", "reserialised", "stale", "wrong-secret", "malformed"])
def test_stripe_refuses_tampered_or_stale_deliveries(tamper: str) -> None:
    body = b'{"id":"evt_1","type":"x"}'
    header: str | None = stripe_header(body, "whsec_1", int(NOW))
    if tamper == "missing":
        header = None
    elif tamper == "byte":
        body = body.replace(b"x", b"y")
    elif tamper == "reserialised":
        body = b'{"id": "evt_1", "type": "x"}'
    elif tamper == "stale":
        header = stripe_header(body, "whsec_1", int(NOW) - 301)
    elif tamper == "wrong-secret":
        header = stripe_header(body, "whsec_2", int(NOW))
    elif tamper == "malformed":
        header = "v1=abc"
    with pytest.raises(SignatureError):
        verify_stripe(body, header, ["whsec_1"], now=NOW)


def test_hubspot_v2_matches_the_documented_example() -> None:
    verify_hubspot_legacy(
        "v2",
        "GET",
        "https://www.example.com/webhook_uri",
        b"",
        "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e",
        ["yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"],
    )


def test_hubspot_v3_valid_stale_and_tampered() -> None:
    secret, uri, body = "s3cret", "https://hub.example.org/webhooks/hubspot", b'[{"eventId":1}]'
    ts = str(int(NOW * 1000))
    sig = hubspot_v3(secret, uri, body, ts)
    verify_hubspot_v3("POST", uri, body, sig, ts, ["other", secret], now=NOW)
    with pytest.raises(SignatureError):
        verify_hubspot_v3("POST", uri, body + b" ", sig, ts, [secret], now=NOW)
    with pytest.raises(SignatureError):
        verify_hubspot_v3("POST", uri, body, sig, ts, [secret], now=NOW + 301)


def test_twilio_matches_the_documented_example() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    verify_twilio(url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", ["12345"])
    with pytest.raises(SignatureError):
        verify_twilio(url, {**params, "Digits": "1235"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", ["12345"])


def test_mandrill_signs_url_and_sorted_fields() -> None:
    url, key = "https://hub.example.org/webhooks/mailchimp-transactional", "mk_1"
    params = {"mandrill_events": '[{"event":"unsub"}]'}
    sig = base64.b64encode(
        hmac.new(
            key.encode(), (url + "mandrill_events" + params["mandrill_events"]).encode(), hashlib.sha1
        ).digest()
    ).decode()
    verify_mandrill(url, params, sig, [key])
    with pytest.raises(SignatureError):
        verify_mandrill(url + "x", params, sig, [key])


def test_slack_v0_and_url_secrets() -> None:
    body, ts = b"payload=1", str(int(NOW))
    sig = slack_signature(body, ts)
    assert sig == "v0=" + hmac.new(b"sl", b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    verify_slack(body, sig, ts, ["sl"], now=NOW)
    with pytest.raises(SignatureError):
        verify_slack(body, sig, ts, ["sl"], now=NOW + 400)
    verify_url_secret("abc", ["zzz", "abc"])
    with pytest.raises(SignatureError):
        verify_url_secret("abd", ["abc"])


def test_the_configured_tolerance_holds_for_every_timestamped_signature(tolerance: int) -> None:
    """ENNU_WEBHOOK_TOLERANCE_SECONDS, not a constant: Stripe, HubSpot v3 and Slack, past and future."""
    body, uri = b'[{"eventId":1}]', "https://hub.example.org/webhooks/hubspot"

    def check(vendor: str, at: int) -> None:
        if vendor == "stripe":
            verify_stripe(body, stripe_header(body, "whsec_1", at), ["whsec_1"], now=NOW)
        elif vendor == "hubspot":
            ms = str(at * 1000)
            verify_hubspot_v3("POST", uri, body, hubspot_v3("s", uri, body, ms), ms, ["s"], now=NOW)
        else:
            verify_slack(body, slack_signature(body, str(at)), str(at), ["sl"], now=NOW)

    for vendor in ("stripe", "hubspot", "slack"):
        check(vendor, int(NOW) - (tolerance - 5))
        for age in (tolerance + 5, -(tolerance + 5)):
            with pytest.raises(SignatureError, match="tolerance"):
                check(vendor, int(NOW) - age)
