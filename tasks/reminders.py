"""Appointment reminders, the hub's side: which message Twilio holds for an appointment, and withdrawing
reminders that still wait in the delivery engine when their appointment is cancelled."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import String, cast, func, or_, select, update

from ennu.db import session_scope
from ennu.models import (
    OPEN_DELIVERY,
    Appointment,
    Delivery,
    DeliveryStatus,
    OutboxEvent,
    SyncLog,
    SyncStatus,
    utcnow,
)
from tasks.extract import chunks

CONNECTOR = "twilio"
OBJECT = "reminders"
SCHEDULED_EVENT = "appointment.scheduled"
CANCELLED_EVENT = "appointment.cancelled"
# The outcomes that change what Twilio holds: a reminder scheduled (CREATED, its SID) or withdrawn (UPDATED).
CHANGES = (SyncStatus.CREATED.value, SyncStatus.UPDATED.value)


def scheduled_reminders(record_keys: Sequence[str]) -> dict[str, str]:
    """Record key (`appointment:<id>`) -> the SID of the last reminder sent for it, from the sync log.

    The latest change wins: a withdrawal (no SID) leaves nothing to cancel; a call's SID (CA...) is kept
    too, and the connector cancels only messages (SM...).
    """
    found: dict[str, str] = {}
    with session_scope() as session:
        for part in chunks(sorted(set(record_keys))):
            latest = (
                select(func.max(SyncLog.id))
                .where(
                    SyncLog.connector == CONNECTOR,
                    SyncLog.object == OBJECT,
                    SyncLog.record_key.in_(part),
                    SyncLog.status.in_(CHANGES),
                )
                .group_by(SyncLog.record_key)
            )
            rows = session.execute(
                select(SyncLog.record_key, SyncLog.remote_id).where(SyncLog.id.in_(latest))
            )
            found.update({key: str(sid) for key, sid in rows if sid})
    return found


def cancel_waiting_reminders(cancellation_ids: Sequence[str]) -> int:
    """Cancel the reminders of these `appointment.cancelled` events that wait in the delivery engine
    (a call waiting for its time, a message beyond Twilio's 35 days) and no worker holds; how many.

    One a worker holds now is left to it: the connector reads the appointment as cancelled and sends
    nothing, and the cancellation's own delivery cancels whatever Twilio holds.
    """
    now = utcnow()
    with session_scope() as session:
        # Only appointments the host holds as cancelled now: a late cancellation of one booked again since
        # leaves its new reminder alone.
        still_cancelled = select(cast(Appointment.id, String)).where(Appointment.status == "cancelled")
        cancelled = session.execute(
            select(OutboxEvent.subject, OutboxEvent.resource).where(
                OutboxEvent.id.in_(list(cancellation_ids)),
                OutboxEvent.type == CANCELLED_EVENT,
                OutboxEvent.resource.in_(still_cancelled),
            )
        ).all()
        total = 0
        for subject, resource in cancelled:
            if subject is None or resource is None:
                continue
            scheduled = select(OutboxEvent.id).where(
                OutboxEvent.type == SCHEDULED_EVENT,
                OutboxEvent.subject == subject,
                OutboxEvent.resource == resource,
            )
            result = session.execute(
                update(Delivery)
                .where(
                    Delivery.event_id.in_(scheduled),
                    Delivery.integration == CONNECTOR,
                    Delivery.status.in_([s.value for s in OPEN_DELIVERY if s != DeliveryStatus.UNKNOWN]),
                    or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at <= now),
                )
                .values(
                    status=DeliveryStatus.CANCELLED.value,
                    last_error="appointment cancelled",
                    settled_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                )
                .execution_options(synchronize_session=False)
            )
            total += int(getattr(result, "rowcount", 0) or 0)
    return total
