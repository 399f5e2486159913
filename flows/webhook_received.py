"""`webhook-received`: act on stored vendor webhooks after answering them.

Mailchimp and Mailchimp transactional unsubscribes and Twilio STOP replies withdraw consent; Stripe
subscription events update the host's subscription state and raise a `subscription.changed` event whose
flow carries it to the CRMs. Each handler reads only the fields ennu.receipts.kept_payload keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ennu import deliveries, receipts
from ennu.db import session_scope
from ennu.events import HubEvent
from ennu.models import Subscription, SyncLog, User, WebhookReceipt, as_utc, utcnow
from tasks.ingest import ingest

SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    }
)


@dataclass
class Handled:
    """What a receipt led to (a short label, no personal data) and the hub events to raise after commit."""

    result: str
    events: list[HubEvent] = field(default_factory=list)


def _withdraw_marketing(session: Session, email: str) -> Handled:
    email = email.strip().lower()
    if not email:
        return Handled("no such person")
    changed = session.execute(
        update(User).where(func.lower(User.email) == email).values(marketing_consent=False)
    )
    return Handled("consent withdrawn" if getattr(changed, "rowcount", 0) else "no such person")


def mailchimp_unsubscribe(session: Session, payload: dict[str, Any]) -> Handled:
    if payload.get("type") not in receipts.MAILCHIMP_UNSUBSCRIBES:
        return Handled("ignored")
    return _withdraw_marketing(session, str(payload.get("data[email]", "")))


def mandrill_unsubscribe(session: Session, payload: dict[str, Any]) -> Handled:
    """A recipient who unsubscribed from a transactional message withdraws marketing consent."""
    if payload.get("event") not in receipts.MANDRILL_UNSUBSCRIBES:
        return Handled("ignored")
    return _withdraw_marketing(session, str((payload.get("msg") or {}).get("email", "")))


def twilio_stop(session: Session, payload: dict[str, Any]) -> Handled:
    if str(payload.get("Body", "")).strip().lower() not in receipts.TWILIO_STOP_WORDS:
        return Handled("ignored")
    digits = "".join(ch for ch in str(payload.get("From", "")) if ch.isdigit())[-10:]
    if len(digits) < 10:
        return Handled("no such person")
    people = [
        u
        for u in session.execute(select(User).where(User.phone.is_not(None))).scalars()
        if "".join(ch for ch in u.phone or "" if ch.isdigit())[-10:] == digits
    ]
    for person in people:
        person.communication_consent = False
    return Handled("consent withdrawn" if people else "no such person")


def _epoch(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) else None


def _stripe_user(session: Session, customer_id: str, subscription: dict[str, Any]) -> int | None:
    """Our user for a Stripe customer: the customer we created (sync log), else the subscription metadata."""
    found = session.execute(
        select(SyncLog.user_id)
        .where(SyncLog.connector == "stripe", SyncLog.remote_id == customer_id, SyncLog.user_id.is_not(None))
        .order_by(SyncLog.id.desc())
        .limit(1)
    ).scalar()
    if found is not None:
        return int(found)
    raw = str((subscription.get("metadata") or {}).get("ennu_user_id", ""))
    if raw.isdigit() and session.get(User, int(raw)) is not None:
        return int(raw)
    return None


def stripe_subscription(session: Session, payload: dict[str, Any]) -> Handled:
    """Apply a `customer.subscription.*` event; an older event arriving after a newer one changes nothing."""
    if payload.get("type") not in SUBSCRIPTION_EVENTS:
        return Handled("ignored")
    subscription = (payload.get("data") or {}).get("object") or {}
    subscription_id, customer_id = subscription.get("id"), subscription.get("customer")
    created = _epoch(payload.get("created"))
    if not isinstance(subscription_id, str) or not isinstance(customer_id, str) or created is None:
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
    row.vendor_updated_at = created
    session.flush()
    if row.user_id is None:
        return Handled("unmatched")  # stored; the CRMs hear of it once the person is known
    event = HubEvent(
        id=f"stripe-{payload['id']}"[:64],
        type="subscription.changed",
        occurred_at=created,
        subject=row.user_id,
        resource=str(row.id),
    )
    return Handled("subscription updated", [event])


HANDLERS: dict[str, Callable[[Session, dict[str, Any]], Handled]] = {
    "mailchimp": mailchimp_unsubscribe,
    "mailchimp-transactional": mandrill_unsubscribe,
    "twilio": twilio_stop,
    "stripe": stripe_subscription,
}


def apply_receipt(receipt_id: int) -> Handled | None:
    """Apply one receipt in its own transaction (one bad receipt never rolls back the others)."""
    with session_scope() as session:
        receipt = session.get(WebhookReceipt, receipt_id)
        if receipt is None or receipt.processed_at is not None:
            return None
        handler = HANDLERS.get(receipt.integration)
        handled = handler(session, receipt.payload) if handler else Handled("no handler")
        receipt.status = handled.result.replace(" ", "-")[:20]
        receipt.processed_at = utcnow()
        receipt.lease_owner = None
        receipt.lease_expires_at = None
        return handled


@flow(name="webhook-received", log_prints=False)
def webhook_received(receipt_ids: list[int]) -> dict[str, int]:
    """Apply each receipt once; receipts without a handler are marked as such, never lost.

    A handler that raises leaves its receipt unprocessed: it is offered again after a backoff and is
    marked `failed` (kept, visible, re-playable) after the attempt cap.
    """
    owner = deliveries.current_owner()
    logger = get_run_logger()
    outcomes: dict[str, int] = {}
    for receipt_id in receipts.take(owner, receipt_ids):
        try:
            handled = apply_receipt(receipt_id)
        except Exception as exc:
            status = receipts.failed_once(owner, receipt_id, type(exc).__name__)
            logger.error("webhook receipt %d failed (%s); now %s", receipt_id, type(exc).__name__, status)
            outcomes["error"] = outcomes.get("error", 0) + 1
            continue
        if handled is None:
            continue
        outcomes[handled.result] = outcomes.get(handled.result, 0) + 1
        # After the commit: the outbox row is the durable record; the workers deliver it.
        for event in handled.events:
            ingest(event)
    logger.info("webhook receipts processed: %s", outcomes)
    return outcomes
