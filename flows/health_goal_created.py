"""`health-goal-created`: A health goal was created: a CRM deal and an audience tag."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.pipeline import PUSH_RUNNER, run_event_pipeline
from flows.results import NO_RESULTS
from tasks.run_state import batch_state


@flow(name="health-goal-created", task_runner=PUSH_RUNNER, log_prints=False, **NO_RESULTS)
def health_goal_created(event_ids: list[str], force: bool = False) -> State[Any]:
    """Process these outbox events of type `health_goal.created` (ids only, never personal data).

    Args:
        event_ids: outbox event ids.
        force: send even records whose content the destination already has.
    """
    return batch_state(run_event_pipeline("health_goal.created", event_ids, force=force))
