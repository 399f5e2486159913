"""Run state: how a batch's outcomes become its flow run's final state, so the runs list says what happened.

- A dead letter — a delivery the vendor refused permanently, or one that reached ENNU_DELIVERY_MAX_ATTEMPTS —
  makes the run **Failed**, with a message naming the destinations and counts: the ops alert fires on it.
- A delivery that will be tried again (deferred, or an ambiguous send to look up) does not: an outage
  defers every record of every batch, and an alert per batch would drown the one that matters. An outage
  is told by the circuit breaker, the error-rate and the backlog alerts; a record that keeps failing ends
  as a dead letter after its last attempt, and that batch fails.
- Rejections only (our validation refused a record: it was never sent) end **Completed with rejections**:
  the data needs a fix, nothing is broken, so no alert; the runs list still shows it without a click.

Names and counts only: a state message is stored by Prefect and carried by its events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect.states import Completed, Failed, State

SummaryRow = dict[str, int | str]
WITH_REJECTIONS = "Completed with rejections"
FAILED_PREFIX = "failed deliveries"


def _counts(summary: Sequence[SummaryRow], column: str) -> list[tuple[str, int]]:
    return [(str(row["destination"]), int(row.get(column, 0))) for row in summary if int(row.get(column, 0))]


def describe(counts: list[tuple[str, int]]) -> str:
    """`hubspot/contacts 2, stripe/customers 1`"""
    return ", ".join(f"{destination} {n}" for destination, n in counts)


def batch_state(summary: Sequence[SummaryRow]) -> State[Any]:
    """The final state of a batch's run from its per-destination summary (`tasks.record.summarise`)."""
    table = list(summary)
    failed, rejected = _counts(table, "failed"), _counts(table, "rejected")
    if failed:
        message = f"{FAILED_PREFIX}: {describe(failed)}"
        if rejected:
            message += f"; rejected: {describe(rejected)}"
        return Failed(message=message, data=table)
    if rejected:
        return Completed(name=WITH_REJECTIONS, message=f"rejected: {describe(rejected)}", data=table)
    return Completed(data=table)


def raise_unless_recorded(state: object) -> None:
    """For callers of an event flow (the delivery worker, the drain), with the state its call returned
    (`return_state=True`): a run that failed because some deliveries did is a normal outcome (every delivery
    is recorded); a run that raised is re-raised."""
    if not isinstance(state, State):
        raise TypeError("expected the flow run's final state (call the flow with return_state=True)")
    if not state.is_failed() and not state.is_crashed():
        return
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not (state.message or "").startswith(FAILED_PREFIX):
        raise RuntimeError(f"the batch's run ended {state.name} without its outcomes")
