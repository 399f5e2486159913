"""Stripe's payment webhooks end to end: signed webhook → intake → receipt → webhook-received → the host's
payments (or subscription, or the person's Stripe link) → `payment.changed` → the CRMs' stand-ins.

The webhooks are made and signed by the Stripe stand-in (sandbox/stripe.py) in Stripe's shapes.
"""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, select

from ennu.db import session_scope
from ennu.erasure import scrub_person
from ennu.models import OutboxEvent, Payment, Subscription, SyncLog, User, WebhookReceipt, utcnow
from flows.payment_changed import payment_changed
from flows.subscription_changed import subscription_changed
from flows.user_registered import user_registered
from flows.webhook_received import webhook_received
from sandbox.hubspot import STRICT_ENV
from sandbox.stripe import charge, invoice, signed_webhook, webhook_event
from tests.engine_support import delivery_states, open_deliveries, running_worker, wait_for
from tests.factories import add_event, add_person
from tests.webhook_signing import intake_with

pytestmark = pytest.mark.usefixtures("prefect_server")
SIGNING_SECRET = "whsec_new"  # one of the intake's configured secrets (tests/webhook_signing.py)


@pytest.fixture()
def api(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with intake_with(monkeypatch) as client:
        yield client


def send(api: TestClient, event: dict[str, Any]) -> dict[str, int]:
    body, headers = signed_webhook(event, SIGNING_SECRET)
    response = api.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 200
    answer: dict[str, int] = response.json()
    return answer


def apply_stored() -> dict[str, int]:
    with session_scope() as session:
        ids = list(session.execute(select(WebhookReceipt.id).order_by(WebhookReceipt.id)).scalars())
    return webhook_received(receipt_ids=ids)


def registered_customer(sandbox: Any, user_id: int, event_id: str) -> str:
    user_registered(event_ids=[add_event("user.registered", user_id, event_id=event_id)])
    mine = [
        c for c in sandbox.objects("stripe", "customers") if c["metadata"].get("ennu_user_id") == str(user_id)
    ]
    assert len(mine) == 1
    return str(mine[0]["id"])


def payments() -> list[tuple[Any, ...]]:
    with session_scope() as session:
        return [
            (
                p.user_id,
                p.status,
                p.amount,
                p.amount_refunded,
                p.currency,
                p.stripe_invoice_id,
                p.stripe_charge_id,
            )
            for p in session.execute(select(Payment).order_by(Payment.id)).scalars()
        ]


def raised(event_type: str) -> list[str]:
    with session_scope() as session:
        return sorted(session.execute(select(OutboxEvent.id).where(OutboxEvent.type == event_type)).scalars())


def crm_fields(sandbox: Any, user_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    contact = next(
        c["properties"]
        for c in sandbox.objects("hubspot", "contacts")
        if c["properties"].get("ennu_user_id") == str(user_id)
    )
    record = next(r for r in sandbox.objects("salesforce", "Contact") if r["ENNU_User_Id__c"] == str(user_id))
    return contact, record


def test_invoices_and_refunds_reach_the_payments_table_and_the_crms_once_and_in_order(
    api: TestClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STRICT_ENV, "1")  # a portal that refuses properties nobody defined
    user_id = add_person()
    customer = registered_customer(sandbox, user_id, "reg-pay")
    now = int(time.time())
    bill = invoice(customer, paid=True, amount=4900, subscription="sub_pay1")
    failed = {**bill, "status": "open", "amount_paid": 0, "amount_remaining": 4900}
    paid = webhook_event("invoice.paid", bill, created=now - 60)
    late = webhook_event("invoice.payment_failed", failed, created=now - 120)  # older, arrives last
    assert send(api, paid)["new"] == 1
    assert send(api, late)["new"] == 1
    assert send(api, paid) == {"received": 1, "new": 0, "duplicates": 1}  # Stripe's redelivery

    assert apply_stored() == {"payment updated": 1, "stale event": 1}
    assert payments() == [(user_id, "paid", 4900, 0, "usd", bill["id"], None)]
    assert raised("payment.changed") == [f"stripe-{paid['id']}"]
    assert apply_stored() == {}  # every receipt is applied once
    with session_scope() as session:  # the card and the payer's contact data were never stored
        kept = json.dumps([r.payload for r in session.execute(select(WebhookReceipt)).scalars()])
    assert "payer@example.com" not in kept and "Pat Payer" not in kept

    payment_changed(event_ids=raised("payment.changed"))
    contact, record = crm_fields(sandbox, user_id)
    assert (contact["ennu_last_payment_status"], str(contact["ennu_last_payment_amount"])) == ("paid", "4900")
    assert contact["ennu_last_payment_currency"] == "usd"
    assert (record["ENNU_Last_Payment_Status__c"], record["ENNU_Last_Payment_Amount__c"]) == ("paid", 4900)
    assert record["ENNU_Last_Payment_Date__c"] == time.strftime("%Y-%m-%d", time.gmtime(now - 60))
    definitions = {p["name"]: p["type"] for p in sandbox.objects("hubspot", "properties:contacts")}
    assert definitions["ennu_last_payment_status"] == "enumeration"
    assert definitions["ennu_last_payment_amount"] == definitions["ennu_last_payment_refunded"] == "number"
    assert definitions["ennu_last_payment_date"] == "date"

    # A partial refund, then the rest: the full refund's event comes first. The API version of the stand-in
    # (2025-03-31 and later) names no invoice on the charge: the refund is a row of its own.
    part = charge(customer, amount=4900, amount_refunded=1000)
    rest = {**part, "amount_refunded": 4900, "refunded": True}
    whole = webhook_event("charge.refunded", rest, created=now - 10)
    assert send(api, whole)["new"] == 1
    assert send(api, webhook_event("charge.refunded", part, created=now - 20))["new"] == 1
    assert apply_stored() == {"payment updated": 1, "stale event": 1}
    assert payments()[1] == (user_id, "refunded", 4900, 4900, "usd", None, part["id"])
    payment_changed(event_ids=[f"stripe-{whole['id']}"])
    contact, record = crm_fields(sandbox, user_id)
    assert (contact["ennu_last_payment_status"], str(contact["ennu_last_payment_refunded"])) == (
        "refunded",
        "4900",
    )
    assert record["ENNU_Last_Payment_Status__c"] == "refunded"


def test_a_delivery_worker_carries_a_payment_webhook_to_the_crms(api: TestClient, sandbox: Any) -> None:
    """What production runs: the worker claims the receipt, applies it, and delivers the raised event."""
    user_id = add_person()
    add_event("user.registered", user_id, event_id="reg-worker")
    with running_worker():

        def customer() -> str | None:
            found = [
                c["id"]
                for c in sandbox.objects("stripe", "customers")
                if c["metadata"].get("ennu_user_id") == str(user_id)
            ]
            return found[0] if found else None

        customer_id = wait_for(customer, "the registration to reach Stripe")
        wait_for(lambda: open_deliveries() == 0, "the registration delivered everywhere")
        bill = invoice(customer_id, paid=False, amount=12_500, currency="eur")
        send(api, webhook_event("invoice.payment_failed", bill))

        def crms_told() -> bool:
            try:
                contact, record = crm_fields(sandbox, user_id)
            except StopIteration:
                return False
            return (
                contact.get("ennu_last_payment_status") == "payment_failed"
                and record.get("ENNU_Last_Payment_Status__c") == "payment_failed"
            )

        wait_for(crms_told, "payment_failed at HubSpot and Salesforce")
        wait_for(lambda: open_deliveries() == 0, "the payment's deliveries recorded")
    contact, record = crm_fields(sandbox, user_id)
    assert (contact["ennu_last_payment_amount"], contact["ennu_last_payment_currency"]) == ("12500", "eur")
    assert (record["ENNU_Last_Payment_Amount__c"], record["ENNU_Last_Payment_Currency__c"]) == (12_500, "eur")
    assert payments() == [(user_id, "payment_failed", 12_500, 0, "eur", bill["id"], None)]
    # Everything settled as delivered, but Zapier's registration trigger without a subscription: skipped.
    assert set(delivery_states()) <= {"delivered", "skipped"}


def test_before_api_2025_03_31_a_refund_updates_its_invoices_row(api: TestClient, sandbox: Any) -> None:
    user_id = add_person()
    customer = registered_customer(sandbox, user_id, "reg-legacy")
    now = int(time.time())
    card = charge(customer, amount=2500, amount_refunded=500)
    bill = invoice(customer, paid=True, amount=2500, legacy_link=card["id"])
    card["invoice"] = bill["id"]
    send(api, webhook_event("charge.refunded", card, created=now - 30))
    send(api, webhook_event("invoice.paid", bill, created=now - 90))  # older: the refund stands
    assert apply_stored() == {"payment updated": 1, "stale event": 1}
    assert payments() == [(user_id, "partially_refunded", 2500, 500, "usd", bill["id"], card["id"])]

    # Endpoints of two API versions at once: a refund without its invoice, then (newer) the invoice naming
    # the charge: one payment, one row, and the invoice's news does not undo the refund.
    other = charge(customer, amount=800, amount_refunded=800)
    send(api, webhook_event("charge.refunded", other, created=now - 20))
    later = invoice(customer, paid=True, amount=800, legacy_link=other["id"])
    send(api, webhook_event("invoice.paid", later, created=now - 5))
    assert apply_stored() == {"payment updated": 2}
    assert payments()[1:] == [(user_id, "refunded", 800, 800, "usd", later["id"], other["id"])]


def test_an_older_invoice_applied_late_is_stored_but_does_not_replace_the_crms_last_payment(
    api: TestClient, sandbox: Any
) -> None:
    user_id = add_person()
    customer = registered_customer(sandbox, user_id, "reg-two")
    now = int(time.time())
    newer = webhook_event("invoice.paid", invoice(customer, paid=True, amount=3000), created=now - 10)
    older = webhook_event(
        "invoice.payment_failed", invoice(customer, paid=False, amount=7000), created=now - 99
    )
    stranger = webhook_event("invoice.paid", invoice("cus_unknown1", paid=True, amount=100), created=now)
    for event in (newer, older, stranger):
        send(api, event)
    assert apply_stored() == {"payment updated": 2, "unmatched": 1}
    assert sorted(p[1:3] for p in payments()) == [("paid", 100), ("paid", 3000), ("payment_failed", 7000)]
    assert raised("payment.changed") == [f"stripe-{newer['id']}"]


def test_trial_will_end_updates_the_subscriptions_trial_end_and_the_crms(
    api: TestClient, sandbox: Any
) -> None:
    user_id = add_person()
    customer = registered_customer(sandbox, user_id, "reg-trial")
    now = int(time.time())
    trial_end = now + 3 * 86_400
    subscription = {
        "id": "sub_trial1",
        "object": "subscription",
        "customer": customer,
        "status": "trialing",
        "cancel_at_period_end": False,
        "trial_end": trial_end,
        "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_monthly"}}]},
        "metadata": {},
    }
    send(api, webhook_event("customer.subscription.trial_will_end", subscription, created=now))
    assert apply_stored() == {"subscription updated": 1}
    with session_scope() as session:
        row = session.execute(select(Subscription)).scalar_one()
        assert (row.user_id, row.status) == (user_id, "trialing")
        assert row.trial_end is not None and int(row.trial_end.timestamp()) == trial_end
    subscription_changed(event_ids=raised("subscription.changed"))
    contact, record = crm_fields(sandbox, user_id)
    day = time.strftime("%Y-%m-%d", time.gmtime(trial_end))
    assert record["ENNU_Subscription_Trial_End__c"] == day
    assert str(contact["ennu_subscription_trial_end"]) == str(
        calendar.timegm(time.strptime(day, "%Y-%m-%d")) * 1000
    )


def test_a_deleted_customer_is_forgotten_and_the_next_registration_creates_a_new_one(
    api: TestClient, sandbox: Any
) -> None:
    user_id = add_person()
    customer = registered_customer(sandbox, user_id, "reg-first")
    gone = next(c for c in sandbox.objects("stripe", "customers") if c["id"] == customer)
    # Deleted at Stripe (the dashboard, say): Stripe sends customer.deleted with the customer as it was.
    from connectors.stripe.connector import StripeConnector
    from ennu.settings import get_settings

    stripe_api = StripeConnector.from_settings(get_settings(), rate_limited=False)
    try:
        stripe_api.http.request("DELETE", f"/customers/{customer}")
    finally:
        stripe_api.close()
    send(api, webhook_event("customer.deleted", gone))
    assert apply_stored() == {"stripe link cleared": 1}
    with session_scope() as session:
        assert session.execute(select(SyncLog.id).where(SyncLog.remote_id == customer)).first() is None

    # The same person registers again (same fields): not "unchanged", a new customer.
    user_registered(event_ids=[add_event("user.registered", user_id, event_id="reg-again")])
    mine = [
        c for c in sandbox.objects("stripe", "customers") if c["metadata"].get("ennu_user_id") == str(user_id)
    ]
    assert len(mine) == 1 and mine[0]["id"] != customer
    # Their next payment is theirs through the new customer.
    send(api, webhook_event("invoice.paid", invoice(mine[0]["id"], paid=True, amount=900)))
    assert apply_stored() == {"payment updated": 1}
    assert payments()[0][:2] == (user_id, "paid")


def test_erasure_covers_the_persons_payments(database: str) -> None:
    user_id = add_person(email="payer-gone@example.org")
    bystander = add_person()
    with session_scope() as session:
        for owner, charge_id in ((user_id, "ch_erased00001"), (bystander, "ch_kept000001")):
            session.add(
                Payment(
                    user_id=owner,
                    stripe_charge_id=charge_id,
                    status="refunded",
                    amount=100,
                    amount_refunded=100,
                    currency="usd",
                    occurred_at=utcnow(),
                )
            )
        # A refund's receipt that names the charge and no customer (a guest charge).
        session.execute(
            insert(WebhookReceipt),
            [
                {
                    "integration": "stripe",
                    "vendor_event_id": f"evt_{n}",
                    "kind": "charge.refunded",
                    "payload": {"type": "charge.refunded", "data": {"object": {"id": charge_id}}},
                    "status": "payment-updated",
                    "processed_at": utcnow(),
                }
                for n, charge_id in enumerate(("ch_erased00001", "ch_kept000001"))
            ],
        )
    assert scrub_person(user_id, "payer-gone@example.org", None).receipts == 1
    # The host deletes the person's row: their payments go with it, as their subscriptions do.
    with session_scope() as session:
        session.execute(delete(User).where(User.id == user_id))
    assert [p[0] for p in payments()] == [bystander]
