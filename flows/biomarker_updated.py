"""`biomarker-updated`: a new result to the EHR as a coded Observation; a critical one to the care team."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.ops_alert import ops_alert
from flows.pipeline import PUSH_RUNNER, run_event_pipeline
from flows.results import NO_RESULTS
from tasks.alert import unnotified_critical_results
from tasks.run_state import batch_state
from tasks.status import CLINICAL_INTEGRATION

EVENT_TYPE = "biomarker.updated"


@flow(name="biomarker-updated", task_runner=PUSH_RUNNER, log_prints=False, **NO_RESULTS)
def biomarker_updated(event_ids: list[str], force: bool = False) -> State[Any]:
    """Process these outbox events of type `biomarker.updated` (ids only, never personal data).

    Critical results go to the care team as deliveries of the slack and teams routes; if none of them is
    enabled, the operators are alerted instead.

    Args:
        event_ids: outbox event ids.
        force: send even records whose content the destination already has.
    """
    summary = run_event_pipeline(EVENT_TYPE, event_ids, force=force)
    unnotified = unnotified_critical_results(EVENT_TYPE, event_ids)
    if unnotified:
        ops_alert(
            kind="no-provider-channel",
            subject=f"ennu.integration.{CLINICAL_INTEGRATION}",
            detail=f"{unnotified} critical results",
        )
    return batch_state(summary)
