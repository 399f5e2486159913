"""`webhook-received`: act on stored vendor webhooks after answering them.

Mailchimp and Mailchimp transactional unsubscribes and Twilio STOP replies withdraw consent; Twilio status
callbacks move the delivery they are about (tasks/twilio_webhooks.py); Stripe events
(flows/stripe_webhooks.py) update the host's subscriptions and payments and raise `subscription.changed` /
`payment.changed` events whose flows carry them to the CRMs; HubSpot property changes reach the host
through the inbound mapping (flows/hubspot_changes.py). Each handler reads only the fields
ennu.receipts.kept_payload keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger
from sqlalchemy import func, update
from sqlalchemy.orm import Session

from ennu import deliveries, receipts
from ennu.db import session_scope
from ennu.models import User, WebhookReceipt, utcnow
from ennu.receipts import Handled
from flows.hubspot_changes import hubspot_property_change
from flows.ops_alert import ops_alert
from flows.results import NO_RESULTS
from flows.stripe_webhooks import stripe_event
from tasks.ingest import ingest
from tasks.twilio_webhooks import twilio_webhook


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


HANDLERS: dict[str, Callable[[Session, dict[str, Any]], Handled]] = {
    "mailchimp": mailchimp_unsubscribe,
    "mailchimp-transactional": mandrill_unsubscribe,
    "twilio": twilio_webhook,
    "stripe": stripe_event,
    "hubspot": hubspot_property_change,
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


@flow(name="webhook-received", log_prints=False, **NO_RESULTS)
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
        for kind, subject, detail in handled.alerts:
            ops_alert(kind=kind, subject=subject, detail=detail)
    logger.info("webhook receipts processed: %s", outcomes)
    return outcomes
