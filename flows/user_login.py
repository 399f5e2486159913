"""`user-login`: A person logged in: the CRM's last-activity property is updated."""

from __future__ import annotations

from prefect import flow

from flows.pipeline import PUSH_RUNNER, SummaryTable, run_event_pipeline


@flow(name="user-login", task_runner=PUSH_RUNNER, log_prints=False)
def user_login(event_ids: list[str], force: bool = False) -> SummaryTable:
    """Process these outbox events of type `user.login` (ids only, never personal data).

    Args:
        event_ids: outbox event ids.
        force: send even records whose content the destination already has.
    """
    return run_event_pipeline("user.login", event_ids, force=force)
