"""The erasure report of one person: each destination's outcome, when, the vendor's reference, what is owed.

Read from the erasure list, the erasure's deliveries and its `person` rows in the sync log; it holds host
ids, destination names, fixed reasons and references that connectors word without identifiers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select

from ennu.db import session_scope
from ennu.erasure import ERASURE_EVENT, ERASURE_OBJECT
from ennu.models import OPEN_DELIVERY, Delivery, DeliveryStatus, ErasedPerson, SyncLog, SyncStatus, as_utc

RETENTION_PREFIX = "medical record retained"


@dataclass(frozen=True)
class DestinationErasure:
    destination: str
    outcome: str  # erased | not held | retained | pending | failed | skipped
    state: str  # the erasure's delivery state at this destination
    at: datetime | None  # the latest outcome's time
    reference: str | None  # the vendor's reference (a count, a request time), never an identifier
    reason: str | None  # why it is pending, failed, skipped or retained
    outstanding: bool  # something of the person may still be at the destination


@dataclass(frozen=True)
class ErasureReport:
    person: int  # the host user id on the erasure list
    erased_at: datetime
    request_event_id: str | None
    destinations: list[DestinationErasure]

    @property
    def outstanding(self) -> list[str]:
        return [d.destination for d in self.destinations if d.outstanding]

    def rows(self) -> list[dict[str, str]]:
        """Artifact rows: one per destination, every value a string."""
        return [
            {
                k: "" if v is None else (v.isoformat() if isinstance(v, datetime) else str(v))
                for k, v in asdict(d).items()
            }
            for d in self.destinations
        ]


def _outcome(state: str, status: str | None, reason: str | None) -> tuple[str, bool]:
    if state in {s.value for s in OPEN_DELIVERY}:
        return "pending", True
    if state == DeliveryStatus.FAILED.value:
        return "failed", True
    if status == SyncStatus.ERASED.value:
        return "erased", False
    if status == SyncStatus.SKIPPED.value and (reason or "").startswith(RETENTION_PREFIX):
        return "retained", False
    if status in (SyncStatus.UNCHANGED.value, SyncStatus.UPDATED.value, SyncStatus.CREATED.value):
        return "not held", False
    if state == DeliveryStatus.CANCELLED.value:
        return "cancelled", True
    return "skipped", True


def erasure_report(user_id: int) -> ErasureReport | None:
    """The person's report, None when they are not on the erasure list."""
    with session_scope() as session:
        listed = session.get(ErasedPerson, user_id)
        if listed is None:
            return None
        held = session.execute(
            select(
                Delivery.event_id,
                Delivery.integration,
                Delivery.status,
                Delivery.last_error,
                Delivery.settled_at,
            )
            .where(Delivery.user_id == user_id, Delivery.event_type == ERASURE_EVENT)
            .order_by(Delivery.integration, Delivery.id)
        ).all()
        logged = session.execute(
            select(
                SyncLog.event_id,
                SyncLog.connector,
                SyncLog.status,
                SyncLog.remote_id,
                SyncLog.error,
                SyncLog.created_at,
            )
            .where(SyncLog.user_id == user_id, SyncLog.object == ERASURE_OBJECT)
            .order_by(SyncLog.id)
        ).all()
        erased_at, request = listed.erased_at, listed.event_id
    latest = {(row[0], row[1]): row for row in logged}  # the last row of each (event, destination) wins
    by_destination: dict[str, DestinationErasure] = {}
    for event_id, integration, state, last_error, settled_at in held:
        row = latest.get((event_id, integration))
        status, reference, reason, at = (
            (row[2], row[3], row[4], as_utc(row[5])) if row else (None, None, None, None)
        )
        outcome, outstanding = _outcome(state, status, reason or last_error)
        by_destination[integration] = DestinationErasure(
            integration,
            outcome,
            state,
            at or as_utc(settled_at),
            reference,
            reason or last_error,
            outstanding,
        )
    return ErasureReport(user_id, as_utc(erased_at) or erased_at, request, list(by_destination.values()))
