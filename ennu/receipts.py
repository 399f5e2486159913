"""Webhook receipts as work: claimed by a worker with a lease, applied once, retried after a failure.

A receipt is unprocessed while `processed_at` is empty; clean-up never deletes one. A handler that raises
is offered again after a backoff and marked `failed` (a dead letter, never deleted) at the attempt cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update

from ennu.db import session_scope
from ennu.deliveries import retry_delay
from ennu.models import WebhookReceipt, utcnow
from ennu.settings import get_settings

FAILED = "failed"


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
