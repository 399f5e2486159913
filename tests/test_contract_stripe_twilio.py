"""Contract: our Stripe and Twilio requests match what the official SDKs send for the same operations."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client as TwilioClient

from connectors.base import Person, Record
from connectors.stripe.connector import StripeConnector, idempotency_key
from connectors.twilio.connector import LIST_PAGE_SIZE, TwilioConnector, spoken_twiml
from ennu.models import SyncStatus
from ennu.receipts import STRIPE_FIELDS
from ennu.settings import get_settings
from intake.signatures import SignatureError, verify_stripe
from sandbox.stripe import (
    WEBHOOK_API_VERSION,
    charge,
    invoice,
    signature_header,
    signed_webhook,
    webhook_event,
)
from tests.capture import Captured, CapturingEndpoint

STRIPE_KEY = "sk_test_contract"
ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "contract-token"
FROM_NUMBER = "+15005550006"
CALLBACK = "https://hub.example.org/webhooks/twilio"
CUSTOMER = {
    "id": "cus_contract1",
    "object": "customer",
    "email": "ada@example.com",
    "created": 1700000000,
    "metadata": {"ennu_user_id": "42"},
}
EMPTY_LIST = {"object": "list", "url": "/v1/customers", "has_more": False, "data": []}
TWILIO_MESSAGE = {"sid": "SM" + "a" * 32, "account_sid": ACCOUNT_SID, "status": "queued"}
TWILIO_CALL = {"sid": "CA" + "b" * 32, "account_sid": ACCOUNT_SID, "status": "queued"}
NOON_IN_NEW_YORK = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
NO_MESSAGES = {
    "messages": [],
    "page": 0,
    "page_size": LIST_PAGE_SIZE,
    "start": 0,
    "end": 0,
    "first_page_uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?PageSize={LIST_PAGE_SIZE}&Page=0",
    "next_page_uri": None,
    "previous_page_uri": None,
    "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?PageSize={LIST_PAGE_SIZE}&Page=0",
}


def assert_same_request(ours: Captured, sdk: Captured, *headers: str) -> None:
    """Method, path, query, form body and the named headers agree (SDK telemetry headers aside)."""
    assert (ours.method, ours.path, ours.query) == (sdk.method, sdk.path, sdk.query)
    assert ours.form == sdk.form
    for name in headers:
        assert ours.headers.get(name) == sdk.headers.get(name), name


# ----------------------------------------------------------------------------------------- Stripe


@pytest.fixture()
def stripe_pair(
    endpoint: CapturingEndpoint, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[StripeConnector, stripe.StripeClient]]:
    monkeypatch.setenv("STRIPE_API_KEY", STRIPE_KEY)
    monkeypatch.setenv("STRIPE_BASE_URL", f"{endpoint.url}/v1")
    monkeypatch.setenv("STRIPE_API_VERSION", stripe.api_version)
    connector = StripeConnector.from_settings(get_settings(), rate_limited=False)
    sdk = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": endpoint.url}, max_network_retries=0)
    yield connector, sdk
    connector.close()


def person_record(event: str = "evt-1") -> Record:
    fields = {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "phone": "+14155550100",
        "metadata.ennu_user_id": 42,
    }
    return Record("user:42", event, 42, fields)


SDK_CUSTOMER_PARAMS: dict[str, Any] = {
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "phone": "+14155550100",
    "metadata": {"ennu_user_id": "42"},
}
STRIPE_HEADERS = ("authorization", "content-type", "idempotency-key", "stripe-version")


def test_stripe_customer_create_matches_the_sdk(
    endpoint: CapturingEndpoint, stripe_pair: tuple[StripeConnector, stripe.StripeClient]
) -> None:
    connector, sdk = stripe_pair
    endpoint.answer("GET", "/v1/customers", 200, EMPTY_LIST)
    endpoint.answer("POST", "/v1/customers", 200, CUSTOMER)

    [outcome] = connector.push("customers", "email", [person_record()])
    assert outcome.status == SyncStatus.CREATED and outcome.remote_id == CUSTOMER["id"]
    our_lookup, our_create = endpoint.take()

    sdk.v1.customers.list(params={"email": "ada@example.com", "limit": 100})
    key = idempotency_key("evt-1", "user:42", "create")
    sdk.v1.customers.create(params=SDK_CUSTOMER_PARAMS, options={"idempotency_key": key})  # type: ignore[arg-type]
    sdk_lookup, sdk_create = endpoint.take()

    assert_same_request(our_lookup, sdk_lookup, "authorization", "stripe-version")
    assert_same_request(our_create, sdk_create, *STRIPE_HEADERS)
    assert our_create.headers["authorization"] == f"Bearer {STRIPE_KEY}"
    assert our_create.headers["content-type"] == "application/x-www-form-urlencoded"
    assert our_create.headers["idempotency-key"] == key
    assert ("metadata[ennu_user_id]", "42") in our_create.form


def test_stripe_customer_update_matches_the_sdk(
    endpoint: CapturingEndpoint, stripe_pair: tuple[StripeConnector, stripe.StripeClient]
) -> None:
    connector, sdk = stripe_pair
    endpoint.answer("GET", "/v1/customers", 200, {**EMPTY_LIST, "data": [CUSTOMER]})
    endpoint.answer("POST", f"/v1/customers/{CUSTOMER['id']}", 200, CUSTOMER)

    [outcome] = connector.push("customers", "email", [person_record("evt-2")])
    assert outcome.status == SyncStatus.UPDATED and outcome.remote_id == CUSTOMER["id"]
    _, our_update = endpoint.take()
    assert our_update.headers.get("idempotency-key")

    sdk.v1.customers.update(
        str(CUSTOMER["id"]),
        params=SDK_CUSTOMER_PARAMS,  # type: ignore[arg-type]
        options={"idempotency_key": our_update.headers["idempotency-key"]},
    )
    [sdk_update] = endpoint.take()
    assert_same_request(our_update, sdk_update, *STRIPE_HEADERS)


def test_stripe_erasure_reads_and_deletes_as_the_sdk_does(
    endpoint: CapturingEndpoint, stripe_pair: tuple[StripeConnector, stripe.StripeClient]
) -> None:
    connector, sdk = stripe_pair
    endpoint.answer("GET", "/v1/customers", 200, {**EMPTY_LIST, "data": [CUSTOMER]})
    endpoint.answer("GET", "/v1/subscriptions", 200, {**EMPTY_LIST, "url": "/v1/subscriptions"})
    endpoint.answer("DELETE", f"/v1/customers/{CUSTOMER['id']}", 200, {"id": CUSTOMER["id"], "deleted": True})

    assert connector.erase(Person(user_id=42, email="ada@example.com")).status == SyncStatus.ERASED
    _, our_subscriptions, our_delete = endpoint.take()

    sdk.v1.subscriptions.list(params={"customer": str(CUSTOMER["id"]), "status": "all", "limit": 100})
    sdk.v1.customers.delete(str(CUSTOMER["id"]))
    sdk_subscriptions, sdk_delete = endpoint.take()
    assert_same_request(our_subscriptions, sdk_subscriptions, "authorization", "stripe-version")
    assert_same_request(our_delete, sdk_delete, "authorization", "stripe-version")


def stand_in_webhooks() -> list[dict[str, Any]]:
    """One event of each payment-tracking type, as the Stripe stand-in makes them."""
    customer = str(CUSTOMER["id"])
    return [
        webhook_event("invoice.paid", invoice(customer, paid=True, amount=4900, subscription="sub_1")),
        webhook_event("invoice.payment_failed", invoice(customer, paid=False, amount=4900)),
        webhook_event("charge.refunded", charge(customer, amount=4900, amount_refunded=1200)),
        webhook_event("customer.deleted", CUSTOMER),
    ]


def test_stripe_sdk_verifies_the_stand_ins_signed_webhooks_as_the_intake_does() -> None:
    for event in stand_in_webhooks():
        body, headers = signed_webhook(event, "whsec_contract")
        parsed = stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], "whsec_contract")
        assert (parsed.id, parsed.type, parsed.created) == (event["id"], event["type"], event["created"])
        verify_stripe(body, headers["Stripe-Signature"], ["whsec_contract"])
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], "whsec_other")
        with pytest.raises(SignatureError):
            verify_stripe(body, headers["Stripe-Signature"], ["whsec_other"])
    body = json.dumps(stand_in_webhooks()[0]).encode()
    at = int(time.time())
    sdk_header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), "whsec_contract", timestamp=at
    )
    assert signature_header(body, "whsec_contract", at) == sdk_header


def test_stand_in_webhooks_carry_the_fields_of_the_sdks_resources() -> None:
    """The stand-in speaks the pinned SDK's API version: every field it sends is one of that version's, and
    every field the handlers read from an invoice or a charge is there."""
    assert stripe.api_version == WEBHOOK_API_VERSION
    resources = {"invoice": stripe.Invoice, "charge": stripe.Charge, "customer": stripe.Customer}
    for event in stand_in_webhooks():
        assert set(event) <= set(stripe.Event.__annotations__)
        found = event["data"]["object"]
        assert set(found) <= set(resources[found["object"]].__annotations__), found["object"]
    kept = set(STRIPE_FIELDS["data"]["object"])
    assert {"amount_paid", "amount_due", "currency", "customer", "status"} <= kept & set(
        stripe.Invoice.__annotations__
    )
    assert {"amount", "amount_refunded", "refunded", "currency", "customer"} <= kept & set(
        stripe.Charge.__annotations__
    )
    # Read for webhook endpoints on versions before 2025-03-31 only, which Stripe removed then.
    assert "charge" not in stripe.Invoice.__annotations__ and "invoice" not in stripe.Charge.__annotations__


# ----------------------------------------------------------------------------------------- Twilio


class LoopbackTwilioHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client, sent to the capturing endpoint instead of api.twilio.com."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> TwilioResponse:
        return super().request(method, url.replace("https://api.twilio.com", self.base_url), *args, **kwargs)


@pytest.fixture()
def twilio_pair(
    endpoint: CapturingEndpoint, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TwilioConnector, TwilioClient]]:
    for name in ("TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET", "TWILIO_MESSAGING_SERVICE_SID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("TWILIO_BASE_URL", endpoint.url)
    monkeypatch.setenv("TWILIO_FROM_NUMBER", FROM_NUMBER)
    monkeypatch.setenv("TWILIO_STATUS_CALLBACK_URL", CALLBACK)
    connector = TwilioConnector.from_settings(get_settings(), rate_limited=False)
    connector.clock = lambda: NOON_IN_NEW_YORK
    sdk = TwilioClient(
        ACCOUNT_SID,
        AUTH_TOKEN,
        account_sid=ACCOUNT_SID,
        http_client=LoopbackTwilioHttpClient(endpoint.url),
        environment={},
    )
    yield connector, sdk
    connector.close()


TWILIO_HEADERS = ("authorization", "content-type")


def test_twilio_message_create_matches_the_sdk(
    endpoint: CapturingEndpoint, twilio_pair: tuple[TwilioConnector, TwilioClient]
) -> None:
    connector, sdk = twilio_pair
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    endpoint.answer("POST", path, 201, TWILIO_MESSAGE)
    text = "ENNU: congratulations on completing your health goal! Reply STOP to opt out."
    record = Record(
        "health_goal:5", "evt-5", 5, {"To": "+14155550101", "Body": text, "timezone": "America/New_York"}
    )

    [outcome] = connector.push("messages", "To", [record])
    assert outcome.status == SyncStatus.CREATED and outcome.remote_id == TWILIO_MESSAGE["sid"]
    [ours] = endpoint.take()

    callback = dict(ours.form)["StatusCallback"]
    assert callback == f"{CALLBACK}?event_id=evt-5&record_key=health_goal%3A5"
    sdk.messages.create(to="+14155550101", from_=FROM_NUMBER, body=text, status_callback=callback)
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs, *TWILIO_HEADERS)
    assert ours.headers["authorization"].startswith("Basic ")


def test_twilio_voice_reminder_matches_the_sdk(
    endpoint: CapturingEndpoint, twilio_pair: tuple[TwilioConnector, TwilioClient]
) -> None:
    connector, sdk = twilio_pair
    endpoint.answer("POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json", 201, TWILIO_CALL)
    record = Record(
        "health_goal:6",
        "evt-6",
        6,
        {"To": "+14155550102", "Say": "Your ENNU reminder & more", "timezone": "America/New_York"},
    )
    assert connector.push("calls", "To", [record])[0].remote_id == TWILIO_CALL["sid"]
    [ours] = endpoint.take()

    sdk.calls.create(
        to="+14155550102",
        from_=FROM_NUMBER,
        twiml=spoken_twiml("Your ENNU reminder & more"),
        status_callback=dict(ours.form)["StatusCallback"],
    )
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs, *TWILIO_HEADERS)


def test_twilio_connection_test_reads_the_account_as_the_sdk_does(
    endpoint: CapturingEndpoint, twilio_pair: tuple[TwilioConnector, TwilioClient]
) -> None:
    connector, sdk = twilio_pair
    endpoint.answer("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}.json", 200, {"sid": ACCOUNT_SID})
    assert connector.test_connection().ok
    [ours] = endpoint.take()
    sdk.api.v2010.accounts(ACCOUNT_SID).fetch()
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs, "authorization")


def test_twilio_reconcile_lists_messages_as_the_sdk_does(
    endpoint: CapturingEndpoint, twilio_pair: tuple[TwilioConnector, TwilioClient]
) -> None:
    connector, sdk = twilio_pair
    endpoint.answer("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", 200, NO_MESSAGES)
    record = Record(
        "health_goal:7",
        "evt-7",
        7,
        {"To": "+14155550103", "Body": "ENNU reminder", "timezone": "America/New_York"},
    )
    assert connector.reconcile("messages", [record], NOON_IN_NEW_YORK) == {}
    [ours] = endpoint.take()

    day = datetime(2026, 7, 1, tzinfo=UTC)  # the SDK writes a datetime as 2026-07-01T00:00:00Z
    assert sdk.messages.list(to="+14155550103", date_sent_after=day, page_size=LIST_PAGE_SIZE) == []
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs, "authorization")
    assert ours.method == "GET" and dict(ours.query)["DateSent>"] == "2026-07-01T00:00:00Z"


# ------------------------------------------------------------------------- Twilio appointment reminders

SERVICE_SID = "MG" + "c" * 32
REMINDER_TEXT = "ENNU: a reminder of your appointment on {time}. Reply STOP to opt out."
SPOKEN_TEXT = "Hello, this is ENNU with a reminder of your appointment on {time}. Goodbye."


def reminder(
    appointment: int, starts_at: datetime, *, channel: str = "sms", status: str = "scheduled"
) -> Record:
    fields = {
        "To": "+14155550104",
        "Body": REMINDER_TEXT,
        "Say": SPOKEN_TEXT,
        "appointment": appointment,
        "starts_at": starts_at,
        "status": status,
        "channel": channel,
        "timezone": "America/New_York",
    }
    return Record(f"appointment:{appointment}", f"evt-a{appointment}", 8, fields)


def test_twilio_scheduled_reminder_matches_the_sdk(
    endpoint: CapturingEndpoint, twilio_pair: tuple[TwilioConnector, TwilioClient]
) -> None:
    connector, sdk = twilio_pair
    connector.reminder_service_sid = SERVICE_SID
    endpoint.answer("POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", 201, TWILIO_MESSAGE)
    starts_at = NOON_IN_NEW_YORK + timedelta(days=3)

    [outcome] = connector.push("reminders", "appointment", [reminder(1, starts_at)])
    assert outcome.status == SyncStatus.CREATED and outcome.remote_id == TWILIO_MESSAGE["sid"]
    [ours] = endpoint.take()

    form = dict(ours.form)
    assert (
        form["Body"] == "ENNU: a reminder of your appointment on Sat 04 Jul at 12:00. Reply STOP to opt out."
    )
    sdk.messages.create(
        to="+14155550104",
        messaging_service_sid=SERVICE_SID,
        body=form["Body"],
        schedule_type="fixed",
        send_at=starts_at - timedelta(days=1),  # the SDK writes it as ISO 8601 in UTC
        status_callback=form["StatusCallback"],
    )
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs, *TWILIO_HEADERS)
    assert form["SendAt"] == "2026-07-03T16:00:00Z"


def test_twilio_reminder_cancel_matches_the_sdk(
    endpoint: CapturingEndpoint, twilio_pair: tuple[TwilioConnector, TwilioClient]
) -> None:
    connector, sdk = twilio_pair
    sid = TWILIO_MESSAGE["sid"]
    connector.scheduled_reminders = lambda keys: {key: sid for key in keys}
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"
    endpoint.answer("POST", path, 200, {**TWILIO_MESSAGE, "status": "canceled"})
    cancelled = reminder(2, NOON_IN_NEW_YORK + timedelta(days=3), status="cancelled")

    assert connector.push("reminders", "appointment", [cancelled])[0].status == SyncStatus.UPDATED
    [ours] = endpoint.take()

    sdk.messages(sid).update(status="canceled")
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs, *TWILIO_HEADERS)


def test_twilio_voice_reminder_call_matches_the_sdk(
    endpoint: CapturingEndpoint, twilio_pair: tuple[TwilioConnector, TwilioClient]
) -> None:
    connector, sdk = twilio_pair
    endpoint.answer("POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json", 201, TWILIO_CALL)
    due = reminder(3, NOON_IN_NEW_YORK + timedelta(hours=5), channel="voice")  # its reminder time has passed

    assert connector.push("reminders", "appointment", [due])[0].remote_id == TWILIO_CALL["sid"]
    [ours] = endpoint.take()

    spoken = "Hello, this is ENNU with a reminder of your appointment on Wed 01 Jul at 17:00. Goodbye."
    sdk.calls.create(
        to="+14155550104",
        from_=FROM_NUMBER,
        twiml=spoken_twiml(spoken),
        status_callback=dict(ours.form)["StatusCallback"],
    )
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs, *TWILIO_HEADERS)
