"""Stripe's webhooks, by event type: subscriptions, payments (invoices and refunds), deleted customers.

Each updates the host's state in the receipt's transaction (`subscriptions`, `payments`, the person's Stripe
link) and raises a hub event whose flow carries the change to the CRMs (`subscription.changed`,
`payment.changed`). Stripe does not deliver in order: an event older (Stripe's `created`) than the one last
applied to the same row changes nothing. A replayed event never gets here (its id is remembered at intake).
Each handler reads only the fields ennu.receipts.STRIPE_FIELDS keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ennu.events import HubEvent
from ennu.models import Payment, PaymentStatus, Subscription, SyncLog, User, as_utc
from ennu.receipts import Handled

SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "customer.subscription.trial_will_end",  # three days before the trial ends: the subscription as it is
    }
)
# The invoice amount each status reports: what was paid, or what was due and not paid.
INVOICE_EVENTS: dict[str, tuple[PaymentStatus, str]] = {
    "invoice.paid": (PaymentStatus.PAID, "amount_paid"),
    "invoice.payment_failed": (PaymentStatus.PAYMENT_FAILED, "amount_due"),
}


def _epoch(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) else None


def _object(payload: dict[str, Any]) -> dict[str, Any]:
    found = (payload.get("data") or {}).get("object")
    return found if isinstance(found, dict) else {}


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _amount(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _stripe_user(session: Session, customer_id: str | None, stripe_object: dict[str, Any]) -> int | None:
    """Our user for a Stripe customer: the customer we created (sync log), the subscriptions we know of,
    else our user id in the object's metadata."""
    if customer_id is not None:
        found = session.execute(
            select(SyncLog.user_id)
            .where(
                SyncLog.connector == "stripe", SyncLog.remote_id == customer_id, SyncLog.user_id.is_not(None)
            )
            .order_by(SyncLog.id.desc())
            .limit(1)
        ).scalar()
        found = (
            found
            or session.execute(
                select(Subscription.user_id)
                .where(Subscription.stripe_customer_id == customer_id, Subscription.user_id.is_not(None))
                .order_by(Subscription.id.desc())
                .limit(1)
            ).scalar()
        )
        if found is not None:
            return int(found)
    raw = str((stripe_object.get("metadata") or {}).get("ennu_user_id", ""))
    if raw.isdigit() and session.get(User, int(raw)) is not None:
        return int(raw)
    return None


def _hub_event(payload: dict[str, Any], event_type: str, subject: int, resource: int) -> HubEvent:
    created = _epoch(payload.get("created"))
    assert created is not None  # every handler refuses an event without one first
    return HubEvent(
        id=f"stripe-{payload['id']}"[:64],
        type=event_type,
        occurred_at=created,
        subject=subject,
        resource=str(resource),
    )


# ------------------------------------------------------------------------------------ subscriptions


def stripe_subscription(session: Session, payload: dict[str, Any]) -> Handled:
    """Apply a `customer.subscription.*` event (trial_will_end included: it carries the subscription)."""
    subscription = _object(payload)
    subscription_id, customer_id = _id(subscription.get("id")), _id(subscription.get("customer"))
    created = _epoch(payload.get("created"))
    if subscription_id is None or customer_id is None or created is None:
        return Handled("malformed")
    # API versions from 2025-03-31 carry the period on the subscription items, older ones on the subscription.
    items = (subscription.get("items") or {}).get("data") or [{}]
    period_end = _epoch(items[0].get("current_period_end")) or _epoch(subscription.get("current_period_end"))
    row = session.execute(
        select(Subscription).where(Subscription.stripe_subscription_id == subscription_id)
    ).scalar_one_or_none()
    if row is not None and (as_utc(row.vendor_updated_at) or created) > created:
        return Handled("stale event")
    user_id = row.user_id if row is not None else None
    user_id = user_id or _stripe_user(session, customer_id, subscription)
    if row is None:
        row = Subscription(stripe_subscription_id=subscription_id, stripe_customer_id=customer_id)
        session.add(row)
    row.user_id = user_id
    row.status = str(subscription.get("status") or "unknown")[:30]
    row.price_id = ((items[0].get("price") or {}).get("id") or None) if items[0] else None
    row.current_period_end = period_end
    row.cancel_at_period_end = bool(subscription.get("cancel_at_period_end"))
    row.trial_end = _epoch(subscription.get("trial_end"))
    row.vendor_updated_at = created
    session.flush()
    if row.user_id is None:
        return Handled("unmatched")  # stored; the CRMs hear of it once the person is known
    return Handled("subscription updated", [_hub_event(payload, "subscription.changed", row.user_id, row.id)])


# ------------------------------------------------------------------------------------------ payments


def _payment(session: Session, *, invoice_id: str | None, charge_id: str | None) -> Payment | None:
    """The row of this invoice, else of this charge (a refund reported before its invoice was known)."""
    for column, value in ((Payment.stripe_invoice_id, invoice_id), (Payment.stripe_charge_id, charge_id)):
        if value is not None:
            row = session.execute(select(Payment).where(column == value)).scalar_one_or_none()
            if row is not None:
                return row
    return None


def _stale(row: Payment | None, created: datetime) -> bool:
    return row is not None and (as_utc(row.occurred_at) or created) > created


def _payment_applied(
    session: Session, payload: dict[str, Any], row: Payment, customer_id: str | None
) -> Handled:
    """After a payment row changed: the CRMs hear of it if it is the person's latest payment."""
    row.user_id = row.user_id or _stripe_user(session, customer_id, _object(payload))
    session.flush()
    if row.user_id is None:
        return Handled("unmatched")  # stored; the CRMs hear of the person's next payment once they are known
    newer = session.execute(
        select(Payment.id)
        .where(Payment.user_id == row.user_id, Payment.id != row.id, Payment.occurred_at > row.occurred_at)
        .limit(1)
    ).scalar()
    if newer is not None:
        # The CRMs show the last payment: an older one applied late (another invoice) must not replace it.
        return Handled("payment updated")
    return Handled("payment updated", [_hub_event(payload, "payment.changed", row.user_id, row.id)])


def stripe_invoice(session: Session, payload: dict[str, Any]) -> Handled:
    """Apply `invoice.paid` / `invoice.payment_failed`: the invoice's payment row (amounts, no card data)."""
    status, amount_field = INVOICE_EVENTS[str(payload.get("type"))]
    invoice = _object(payload)
    invoice_id, customer_id = _id(invoice.get("id")), _id(invoice.get("customer"))
    amount, currency = _amount(invoice.get(amount_field)), _id(invoice.get("currency"))
    created = _epoch(payload.get("created"))
    if invoice_id is None or amount is None or currency is None or created is None:
        return Handled("malformed")
    charge_id = _id(invoice.get("charge"))  # API versions before 2025-03-31 only
    row = _payment(session, invoice_id=invoice_id, charge_id=charge_id)
    if _stale(row, created):
        return Handled("stale event")
    if row is None:
        row = Payment(amount_refunded=0)
        session.add(row)
    row.stripe_invoice_id = invoice_id
    if row.stripe_charge_id is None and _payment(session, invoice_id=None, charge_id=charge_id) is None:
        row.stripe_charge_id = charge_id  # unless the charge's refund already has a row of its own
    if row.amount_refunded == 0:  # a refund is never undone by the invoice's news
        row.status = status.value
    row.amount = amount
    row.currency = currency.lower()[:3]
    row.occurred_at = created
    return _payment_applied(session, payload, row, customer_id)


def stripe_refund(session: Session, payload: dict[str, Any]) -> Handled:
    """Apply `charge.refunded`: refunded in full or in part, on the invoice's row when the charge names it."""
    charge = _object(payload)
    charge_id, customer_id = _id(charge.get("id")), _id(charge.get("customer"))
    amount, refunded = _amount(charge.get("amount")), _amount(charge.get("amount_refunded"))
    currency, created = _id(charge.get("currency")), _epoch(payload.get("created"))
    if charge_id is None or amount is None or refunded is None or currency is None or created is None:
        return Handled("malformed")
    invoice_id = _id(charge.get("invoice"))  # API versions before 2025-03-31 only
    # The charge's own row first; found by its invoice instead, the charge's id is on no row yet.
    row = _payment(session, invoice_id=None, charge_id=charge_id) or _payment(
        session, invoice_id=invoice_id, charge_id=None
    )
    if _stale(row, created):
        return Handled("stale event")
    if row is None:
        row = Payment(stripe_invoice_id=invoice_id, amount=amount)
        session.add(row)
    row.stripe_charge_id = charge_id
    full = charge.get("refunded") is True or refunded >= amount
    row.status = (PaymentStatus.REFUNDED if full else PaymentStatus.PARTIALLY_REFUNDED).value
    row.amount_refunded = refunded
    row.currency = currency.lower()[:3]
    row.occurred_at = created
    return _payment_applied(session, payload, row, customer_id)


# ------------------------------------------------------------------------------------------ customers


def stripe_customer_deleted(session: Session, payload: dict[str, Any]) -> Handled:
    """`customer.deleted`: forget the person's link to that customer, so their next registration creates a
    new customer instead of being taken as already delivered to the deleted one.

    The hub keeps the customer id only in the sync log (the push's outcomes, which `_stripe_user` and the
    "already has it" check read) and on the customer's subscriptions (Stripe cancels those and says so in
    its own `customer.subscription.deleted` events, which update them).
    """
    customer_id = _id(_object(payload).get("id"))
    if customer_id is None or _epoch(payload.get("created")) is None:
        return Handled("malformed")
    cleared = session.execute(
        update(SyncLog)
        .where(SyncLog.connector == "stripe", SyncLog.remote_id == customer_id)
        .values(remote_id=None, payload_hash=None)
        .execution_options(synchronize_session=False)
    )
    return Handled("stripe link cleared" if getattr(cleared, "rowcount", 0) else "no such customer")


STRIPE_HANDLERS: dict[str, Callable[[Session, dict[str, Any]], Handled]] = {
    **dict.fromkeys(SUBSCRIPTION_EVENTS, stripe_subscription),
    **dict.fromkeys(INVOICE_EVENTS, stripe_invoice),
    "charge.refunded": stripe_refund,
    "customer.deleted": stripe_customer_deleted,
}


def stripe_event(session: Session, payload: dict[str, Any]) -> Handled:
    """Apply one Stripe event by its type; a type we do not act on is marked `ignored`."""
    handler = STRIPE_HANDLERS.get(str(payload.get("type")))
    return handler(session, payload) if handler is not None else Handled("ignored")
