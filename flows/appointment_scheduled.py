"""`appointment-scheduled`: an appointment booked or moved: its reminder is scheduled (moved: anew)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.pipeline import PUSH_RUNNER, run_event_pipeline
from flows.results import NO_RESULTS
from tasks.run_state import batch_state


@flow(name="appointment-scheduled", task_runner=PUSH_RUNNER, log_prints=False, **NO_RESULTS)
def appointment_scheduled(event_ids: list[str], force: bool = False) -> State[Any]:
    """Process these outbox events of type `appointment.scheduled` (ids only, never personal data).

    Args:
        event_ids: outbox event ids.
        force: send even records whose content the destination already has.
    """
    return batch_state(run_event_pipeline("appointment.scheduled", event_ids, force=force))
