"""What the hub keeps of an erased person: the erasure list, and only pseudonymous facts everywhere else.

After an erasure the person's outbox events, deliveries, sync-log rows and webhook receipts say that a sync
or an erasure happened, when, where and with what outcome, and nothing that could identify them at a
vendor: no payload, remote id, payload hash (a hash of their fields) or error text. The outcomes of the
erasure itself (`object == "person"` rows) keep their reference, which connectors word without identifiers
("2 customers deleted", "deletionRequestTime=…").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, exists, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from ennu.db import session_scope
from ennu.models import (
    Delivery,
    ErasedPerson,
    InboundFieldVersion,
    OutboxEvent,
    Payment,
    Subscription,
    SyncLog,
    SyncStatus,
    WebhookReceipt,
)

ERASURE_EVENT = "user.deletion_requested"
ERASURE_OBJECT = "person"  # the sync-log object of an erasure's outcome at a destination
# Outcomes after which a destination may hold the person.
HELD_AFTER = frozenset(
    s.value for s in (SyncStatus.CREATED, SyncStatus.UPDATED, SyncStatus.UNCHANGED, SyncStatus.UNKNOWN)
)
SKIPPED_ERASED = "erased"  # the reason of a later event's `skipped` row (tasks/admit.py): kept as it is
KEPT_PAYLOAD_KEYS = ("origin",)  # how an event came to be (a bulk sync's): no personal datum
SCRUBBED_RECEIPT = {"erased": True}
RECEIPT_CHUNK = 500


@dataclass(frozen=True)
class Scrubbed:
    """Rows made pseudonymous by one scrub (counts only)."""

    sync_log: int
    outbox: int
    deliveries: int
    receipts: int


def not_erased(user_id: ColumnElement[int | None] | InstrumentedAttribute[int | None]) -> ColumnElement[bool]:
    """A filter: the row's person is not on the erasure list."""
    return ~exists().where(ErasedPerson.user_id == user_id)


def erased_among(session: Session, user_ids: Iterable[int | None]) -> set[int]:
    wanted = sorted({u for u in user_ids if u is not None})
    if not wanted:
        return set()
    return set(
        session.execute(select(ErasedPerson.user_id).where(ErasedPerson.user_id.in_(wanted))).scalars()
    )


def received_by(session: Session, user_id: int) -> set[str]:
    """Every destination the sync log says may hold the person (whether enabled now or not)."""
    return set(
        session.execute(
            select(SyncLog.connector)
            .where(SyncLog.user_id == user_id, SyncLog.status.in_(HELD_AFTER), SyncLog.connector != "hub")
            .distinct()
        ).scalars()
    )


def identifying_strings(session: Session, user_id: int, email: str | None, phone: str | None) -> set[str]:
    """What could name the person inside a vendor's webhook: contact data and the vendors' ids for them."""
    found: set[str] = set()
    if email:
        found |= {email.strip(), email.strip().lower()}
    digits = "".join(ch for ch in phone or "" if ch.isdigit())
    if len(digits) >= 7:
        found.add(digits[-10:])
    remote = session.execute(
        select(SyncLog.remote_id).where(
            SyncLog.user_id == user_id, SyncLog.remote_id.is_not(None), SyncLog.object != ERASURE_OBJECT
        )
    ).scalars()
    found |= {r for value in remote for r in str(value).split(",") if len(r) >= 6}
    found |= set(
        session.execute(
            select(Subscription.stripe_customer_id).where(Subscription.user_id == user_id)
        ).scalars()
    )
    # Their payments' Stripe ids: a refund's webhook may name the charge and no customer.
    for invoice_id, charge_id in session.execute(
        select(Payment.stripe_invoice_id, Payment.stripe_charge_id).where(Payment.user_id == user_id)
    ):
        found |= {invoice_id or "", charge_id or ""}
    return {s for s in found if s}


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif value is not None:
        yield str(value)


def _mentions(payload: object, needles: set[str]) -> bool:
    """Whether any value names the person (a phone number matches however it is punctuated)."""
    for text in _strings(payload):
        digits = "".join(ch for ch in text if ch.isdigit())
        if any(n in text or (n.isdigit() and n in digits) for n in needles):
            return True
    return False


def scrub_person(user_id: int, email: str | None, phone: str | None) -> Scrubbed:
    """Leave only pseudonymous facts about the person in the hub's tables (idempotent)."""
    with session_scope() as session:
        needles = identifying_strings(session, user_id, email, phone)
        events = select(OutboxEvent.id).where(OutboxEvent.subject == user_id)
        log = session.execute(
            update(SyncLog)
            .where(
                or_(SyncLog.user_id == user_id, SyncLog.event_id.in_(events)),
                SyncLog.object != ERASURE_OBJECT,
                or_(SyncLog.connector != "hub", SyncLog.error != SKIPPED_ERASED),
            )
            .values(remote_id=None, payload_hash=None, error=None)
            .execution_options(synchronize_session=False)
        )
        outbox = 0
        for event in session.execute(select(OutboxEvent).where(OutboxEvent.subject == user_id)).scalars():
            kept = {k: v for k, v in (event.payload or {}).items() if k in KEPT_PAYLOAD_KEYS}
            if kept != (event.payload or {}):
                event.payload = kept
                outbox += 1
        sent = session.execute(
            update(Delivery)
            .where(
                Delivery.user_id == user_id,
                Delivery.event_type != ERASURE_EVENT,
                Delivery.last_error.is_not(None),
            )
            .values(last_error=None)
            .execution_options(synchronize_session=False)
        )
        receipts = _scrub_receipts(session, needles)
        # When a CRM last changed the person's columns: linked to them, of no use once they are erased.
        session.execute(delete(InboundFieldVersion).where(InboundFieldVersion.user_id == user_id))
    return Scrubbed(
        int(getattr(log, "rowcount", 0) or 0), outbox, int(getattr(sent, "rowcount", 0) or 0), receipts
    )


def _scrub_receipts(session: Session, needles: set[str]) -> int:
    """Receipts whose payload names the person: payload and any id derived from it are dropped."""
    if not needles:
        return 0
    scrubbed = 0
    last = 0
    while True:
        receipts = list(
            session.execute(
                select(WebhookReceipt)
                .where(WebhookReceipt.id > last)
                .order_by(WebhookReceipt.id)
                .limit(RECEIPT_CHUNK)
            ).scalars()
        )
        if not receipts:
            return scrubbed
        for receipt in receipts:
            if receipt.payload != SCRUBBED_RECEIPT and _mentions(
                [receipt.payload, receipt.vendor_event_id], needles
            ):
                receipt.payload = dict(SCRUBBED_RECEIPT)
                # A vendor event id may be a digest of the payload (Mailchimp's unsigned forms): not kept.
                receipt.vendor_event_id = f"erased-{receipt.id}"
                receipt.last_error = None
                scrubbed += 1
        last = receipts[-1].id
