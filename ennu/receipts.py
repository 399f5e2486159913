"""Webhook receipts: stored once (minimised, encrypted), remembered against replays, claimed and applied.

A receipt keeps only the fields its handler reads (`kept_payload`), in a column encrypted under
ENNU_DATA_KEY, and goes after ENNU_RETENTION_RECEIPTS_DAYS once processed. Its id is remembered apart, as a
keyed hash (`ReceivedWebhookId`), for the vendor's replay window (`REPLAY_WINDOW_DAYS`): a redelivery or a
captured delivery replayed after the payload's clean-up is still acknowledged as a duplicate, never applied
again.

A receipt is unprocessed while `processed_at` is empty; clean-up never deletes one. A handler that raises
is offered again after a backoff and marked `failed` (a dead letter, never deleted) at the attempt cap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ennu.db import session_scope
from ennu.deliveries import retry_delay
from ennu.events import HostEvent
from ennu.models import ReceivedWebhookId, WebhookReceipt, utcnow
from ennu.pseudonyms import peppers, pseudonym
from ennu.settings import get_settings

FAILED = "failed"

# How long a webhook's id is remembered, in days (ENNU_WEBHOOK_REPLAY_DAYS overrides each). A vendor that
# signs a timestamp (Stripe, HubSpot v3) re-signs its retries, and a captured delivery is refused after
# ENNU_WEBHOOK_TOLERANCE_SECONDS, so its window only has to outlast its redeliveries: Stripe retries for 3
# days and lets an event be resent for the 30 days it keeps it; HubSpot retries over 24 hours (7 days kept,
# also covering legacy v1/v2 deliveries when those are enabled). Twilio, Mailchimp and Mandrill sign no
# timestamp: the remembered id is the only thing that refuses a captured STOP or unsubscribe replayed later,
# so it is kept well past any retry (400 days, the sync log's retention).
REPLAY_WINDOW_DAYS: dict[str, int] = {
    "stripe": 30,
    "hubspot": 7,
    "twilio": 400,
    "mailchimp": 400,
    "mailchimp-transactional": 400,
}
DEFAULT_REPLAY_WINDOW_DAYS = 400

# What the handlers act on (flows/webhook_received.py); everything else a vendor sends is dropped at intake.
TWILIO_STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit"})
# A Twilio status callback's ids from its URL's query (the intake adds them under this prefix: no Twilio
# parameter starts with it) and the fields the status handler reads (tasks/twilio_statuses.py).
CALLBACK_IDS = ("event_id", "record_key")
CALLBACK_ID_PREFIX = "hub."
TWILIO_STATUS_FIELDS = (
    "MessageSid", "MessageStatus", "CallSid", "CallStatus", "ErrorCode",
    *(f"{CALLBACK_ID_PREFIX}{k}" for k in CALLBACK_IDS),
)  # fmt: skip
MAILCHIMP_UNSUBSCRIBES = frozenset({"unsubscribe", "cleaned"})
MANDRILL_UNSUBSCRIBES = frozenset({"unsub"})
# A Stripe event as its handlers read it (flows/stripe_webhooks.py): scalars only, never an expanded object,
# never a card, billing detail or line item. One shape for every type: the subscription's fields, the
# invoice's (`amount_paid`, `amount_due`; `charge` before API 2025-03-31), the charge's (`amount`,
# `amount_refunded`, `refunded`; `invoice` before 2025-03-31) and the customer's id and our user id.
STRIPE_FIELDS: dict[str, Any] = {
    "id": None,
    "type": None,
    "created": None,
    "data": {
        "object": {
            "id": None,
            "object": None,
            "customer": None,
            "status": None,
            "cancel_at_period_end": None,
            "current_period_end": None,
            "trial_end": None,
            "metadata": {"ennu_user_id": None},
            "items": {"data": {"current_period_end": None, "price": {"id": None}}},
            "amount": None,
            "amount_due": None,
            "amount_paid": None,
            "amount_refunded": None,
            "refunded": None,
            "currency": None,
            "charge": None,
            "invoice": None,
        }
    },
}


@dataclass
class Handled:
    """What a receipt led to (a short label, no personal data), the events to raise after commit (the hub's
    own, `HubEvent`, or one it raises for the host: a consent withdrawn at a CRM), and operator alerts to
    send after commit: (kind, subject, detail) as `ops-alert` takes them."""

    result: str
    events: list[HostEvent] = field(default_factory=list)
    alerts: list[tuple[str, str, str]] = field(default_factory=list)


def replay_window_days(integration: str) -> int:
    """How many days an id of this integration's webhooks is remembered."""
    overrides = get_settings().webhook_replay_days
    return overrides.get(integration, REPLAY_WINDOW_DAYS.get(integration, DEFAULT_REPLAY_WINDOW_DAYS))


def _pick(document: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """The named fields of a JSON document: `None` keeps a scalar, a dict descends (into each list item)."""
    if not isinstance(document, dict):
        return {}
    kept: dict[str, Any] = {}
    for name, inner in fields.items():
        value = document.get(name)
        if inner is None:
            if isinstance(value, str | int | float | bool):
                kept[name] = value
        elif isinstance(value, list):
            kept[name] = [_pick(item, inner) for item in value]
        elif isinstance(value, dict):
            kept[name] = _pick(value, inner)
    return kept


# The HubSpot properties the handler applies (flows/hubspot_changes.py), by subscription type: the sources of
# the inbound halves of the HubSpot mappings (a test keeps the two equal). Any other property's change is
# kept as its type only.
HUBSPOT_APPLIED_PROPERTIES: dict[str, frozenset[str]] = {
    "contact.propertyChange": frozenset({"lifecyclestage", "hubspot_owner_id", "hs_email_optout"}),
    "deal.propertyChange": frozenset({"dealstage", "hubspot_owner_id"}),
}
HUBSPOT_EVENT_FIELDS = ("eventId", "subscriptionType", "objectId", "propertyName", "occurredAt")


def _hubspot(event: dict[str, Any]) -> dict[str, Any]:
    """A property change the handler applies: its ids, property, value and time; anything else its type."""
    kind = event.get("subscriptionType")
    applied = HUBSPOT_APPLIED_PROPERTIES.get(kind) if isinstance(kind, str) else None
    if not applied or event.get("propertyName") not in applied:
        return {"subscriptionType": kind} if isinstance(kind, str) else {}
    kept = {
        name: event[name]
        for name in HUBSPOT_EVENT_FIELDS
        if isinstance(event.get(name), str | int) and not isinstance(event.get(name), bool)
    }
    if isinstance(event.get("propertyValue"), str):
        kept["propertyValue"] = event["propertyValue"]
    return kept


def _mailchimp(fields: dict[str, Any]) -> dict[str, Any]:
    kind = fields.get("type")
    if kind in MAILCHIMP_UNSUBSCRIBES:
        return {"type": kind, "data[email]": str(fields.get("data[email]", ""))}
    return {"type": kind} if isinstance(kind, str) else {}


def _mandrill(event: dict[str, Any]) -> dict[str, Any]:
    kind = event.get("event")
    if kind in MANDRILL_UNSUBSCRIBES:
        return {"event": kind, "msg": _pick(event.get("msg"), {"email": None})}
    return {"event": kind} if isinstance(kind, str) else {}


def _twilio(fields: dict[str, Any]) -> dict[str, Any]:
    # A status callback keeps its status, its code and which delivery it is about (ids, no number).
    if fields.get("MessageStatus") or fields.get("CallStatus"):
        return {k: str(fields[k]) for k in TWILIO_STATUS_FIELDS if fields.get(k)}
    # An inbound SMS may say anything (health included): only an opt-out keyword and its sender are kept.
    body = str(fields.get("Body", "")).strip().lower()
    return {"Body": body, "From": str(fields.get("From", ""))} if body in TWILIO_STOP_WORDS else {}


KEEPERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "stripe": lambda event: _pick(event, STRIPE_FIELDS),
    "mailchimp": _mailchimp,
    "mailchimp-transactional": _mandrill,
    "twilio": _twilio,
    "hubspot": _hubspot,
}


def kept_payload(integration: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Only what this integration's handler reads; nothing for an integration without a handler."""
    keeper = KEEPERS.get(integration)
    return keeper(payload) if keeper is not None else {}


def receipt_digests(integration: str, vendor_event_id: str) -> list[str]:
    """The keyed hash of a webhook's id under the current pepper, then under the previous one."""
    name = f"webhook\x1f{integration}\x1f{vendor_event_id}"
    return [pseudonym(name, pepper) for pepper in peppers()]


def record(integration: str, vendor_event_id: str, kind: str, payload: dict[str, Any]) -> int | None:
    """Store a new receipt (its id remembered, its payload minimised); None when it was received before."""
    digests = receipt_digests(integration, vendor_event_id)
    try:
        with session_scope() as session:
            seen = session.execute(
                select(ReceivedWebhookId.digest).where(ReceivedWebhookId.digest.in_(digests)).limit(1)
            ).first()
            if seen is not None:
                return None
            session.add(ReceivedWebhookId(digest=digests[0], integration=integration))
            receipt = WebhookReceipt(
                integration=integration,
                vendor_event_id=vendor_event_id,
                kind=kind[:100],
                payload=kept_payload(integration, payload),
            )
            session.add(receipt)
            session.flush()
            return receipt.id
    except IntegrityError:  # the same delivery, committed by a concurrent request
        return None


def forget_replay_ids(batch: int = 5000) -> int:
    """Delete remembered ids past their integration's replay window; the number deleted."""
    now = utcnow()
    total = 0
    with session_scope() as session:
        integrations = list(session.execute(select(ReceivedWebhookId.integration).distinct()).scalars())
    for integration in integrations:
        cutoff = now - timedelta(days=replay_window_days(integration))
        while True:
            with session_scope() as session:
                digests = list(
                    session.execute(
                        select(ReceivedWebhookId.digest)
                        .where(
                            ReceivedWebhookId.integration == integration,
                            ReceivedWebhookId.received_at < cutoff,
                        )
                        .limit(batch)
                    ).scalars()
                )
                if not digests:
                    break
                session.execute(delete(ReceivedWebhookId).where(ReceivedWebhookId.digest.in_(digests)))
                total += len(digests)
    return total


def _ready(now: datetime) -> ColumnElement[bool]:
    return and_(
        WebhookReceipt.processed_at.is_(None),
        WebhookReceipt.status != FAILED,
        or_(WebhookReceipt.not_before.is_(None), WebhookReceipt.not_before <= now),
        or_(WebhookReceipt.lease_expires_at.is_(None), WebhookReceipt.lease_expires_at <= now),
    )


def _lease(owner: str, where: ColumnElement[bool], limit: int) -> list[int]:
    now = utcnow()
    expires = now + timedelta(seconds=get_settings().lease_seconds)
    with session_scope() as session:
        ids = select(WebhookReceipt.id).where(_ready(now), where).order_by(WebhookReceipt.id).limit(limit)
        if session.get_bind().dialect.name == "postgresql":
            ids = ids.with_for_update(skip_locked=True)
        rows = session.execute(
            update(WebhookReceipt)
            .where(WebhookReceipt.id.in_(ids))
            .values(lease_owner=owner, lease_expires_at=expires)
            .returning(WebhookReceipt.id)
        ).scalars()
        return sorted(rows)


def claim(owner: str, limit: int) -> list[int]:
    """Lease up to `limit` unprocessed receipts that are due, oldest first."""
    return _lease(owner, WebhookReceipt.id.is_not(None), limit)


def take(owner: str, receipt_ids: Sequence[int]) -> list[int]:
    """These receipts, if unprocessed and due or already leased to this owner."""
    mine = and_(
        WebhookReceipt.id.in_(list(receipt_ids)),
        WebhookReceipt.lease_owner == owner,
        WebhookReceipt.lease_expires_at > utcnow(),
        WebhookReceipt.processed_at.is_(None),
    )
    with session_scope() as session:
        held = set(session.execute(select(WebhookReceipt.id).where(mine)).scalars())
    return sorted(held | set(_lease(owner, WebhookReceipt.id.in_(list(receipt_ids)), len(receipt_ids))))


def release(owner: str) -> int:
    """Give back unprocessed receipts still leased to this owner (its batch could not run)."""
    with session_scope() as session:
        result = session.execute(
            update(WebhookReceipt)
            .where(WebhookReceipt.lease_owner == owner, WebhookReceipt.processed_at.is_(None))
            .values(lease_owner=None, lease_expires_at=None)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def failed_once(owner: str, receipt_id: int, reason: str) -> str:
    """A handler raised: offered again after a backoff, or `failed` at the cap; returns the new status."""
    with session_scope() as session:
        receipt = session.get(WebhookReceipt, receipt_id)
        if receipt is None or receipt.lease_owner != owner:
            return "not held"
        receipt.attempts = (receipt.attempts or 0) + 1
        receipt.last_error = reason[:500]
        receipt.lease_owner = None
        receipt.lease_expires_at = None
        if receipt.attempts >= get_settings().delivery_max_attempts:
            receipt.status = FAILED
            receipt.not_before = None
        else:
            receipt.not_before = utcnow() + retry_delay(receipt.attempts)
        return receipt.status


def reopen_failed(integration: str | None = None) -> int:
    """Replay: failed receipts are offered again with their attempts reset."""
    with session_scope() as session:
        query = update(WebhookReceipt).where(WebhookReceipt.status == FAILED)
        if integration is not None:
            query = query.where(WebhookReceipt.integration == integration)
        result = session.execute(
            query.values(status="received", attempts=0, not_before=None, last_error=None)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def unprocessed_count() -> int:
    """Receipts still owed work (the readiness checks read it)."""
    with session_scope() as session:
        return int(
            session.execute(select(func.count()).where(WebhookReceipt.processed_at.is_(None))).scalar_one()
        )
