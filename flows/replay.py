"""`replay`: an operator's "try again" for dead letters, after the cause is fixed."""

from __future__ import annotations

from prefect import flow, get_run_logger

from ennu import deliveries, receipts
from ennu.audit import audited_run, describe
from ennu.models import DeliveryStatus

REPLAYABLE = frozenset({DeliveryStatus.FAILED.value, DeliveryStatus.REJECTED.value})


@flow(name="replay", log_prints=False)
def replay(
    integration: str | None = None,
    statuses: list[str] | None = None,
    event_ids: list[str] | None = None,
    webhooks: bool = True,
) -> dict[str, int]:
    """Make matching settled deliveries pending again (attempts reset); the workers deliver them once.

    Args:
        integration: only this destination (default: all).
        statuses: which settled states to replay: `failed` (default) and/or `rejected` (after a data fix).
        event_ids: only these events.
        webhooks: also offer failed webhook receipts again.
    """
    wanted = statuses or [DeliveryStatus.FAILED.value]
    unknown = sorted(set(wanted) - REPLAYABLE)
    if unknown:
        raise ValueError(f"replay takes the states {sorted(REPLAYABLE)}")
    # Started by hand from the Prefect UI: recorded in the audit log (ennu/audit.py), ids and names only.
    target = describe(
        integration=integration,
        statuses=wanted,
        event_ids=None if event_ids is None else f"{len(event_ids)} ids",
    )
    with audited_run("replay", target):
        reopened = deliveries.reopen(statuses=wanted, integration=integration, event_ids=event_ids)
        receipts_reopened = receipts.reopen_failed(integration) if webhooks and event_ids is None else 0
    get_run_logger().info(
        "replay: %d deliveries and %d webhook receipts offered again", reopened, receipts_reopened
    )
    return {"deliveries": reopened, "receipts": receipts_reopened}
