"""`health-goal-progressed`: A health goal moved on: the CRM deal and Opportunity follow its progress."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.pipeline import PUSH_RUNNER, run_event_pipeline
from flows.results import NO_RESULTS
from tasks.run_state import batch_state


@flow(name="health-goal-progressed", task_runner=PUSH_RUNNER, log_prints=False, **NO_RESULTS)
def health_goal_progressed(event_ids: list[str], force: bool = False) -> State[Any]:
    """Process these outbox events of type `health_goal.progressed` (ids only, never personal data).

    The progress sent is the host's `health_goals.progress_percent` when the batch is read, not a value
    carried by the event: an older event delivered late sends the newer value, never its own.

    Args:
        event_ids: outbox event ids.
        force: send even records whose content the destination already has.
    """
    return batch_state(run_event_pipeline("health_goal.progressed", event_ids, force=force))
