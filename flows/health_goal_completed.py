"""`health-goal-completed`: A health goal was completed: the CRM deal is won."""

from __future__ import annotations

from prefect import flow

from flows.pipeline import PUSH_RUNNER, SummaryTable, run_event_pipeline


@flow(name="health-goal-completed", task_runner=PUSH_RUNNER, log_prints=False)
def health_goal_completed(event_ids: list[str], force: bool = False) -> SummaryTable:
    """Process these outbox events of type `health_goal.completed` (ids only, never personal data).

    Args:
        event_ids: outbox event ids.
        force: send even records whose content the destination already has.
    """
    return run_event_pipeline("health_goal.completed", event_ids, force=force)
