"""Schemathesis against the OpenAPI document the intake app serves: no 5xx, only documented answers.

Every generated request is sent by each caller (no credentials, each bearer role, the Zapier app), and each
operation's test checks that its requests reached the handler, not only the 401s. The checks: no server
error, every status code and content type the app answers is in the document, every body conforms to its
documented schema, and a 422 never echoes a submitted value. The app runs in process (ASGI) on SQLite
with a real Prefect test server (POST /events emits events, POST /integrations/sync schedules runs of a
registered `bulk-sync/on-demand` deployment, nothing executes them) and the sandbox (POST
/integrations/test/{integration} runs the real connection tests against it). Webhooks cannot be signed by
a fuzzer: they are checked for their documented 401/404/422; valid signatures are covered by
tests/test_webhooks.py.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from flows.bulk_sync import bulk_sync
from intake.app import create_app
from intake.errors import FIELD_NAME
from intake.integrations import BULK_SYNC_DEPLOYMENT

APP = create_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
DOCUMENT = json.dumps(APP.openapi())
CALLERS: dict[str, dict[str, str]] = {
    "anonymous": {},
    "host-app": {"Authorization": "Bearer fuzz-host-token"},
    "viewer": {"Authorization": "Bearer fuzz-viewer-token"},
    "operator": {"Authorization": "Bearer fuzz-operator-token"},
    "zapier": {"X-Zapier-Token": "fuzz-zapier-token"},
}
CREDENTIAL_HEADERS = {"authorization", "x-zapier-token"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Readiness answers 503 with its checks when the hub cannot deliver (here: no delivery worker): a documented
# answer of a probe, not a refusal and not a server error; its schema and status are still checked.
READINESS = "/health/ready"
READINESS_CHECKS = [c for c in CHECKS if c is not not_a_server_error]


@pytest.fixture(scope="module")
def bulk_sync_deployed(prefect_server: None) -> Iterator[None]:
    """The deployment POST /integrations/sync starts, registered on the test server (no worker runs it).

    Removed afterwards with the runs the fuzzing scheduled, so that no later test serving the real
    deployments on the same server inherits dozens of queued bulk syncs.
    """
    deployment_id = bulk_sync.to_deployment(name=BULK_SYNC_DEPLOYMENT.split("/")[1]).apply()
    yield
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]))
        )
        for run in runs:
            client.delete_flow_run(run.id)
        client.delete_deployment(deployment_id)


@pytest.fixture()
def configured(
    sqlite_database: str, sandbox: Any, bulk_sync_deployed: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("ENNU_INTAKE_TOKEN", "fuzz-host-token")
    monkeypatch.setenv("ENNU_VIEWER_TOKENS", "fuzz-viewer-token")
    monkeypatch.setenv("ENNU_OPERATOR_TOKENS", "fuzz-operator-token")
    monkeypatch.setenv("ZAPIER_TOKEN", "fuzz-zapier-token")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRETS", "whsec_fuzz")
    monkeypatch.setenv("MAILCHIMP_WEBHOOK_SECRETS", "mc-fuzz-secret")
    yield


def submitted_strings(value: Any) -> Iterator[str]:
    """Every string the request carried, and every key that is not a plain field name."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if not FIELD_NAME.match(str(key)):
                yield str(key)
            yield from submitted_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from submitted_strings(item)


def assert_no_echo(case: schemathesis.Case, text: str) -> None:
    """A refusal names where and why, never what was sent (values that the document itself holds aside)."""
    sent = (case.body, case.query, case.path_parameters)
    for value in submitted_strings(sent):
        if len(value) >= 6 and value not in DOCUMENT:
            assert value not in text, f"{case.method} {case.path} echoed a submitted value"


@dataclass
class Answers:
    """The status codes one operation answered, over every example and every caller."""

    operation: str = ""
    codes: Counter[int] = field(default_factory=Counter)


@pytest.fixture()
def answers() -> Iterator[Answers]:
    """Checked once all the examples of the operation ran: the fuzzing reached its handler (past
    authentication, each guarded operation answered something other than 401/403 at least once)."""
    seen = Answers()
    yield seen
    if seen.operation and seen.operation not in UNSIGNABLE:
        assert set(seen.codes) - {401, 403}, f"{seen.operation} only refused: {dict(seen.codes)}"
    for code in REACHED.get(seen.operation, ()):
        assert seen.codes[code], (seen.operation, code, dict(seen.codes))


# A fuzzer cannot sign nor guess a URL secret: 401 is the answer (tests/test_webhooks.py signs).
UNSIGNABLE = {"POST /webhooks/{integration}", "GET /webhooks/mailchimp"}
REACHED = {  # answers of the handlers themselves the fuzzing must have seen
    "POST /events": (202, 200),
    "POST /integrations/sync": (202,),
    "POST /integrations/test/{integration}": (200,),
}


@schema.parametrize()
@settings(
    max_examples=6,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_answer_is_documented_and_never_a_server_error(
    case: schemathesis.Case, configured: None, answers: Answers
) -> None:
    """Each example is sent by every caller, the generator's credential headers replaced by the caller's."""
    answers.operation = f"{case.method} {case.path}"
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in CREDENTIAL_HEADERS}
    checks = READINESS_CHECKS if case.path == READINESS else CHECKS
    for caller in sorted(CALLERS):
        try:
            response = case.call_and_validate(headers=CALLERS[caller], checks=checks)
            if response.status_code >= 400:
                assert_no_echo(case, response.text)
        except BaseException as failure:
            failure.add_note(f"caller: {caller}")
            raise
        answers.codes[response.status_code] += 1


def test_every_refusal_is_documented_with_the_one_error_body() -> None:
    """Each documented 4xx/5xx of each operation is the ErrorBody; FastAPI's own 422 shape is gone."""
    document = APP.openapi()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            refusals = {code: r for code, r in operation["responses"].items() if int(code) >= 400}
            if path != "/health":
                assert refusals, (method, path)
            for code, described in refusals.items():
                if path == READINESS and code == "503":
                    continue  # the readiness answer itself (`Readiness`), not a refusal
                schema_ref = described["content"]["application/json"]["schema"]["$ref"]
                assert schema_ref.endswith("/ErrorBody"), (method, path, code)


@pytest.mark.usefixtures("configured")
def test_refusals_share_one_shape_and_never_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from intake import integrations

    host, operator = CALLERS["host-app"], CALLERS["operator"]
    with TestClient(APP) as client:
        answers = {
            401: client.get("/integrations/status"),
            403: client.get("/integrations/status", headers=host),
            404: client.get("/integrations/data/nowhere", headers=operator),
            405: client.get("/events", headers=host),
            413: client.post("/events", content=b"{" + b" " * 70_000 + b"}", headers=host),
            415: client.post("/events", content=b"subject=1", headers={**host, "Content-Type": "text/plain"}),
            422: client.post(
                "/events", json={"id": "e", "jane.doe@example.com": "glucose 212"}, headers=host
            ),
        }
        monkeypatch.setattr(integrations, "BULK_SYNC_DEPLOYMENT", "bulk-sync/not-deployed")
        answers[503] = client.post("/integrations/sync", json={}, headers=operator)
    for status, response in answers.items():
        assert response.status_code == status, (status, response.text)
        body = response.json()
        assert set(body) == {"detail", "errors"} and isinstance(body["detail"], str), body
    unknown = {
        "loc": ["body", "<unknown field>"],
        "type": "extra_forbidden",
        "msg": "Extra inputs are not permitted",
    }
    assert unknown in answers[422].json()["errors"]
    assert "jane.doe" not in answers[422].text and "glucose" not in answers[422].text


@pytest.mark.usefixtures("configured")
def test_a_sync_naming_no_destination_asks_only_those_that_keep_records() -> None:
    from fastapi.testclient import TestClient

    operator = CALLERS["operator"]
    with TestClient(APP) as client:
        started = client.post(
            "/integrations/sync", json={"event_type": "assessment.completed"}, headers=operator
        )
        announcing = client.post(
            "/integrations/sync", json={"event_type": "appointment.scheduled"}, headers=operator
        )
    assert started.status_code == 202, started.text
    with get_client(sync_client=True) as prefect:
        run = prefect.read_flow_run(started.json()["flow_run_id"])
    # The run's parameters say where it goes: no SMS, notice, Zap, analytics hit or journey start.
    assert run.parameters["integrations"] == ["hubspot", "salesforce", "epic_fhir"]
    assert announcing.status_code == 422
    assert "name the integrations" in announcing.json()["detail"]
