"""`appointment-cancelled`: an appointment called off: its scheduled reminder is withdrawn."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.pipeline import PUSH_RUNNER, run_event_pipeline
from flows.results import NO_RESULTS
from tasks.reminders import cancel_waiting_reminders
from tasks.run_state import batch_state


@flow(name="appointment-cancelled", task_runner=PUSH_RUNNER, log_prints=False, **NO_RESULTS)
def appointment_cancelled(event_ids: list[str], force: bool = False) -> State[Any]:
    """Process these outbox events of type `appointment.cancelled` (ids only, never personal data).

    A reminder still waiting in the delivery engine (a call, a message too far ahead for Twilio) is
    cancelled there; one Twilio holds (a scheduled message) is canceled at Twilio by the pipeline.

    Args:
        event_ids: outbox event ids.
        force: send even records whose content the destination already has.
    """
    cancel_waiting_reminders(event_ids)
    return batch_state(run_event_pipeline("appointment.cancelled", event_ids, force=force))
