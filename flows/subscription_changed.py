"""`subscription-changed`: a Stripe subscription change (from its webhook) reaches the CRMs."""

from __future__ import annotations

from prefect import flow

from flows.pipeline import PUSH_RUNNER, SummaryTable, run_event_pipeline


@flow(name="subscription-changed", task_runner=PUSH_RUNNER, log_prints=False)
def subscription_changed(event_ids: list[str], force: bool = False) -> SummaryTable:
    """Process these outbox events of type `subscription.changed` (raised by `webhook-received`).

    Args:
        event_ids: outbox event ids.
        force: send even records whose content the destination already has.
    """
    return run_event_pipeline("subscription.changed", event_ids, force=force)
