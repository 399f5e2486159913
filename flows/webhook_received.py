"""`webhook-received`: act on stored vendor webhooks (unsubscribes, STOP replies) after answering them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ennu.db import session_scope
from ennu.models import User, WebhookReceipt, utcnow

STOP_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit"}


def mailchimp_unsubscribe(session: Session, payload: dict[str, Any]) -> str:
    if payload.get("type") not in ("unsubscribe", "cleaned"):
        return "ignored"
    email = str(payload.get("data[email]", "")).strip().lower()
    changed = session.execute(
        update(User).where(func.lower(User.email) == email).values(marketing_consent=False)
    )
    return "consent withdrawn" if getattr(changed, "rowcount", 0) else "no such person"


def twilio_stop(session: Session, payload: dict[str, Any]) -> str:
    if str(payload.get("Body", "")).strip().lower() not in STOP_WORDS:
        return "ignored"
    digits = "".join(ch for ch in str(payload.get("From", "")) if ch.isdigit())[-10:]
    if len(digits) < 10:
        return "no such person"
    people = [
        u
        for u in session.execute(select(User).where(User.phone.is_not(None))).scalars()
        if "".join(ch for ch in u.phone or "" if ch.isdigit())[-10:] == digits
    ]
    for person in people:
        person.communication_consent = False
    return "consent withdrawn" if people else "no such person"


HANDLERS: dict[str, Callable[[Session, dict[str, Any]], str]] = {
    "mailchimp": mailchimp_unsubscribe,
    "twilio": twilio_stop,
}


@flow(name="webhook-received", log_prints=False)
def webhook_received(receipt_ids: list[int]) -> dict[str, int]:
    """Apply each receipt once; receipts without a handler are marked as such, never lost."""
    outcomes: dict[str, int] = {}
    with session_scope() as session:
        receipts = session.execute(
            select(WebhookReceipt).where(
                WebhookReceipt.id.in_(receipt_ids), WebhookReceipt.processed_at.is_(None)
            )
        ).scalars()
        for receipt in receipts:
            handler = HANDLERS.get(receipt.integration)
            result = handler(session, receipt.payload) if handler else "no handler"
            receipt.status = result.replace(" ", "-")[:20]
            receipt.processed_at = utcnow()
            outcomes[result] = outcomes.get(result, 0) + 1
    get_run_logger().info("webhook receipts processed: %s", outcomes)
    return outcomes
