"""`cleanup`: retention of the hub's own tables; Prefect's runs, logs and events are left to its vacuum."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger
from sqlalchemy import delete, select

from ennu import receipts
from ennu.db import session_scope
from ennu.models import AuditEntry, EventStatus, OutboxEvent, SyncLog, WebhookReceipt, utcnow
from ennu.settings import get_settings

BATCH = 5000


def delete_older(
    model: type[SyncLog] | type[WebhookReceipt] | type[OutboxEvent] | type[AuditEntry],
    column: str,
    days: int,
    *extra: object,
) -> int:
    """Delete rows older than `days` in batches, so no transaction holds the table for long."""
    cutoff = utcnow() - timedelta(days=days)
    total = 0
    key = model.id
    while True:
        with session_scope() as session:
            ids = list(
                session.execute(
                    select(key).where(getattr(model, column) < cutoff, *extra).limit(BATCH)  # type: ignore[arg-type]
                ).scalars()
            )
            if not ids:
                return total
            session.execute(delete(model).where(key.in_(ids)))
            total += len(ids)


@flow(name="cleanup", log_prints=False)
def cleanup() -> dict[str, int]:
    """Delete sync-log rows, webhook receipts, settled outbox events and audit entries past their retention
    period, and remembered webhook ids past their integration's replay window
    (ennu.receipts.REPLAY_WINDOW_DAYS)."""
    settings = get_settings()
    removed = {
        "sync_log": delete_older(SyncLog, "created_at", settings.retention_sync_log_days),
        # An unprocessed (or failed) receipt is work still owed: never deleted, however old.
        "webhook_receipts": delete_older(
            WebhookReceipt,
            "received_at",
            settings.retention_receipts_days,
            WebhookReceipt.processed_at.is_not(None),
        ),
        # The ids outlive the payloads: a replay after the clean-up above is still refused.
        "webhook_receipt_ids": receipts.forget_replay_ids(BATCH),
        "event_outbox": delete_older(
            OutboxEvent,
            "received_at",
            settings.retention_outbox_days,
            OutboxEvent.status == EventStatus.DONE.value,
        ),
        "audit_log": delete_older(AuditEntry, "at", settings.retention_audit_days),
    }
    get_run_logger().info("retention removed %s", removed)
    return removed
