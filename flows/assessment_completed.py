"""`assessment-completed`: a completed health assessment carried to the CRM and e-mail marketing."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.pipeline import PUSH_RUNNER, run_event_pipeline
from flows.results import NO_RESULTS
from tasks.run_state import batch_state


@flow(name="assessment-completed", task_runner=PUSH_RUNNER, log_prints=False, **NO_RESULTS)
def assessment_completed(event_ids: list[str], force: bool = False) -> State[Any]:
    """Process these outbox events (ids only: personal data never becomes a flow parameter).

    Args:
        event_ids: outbox event ids of type `assessment.completed`.
        force: send even records whose content the destination already has.
    """
    return batch_state(run_event_pipeline("assessment.completed", event_ids, force=force))
