"""`health-goal-created`: A health goal was created: a CRM deal and an audience tag."""

from __future__ import annotations

from prefect import flow

from flows.pipeline import PUSH_RUNNER, SummaryTable, run_event_pipeline


@flow(name="health-goal-created", task_runner=PUSH_RUNNER, log_prints=False)
def health_goal_created(event_ids: list[str], force: bool = False) -> SummaryTable:
    """Process these outbox events of type `health_goal.created` (ids only, never personal data).

    Args:
        event_ids: outbox event ids.
        force: send even records whose content the destination already has.
    """
    return run_event_pipeline("health_goal.created", event_ids, force=force)
