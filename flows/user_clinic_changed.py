"""`user-clinic-changed`: A person moved to another clinic: their CRM contact is linked to its company."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.pipeline import PUSH_RUNNER, run_event_pipeline
from flows.results import NO_RESULTS
from tasks.run_state import batch_state


@flow(name="user-clinic-changed", task_runner=PUSH_RUNNER, log_prints=False, **NO_RESULTS)
def user_clinic_changed(event_ids: list[str], force: bool = False) -> State[Any]:
    """Process these outbox events of type `user.clinic_changed` (ids only, never personal data).

    Args:
        event_ids: outbox event ids.
        force: send even records whose content the destination already has.
    """
    return batch_state(run_event_pipeline("user.clinic_changed", event_ids, force=force))
