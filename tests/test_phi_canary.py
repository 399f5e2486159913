"""PHI canary: a unique e-mail and phone go through the flow and must surface nowhere but the vendor."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from sqlalchemy import select

from ennu.db import session_scope
from ennu.models import SyncLog
from flows.assessment_completed import assessment_completed
from tests.factories import person_with_assessment

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_canary_email_and_phone_appear_in_no_log_parameter_artifact_or_error(
    sqlite_database: str, sandbox: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    marker = uuid.uuid4().hex[:10]
    canary_email = f"canary.{marker}@example.org"
    canary_phone = "+1555013" + str(int(marker, 16) % 10000).zfill(4)
    bad_email = f"canary-bad-{marker}-at-example.org"  # invalid: goes down the rejection path
    caplog.set_level(logging.DEBUG)

    _, _, good_event = person_with_assessment(email=canary_email, phone=canary_phone)
    _, _, bad_event = person_with_assessment(email=bad_email, phone="12")
    state = assessment_completed(event_ids=[good_event, bad_event], return_state=True)
    flow_run_id = state.state_details.flow_run_id

    # It did reach the vendor (so the canary really went through the whole path)...
    assert [c["properties"]["email"] for c in sandbox.objects("hubspot", "contacts")] == [canary_email]

    # ...and nowhere else.
    secrets = (canary_email, canary_phone, canary_phone[2:], marker)
    captured = capfd.readouterr()
    haystacks = {
        "python logs": "\n".join(r.getMessage() + str(r.args) for r in caplog.records),
        "stdout/stderr": captured.out + captured.err,
        "state message": str(state.message),
    }
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        haystacks["flow run parameters"] = str(run.parameters)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        haystacks["prefect logs"] = "\n".join(log.message for log in logs)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        haystacks["artifacts"] = "\n".join(str(a.data) + str(a.description) for a in artifacts)
        task_runs = client.read_task_runs()
        haystacks["task run states"] = "\n".join(str(t.state.message if t.state else "") for t in task_runs)
    with session_scope() as session:
        haystacks["sync log"] = str(
            [(r.error, r.record_key, r.remote_id) for r in session.execute(select(SyncLog)).scalars()]
        )
    assert logs, "the flow run should have written Prefect logs"
    assert artifacts, "the flow run should have a summary artifact"
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"personal data leaked into {where}"
