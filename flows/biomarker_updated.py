"""`biomarker-updated`: a new biomarker result to the EHR as a coded Observation; critical ones alert."""

from __future__ import annotations

from prefect import flow

from flows.pipeline import PUSH_RUNNER, SummaryTable, run_event_pipeline
from tasks.alert import alert_critical


@flow(name="biomarker-updated", task_runner=PUSH_RUNNER, log_prints=False)
def biomarker_updated(event_ids: list[str], force: bool = False) -> SummaryTable:
    """Process these outbox events of type `biomarker.updated` (ids only, never personal data).

    Args:
        event_ids: outbox event ids.
        force: send even records whose content the destination already has.
    """
    return run_event_pipeline("biomarker.updated", event_ids, force=force, side_stage=alert_critical)
