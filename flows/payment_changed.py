"""`payment-changed`: a Stripe payment's status (paid, failed, refunded; webhooks) reaches the CRMs."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.pipeline import PUSH_RUNNER, run_event_pipeline
from flows.results import NO_RESULTS
from tasks.run_state import batch_state


@flow(name="payment-changed", task_runner=PUSH_RUNNER, log_prints=False, **NO_RESULTS)
def payment_changed(event_ids: list[str], force: bool = False) -> State[Any]:
    """Process these outbox events of type `payment.changed` (raised by `webhook-received`).

    Args:
        event_ids: outbox event ids.
        force: send even records whose content the destination already has.
    """
    return batch_state(run_event_pipeline("payment.changed", event_ids, force=force))
