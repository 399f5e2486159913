"""The REST surface: roles on every endpoint, the status figures against the sync log, paging, tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flows.assessment_completed import assessment_completed
from intake.app import create_app
from tests.factories import person_with_assessment

pytestmark = pytest.mark.usefixtures("prefect_server")
HOST = {"Authorization": "Bearer dev-intake-token"}
VIEWER = {"Authorization": "Bearer viewer-token"}
OPERATOR = {"Authorization": "Bearer operator-token"}


@pytest.fixture()
def api(sqlite_database: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("ENNU_VIEWER_TOKENS", "viewer-token")
    monkeypatch.setenv("ENNU_OPERATOR_TOKENS", "old-operator-token,operator-token")
    with TestClient(create_app()) as client:
        yield client


ENDPOINTS = [
    ("GET", "/integrations/status", None),
    ("GET", "/integrations/health", None),
    ("GET", "/integrations/data/hubspot", None),
    ("POST", "/integrations/test/hubspot", None),
    (
        "POST",
        "/events",
        {"id": "x", "type": "user.login", "occurred_at": "2026-01-01T00:00:00Z", "subject": 1},
    ),
]
ALLOWED = {
    "host-app": {"/events"},
    "viewer": {"/integrations/status", "/integrations/health", "/integrations/data/hubspot"},
    "operator": {
        "/integrations/status",
        "/integrations/health",
        "/integrations/data/hubspot",
        "/integrations/test/hubspot",
    },
}


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_every_endpoint_checks_token_and_role(api: TestClient, method: str, path: str, body: Any) -> None:
    assert api.request(method, path, json=body).status_code == 401
    assert api.request(method, path, json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    for role, headers in (("host-app", HOST), ("viewer", VIEWER), ("operator", OPERATOR)):
        status = api.request(method, path, json=body, headers=headers).status_code
        if path in ALLOWED[role]:
            assert status in (200, 202), (role, path, status)
        else:
            assert status == 403, (role, path, status)


def test_rotated_operator_token_still_works(api: TestClient) -> None:
    headers = {"Authorization": "Bearer old-operator-token"}
    assert api.post("/integrations/test/hubspot", headers=headers).json()["ok"] is True


def test_status_figures_agree_with_the_sync_log(api: TestClient, sandbox: Any) -> None:
    _, _, bad = person_with_assessment(email="broken")
    good = [person_with_assessment()[2] for _ in range(3)]
    _, _, no_marketing = person_with_assessment(marketing=False)
    assessment_completed(event_ids=[bad, *good, no_marketing])

    status = {s["integration"]: s for s in api.get("/integrations/status", headers=VIEWER).json()}

    assert status["hubspot"]["counts_24h"] == {"created": 4, "rejected": 1}
    assert status["hubspot"]["error_rate_24h"] == 0.2
    assert status["mailchimp"]["counts_24h"] == {"created": 3, "rejected": 1, "skipped": 1}
    assert status["mailchimp"]["error_rate_24h"] == 0.25
    assert status["hubspot"]["circuit"] == "closed"
    assert status["hubspot"]["pending"] == 0
    assert status["hubspot"]["last_success"] is not None
    assert "broken" not in str(status)


def test_data_pages_through_what_was_sent_for_a_person(api: TestClient, sandbox: Any) -> None:
    user_id, _, event_id = person_with_assessment()
    assessment_completed(event_ids=[event_id])
    assessment_completed(event_ids=[event_id], force=True)

    page = api.get(f"/integrations/data/hubspot?user_id={user_id}&page_size=1", headers=VIEWER).json()
    assert page["total"] == 2
    assert [r["status"] for r in page["rows"]] == ["updated"]
    second = api.get(
        f"/integrations/data/hubspot?user_id={user_id}&page_size=1&page=2", headers=VIEWER
    ).json()
    assert [r["status"] for r in second["rows"]] == ["created"]
    assert api.get("/integrations/data/nowhere", headers=VIEWER).status_code == 404
    assert api.get("/integrations/data/hubspot?record_key=DROP TABLE", headers=VIEWER).status_code == 422


def test_connection_test_reports_a_vendor_failure(api: TestClient, sandbox: Any) -> None:
    sandbox.fail("mailchimp", mode="status", status=503, count=3)  # outlasts the request's two retries
    result = api.post("/integrations/test/mailchimp", headers=OPERATOR).json()
    assert result["ok"] is False and "503" in result["detail"]
    assert api.post("/integrations/test/mailchimp", headers=OPERATOR).json()["ok"] is True


def test_openapi_describes_every_endpoint_with_its_errors(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    for path, method in (
        ("/events", "post"),
        ("/integrations/status", "get"),
        ("/integrations/sync", "post"),
        ("/integrations/test/{integration}", "post"),
        ("/integrations/data/{integration}", "get"),
        ("/webhooks/{integration}", "post"),
    ):
        responses = spec["paths"][path][method]["responses"]
        assert "401" in responses, (path, responses.keys())
