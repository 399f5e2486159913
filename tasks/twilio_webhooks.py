"""Twilio webhooks applied: a STOP reply withdraws consent; a status callback moves its delivery on.

A status callback (MessageStatus / CallStatus, ErrorCode) names its delivery by the ids the connector put
in the StatusCallback URL (signed by Twilio with the rest), else by the SID in the sync log. Statuses only
move forward (`sent` after `delivered` changes nothing; one final status is never replaced by another). A
message that did not arrive (`undelivered`, `failed`; a call `busy`, `no-answer`, `failed`) makes the
delivery a dead letter with Twilio's code (visible in /integrations/status, re-playable) and a `failed`
sync-log row; a critical-result SMS (biomarker.updated) that did not arrive also alerts the operators.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ennu import receipts
from ennu.deliveries import finish_events
from ennu.models import Delivery, DeliveryStatus, SyncLog, SyncStatus, User, utcnow
from ennu.receipts import CALLBACK_ID_PREFIX, Handled

INTEGRATION = "twilio"
CRITICAL_EVENT = (
    "biomarker.updated"  # its Twilio route carries critical results only (where: critical_biomarker)
)
# How far along each status is: a callback applies only when it is further along than what is recorded.
MESSAGE_RANK = {
    "accepted": 1, "scheduled": 1, "queued": 1, "sending": 2, "sent": 3,
    "delivered": 4, "undelivered": 4, "failed": 4, "canceled": 4, "read": 5,
}  # fmt: skip
CALL_RANK = {
    "queued": 1, "initiated": 1, "ringing": 2, "in-progress": 3,
    "completed": 4, "busy": 4, "no-answer": 4, "failed": 4, "canceled": 4,
}  # fmt: skip
NOT_DELIVERED = frozenset({"undelivered", "failed", "busy", "no-answer"})


def twilio_webhook(session: Session, payload: dict[str, Any]) -> Handled:
    """One Twilio webhook: a status callback, else an inbound SMS (only a STOP is kept and acted on)."""
    if payload.get("MessageStatus") or payload.get("CallStatus"):
        return apply_status(session, payload)
    return twilio_stop(session, payload)


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


def delivery_of(
    session: Session, payload: dict[str, Any], sid: str
) -> tuple[Delivery | None, SyncLog | None]:
    """The delivery a callback is about, and the sync-log row of its send (for the object and record)."""
    event_id = str(payload.get(f"{CALLBACK_ID_PREFIX}event_id") or "")
    sent = session.execute(
        select(SyncLog)
        .where(SyncLog.connector == INTEGRATION, SyncLog.remote_id == sid)
        .order_by(SyncLog.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if not event_id and sent is not None and sent.event_id:
        event_id = sent.event_id
    if not event_id:
        return None, sent
    delivery = session.execute(
        select(Delivery).where(Delivery.event_id == event_id, Delivery.integration == INTEGRATION)
    ).scalar_one_or_none()
    return delivery, sent


def apply_status(session: Session, payload: dict[str, Any]) -> Handled:
    """Move the delivery forward to the callback's status (never back); see the module's docstring."""
    is_call = bool(payload.get("CallStatus"))
    status = str(payload.get("CallStatus") or payload.get("MessageStatus") or "").lower()
    sid = str(payload.get("CallSid") or payload.get("MessageSid") or "")
    ranks = CALL_RANK if is_call else MESSAGE_RANK
    if status not in ranks or not sid:
        return Handled("ignored")
    delivery, sent = delivery_of(session, payload, sid)
    if delivery is None:
        return Handled("unmatched")
    if ranks.get(delivery.vendor_status or "", 0) >= ranks[status]:
        return Handled("stale status")
    code = str(payload.get("ErrorCode") or "")[:20] or None
    delivery.vendor_status = status
    delivery.vendor_error = code
    delivery.vendor_status_at = utcnow()
    if status not in NOT_DELIVERED:
        return Handled("status applied")
    reason = f"twilio {status}" + (f" ({code})" if code else "")
    delivery.status = DeliveryStatus.FAILED.value
    delivery.last_error = reason
    delivery.settled_at = utcnow()
    session.add(
        SyncLog(
            event_id=delivery.event_id,
            connector=INTEGRATION,
            object=sent.object if sent is not None else ("calls" if is_call else "messages"),
            record_key=sent.record_key
            if sent is not None
            else str(payload.get(f"{CALLBACK_ID_PREFIX}record_key") or f"event:{delivery.event_id}")[:120],
            user_id=delivery.user_id,
            status=SyncStatus.FAILED.value,
            remote_id=sid[:120],
            error=reason,
            attempt=max(delivery.attempts, 1),
        )
    )
    session.flush()
    finish_events([delivery.event_id], session=session)
    if delivery.event_type == CRITICAL_EVENT:
        detail = f"a critical-result SMS was not delivered ({reason})"
        return Handled(
            "not delivered", alerts=[("sms-undelivered", f"ennu.integration.{INTEGRATION}", detail)]
        )
    return Handled("not delivered")
