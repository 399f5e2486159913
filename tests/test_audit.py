"""The audit log: every viewer and operator action, with its token's label (never the token), its target
(ids only) and its outcome; readable by operators only; fail closed; kept per the retention settings."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, text

from ennu.audit import INTAKE_RUN_TAG
from ennu.db import get_engine, session_scope
from ennu.models import AuditedTokenLabel, AuditEntry
from flows.cleanup import cleanup
from flows.replay import replay
from intake.app import create_app
from intake.auth import Role, parse_tokens

pytestmark = pytest.mark.usefixtures("prefect_server")
TOKENS = {
    "ENNU_INTAKE_TOKEN": "host-secret-7f3a",
    "ENNU_VIEWER_TOKENS": "dashboard=viewer-secret-91c2",
    "ENNU_OPERATOR_TOKENS": "alice=op-secret-a5d0,op-secret-b6e1",
}
SECRETS = ["host-secret-7f3a", "viewer-secret-91c2", "op-secret-a5d0", "op-secret-b6e1"]
HOST = {"Authorization": "Bearer host-secret-7f3a"}
VIEWER = {"Authorization": "Bearer viewer-secret-91c2"}
ALICE = {"Authorization": "Bearer op-secret-a5d0"}
SECOND_OPERATOR = {"Authorization": "Bearer op-secret-b6e1"}


@pytest.fixture()
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture()
def api(database: str, sandbox: Any, configured: None) -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def audit_rows(*, source: str | None = None) -> list[AuditEntry]:
    with session_scope() as session:
        query = select(AuditEntry).order_by(AuditEntry.id)
        if source is not None:
            query = query.where(AuditEntry.source == source)
        return list(session.execute(query).scalars())


def summary(rows: list[AuditEntry]) -> list[tuple[str, str, str, str | None, int | None]]:
    return [(r.actor, r.role, r.action, r.target, r.outcome) for r in rows]


def every_stored_text(url: str) -> str:
    """Every value of every row of both audit tables, as one text."""
    with get_engine(url).connect() as connection:
        rows = [
            *connection.execute(text("SELECT * FROM audit_log")).all(),
            *connection.execute(text("SELECT * FROM audit_token_labels")).all(),
        ]
    return "\n".join(str(value) for row in rows for value in row)


def assert_no_token_stored(url: str) -> None:
    stored = every_stored_text(url)
    assert stored  # there is something to search
    for secret in SECRETS:
        assert secret not in stored
        for digest in (hashlib.sha256, hashlib.md5, hashlib.sha1):
            assert digest(secret.encode()).hexdigest() not in stored


def test_every_viewer_and_operator_action_is_recorded_with_its_label_never_the_token(
    api: TestClient, database: str
) -> None:
    calls: list[tuple[str, str, dict[str, str], Any]] = [
        ("GET", "/integrations/status", VIEWER, None),
        ("GET", "/integrations/health", VIEWER, None),
        ("GET", "/integrations/data/hubspot?user_id=7&page=2", VIEWER, None),
        ("GET", "/integrations/charts/hubspot.png", VIEWER, None),
        ("GET", "/metrics", VIEWER, None),
        ("POST", "/integrations/test/hubspot", ALICE, None),
        (
            "POST",
            "/integrations/sync",
            ALICE,
            {"event_type": "user.registered", "integrations": ["hubspot"], "user_ids": [7, 8]},
        ),
        ("POST", "/integrations/replay", SECOND_OPERATOR, {"integration": "stripe", "statuses": ["failed"]}),
        ("GET", "/integrations/erasures/42", ALICE, None),
        ("GET", "/integrations/audit?action=sync", ALICE, None),
    ]
    answers = [
        api.request(method, path, headers=headers, json=body).status_code
        for method, path, headers, body in calls
    ]
    erasure = api.post(
        "/events",
        headers=HOST,
        json={
            "id": "del-42",
            "type": "user.deletion_requested",
            "occurred_at": "2026-12-01T10:00:00Z",
            "subject": 42,
        },
    )
    login = api.post(
        "/events",
        headers=HOST,
        json={"id": "login-42", "type": "user.login", "occurred_at": "2026-12-01T10:00:00Z", "subject": 42},
    )
    assert (erasure.status_code, login.status_code) == (202, 202)
    sync_answer = answers[6]
    assert sync_answer in (202, 503)  # 503: the harness has no bulk-sync deployment in this session
    assert answers[:6] == [200, 200, 200, 200, 200, 200]
    assert answers[7:] == [200, 404, 200]

    assert summary(audit_rows(source="api")) == [
        ("dashboard", "viewer", "read:status", None, 200),
        ("dashboard", "viewer", "read:health", None, 200),
        ("dashboard", "viewer", "read:sync-log", "integration=hubspot user_id=7", 200),
        ("dashboard", "viewer", "read:chart", "integration=hubspot", 200),
        ("dashboard", "viewer", "read:metrics", None, 200),
        ("alice", "operator", "test", "integration=hubspot", 200),
        (
            "alice",
            "operator",
            "sync",
            "event_type=user.registered integrations=hubspot user_ids=7,8",
            sync_answer,
        ),
        ("operator-2", "operator", "replay", "integration=stripe statuses=failed", 200),
        ("alice", "operator", "read:erasure-report", "person=42", 404),
        ("alice", "operator", "read:audit", None, 200),
        # the host app's erasure request is an audited action; its other events are not
        ("host-app-1", "host-app", "erasure-request", "person=42", 202),
    ]
    assert_no_token_stored(database)


def test_the_start_records_the_configured_labels_and_each_rotation_of_them(
    database: str, sandbox: Any, configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app()):
        pass
    first = summary(audit_rows(source="intake"))
    assert first == [
        ("intake", "host-app", "token-added", "label=host-app-1", 200),
        ("intake", "operator", "token-added", "label=alice", 200),
        ("intake", "operator", "token-added", "label=operator-2", 200),
        ("intake", "viewer", "token-added", "label=dashboard", 200),
    ]
    with TestClient(create_app()):  # nothing changed: nothing recorded
        pass
    assert summary(audit_rows(source="intake")) == first

    # Rotation: alice's token replaced by bob's; the unlabelled second token stays (the new first one).
    monkeypatch.setenv("ENNU_OPERATOR_TOKENS", "bob=op-secret-new9,op-secret-b6e1")
    with TestClient(create_app()):
        pass
    assert summary(audit_rows(source="intake"))[len(first) :] == [
        ("intake", "operator", "token-added", "label=bob", 200),
        ("intake", "operator", "token-removed", "label=alice", 200),
    ]
    with session_scope() as session:
        labels = sorted(session.execute(select(AuditedTokenLabel.role, AuditedTokenLabel.label)).all())
    assert labels == [
        ("host-app", "host-app-1"),
        ("operator", "bob"),
        ("operator", "operator-2"),
        ("viewer", "dashboard"),
    ]
    assert "op-secret-new9" not in every_stored_text(database)
    assert_no_token_stored(database)


def test_an_intake_started_without_its_audit_log_refuses_audited_requests_until_it_is_back(
    database: str, sandbox: Any, configured: None
) -> None:
    engine = get_engine(database)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_log RENAME TO audit_log_away"))
    try:
        with TestClient(create_app()) as api:  # starts: the rotation is still owed
            assert api.get("/health").status_code == 200
            assert api.get("/integrations/status", headers=VIEWER).status_code == 503
            with engine.begin() as connection:
                connection.execute(text("ALTER TABLE audit_log_away RENAME TO audit_log"))
            assert api.get("/integrations/status", headers=VIEWER).status_code == 200
    finally:
        with engine.begin() as connection:
            if "audit_log_away" in sa_inspect(connection).get_table_names():
                connection.execute(text("ALTER TABLE audit_log_away RENAME TO audit_log"))
    # the owed rotation first, then the read
    assert [(r.action, r.target) for r in audit_rows()] == [
        ("token-added", "label=host-app-1"),
        ("token-added", "label=alice"),
        ("token-added", "label=operator-2"),
        ("token-added", "label=dashboard"),
        ("read:status", None),
    ]


def test_reading_the_audit_log_needs_the_operator_role(api: TestClient) -> None:
    assert api.get("/integrations/audit").status_code == 401
    assert api.get("/integrations/audit", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert api.get("/integrations/audit", headers=VIEWER).status_code == 403
    assert api.post("/integrations/test/hubspot", headers=VIEWER).status_code == 403
    # A refusal of a known token is an action too (recorded, 403); an unknown token is no one (not recorded).
    assert summary(audit_rows(source="api")) == [
        ("dashboard", "viewer", "read:audit", None, 403),
        ("dashboard", "viewer", "test", "integration=hubspot", 403),
    ]


def test_the_audit_log_filters_by_time_action_and_actor_and_pages(api: TestClient) -> None:
    for _ in range(3):
        assert api.get("/integrations/status", headers=VIEWER).status_code == 200
    assert api.post("/integrations/test/stripe", headers=ALICE).status_code == 200

    by_action = api.get("/integrations/audit", params={"action": "read:status"}, headers=ALICE).json()
    assert by_action["total"] == 3
    assert {r["actor"] for r in by_action["rows"]} == {"dashboard"}

    by_actor = api.get("/integrations/audit", params={"actor": "alice"}, headers=ALICE).json()
    # alice's test and her previous read of the log, newest first (this read is still running: no outcome)
    assert [(r["action"], r["outcome"]) for r in by_actor["rows"]] == [
        ("read:audit", None),
        ("read:audit", 200),
        ("test", 200),
    ]
    assert by_actor["rows"][2]["target"] == "integration=stripe"

    # 4 labels recorded at the start, 3 status reads, 1 test, 3 reads of the log (this one included)
    paged = api.get("/integrations/audit", params={"page_size": 2, "page": 2}, headers=ALICE).json()
    assert (paged["total"], paged["page"], len(paged["rows"])) == (11, 2, 2)

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = api.get("/integrations/audit", params={"since": future}, headers=ALICE).json()
    assert later == {"total": 0, "page": 1, "page_size": 50, "rows": []}
    # since in another offset is the same instant (stored in UTC on both databases)
    past = (datetime.now(UTC) - timedelta(hours=1)).astimezone(timezone(timedelta(hours=5))).isoformat()
    assert api.get("/integrations/audit", params={"since": past}, headers=ALICE).json()["total"] == 13


def test_values_that_are_not_ids_never_reach_the_target(api: TestClient) -> None:
    body = {
        "event_type": "jane@example.org",
        "integrations": ["hubspot", "Jane Doe"],
        "user_ids": ["555-0100"],
    }
    assert api.post("/integrations/sync", json=body, headers=ALICE).status_code == 422
    assert api.post("/integrations/test/jane.doe@example.org", headers=ALICE).status_code == 404
    assert summary(audit_rows(source="api")) == [
        (
            "alice",
            "operator",
            "sync",
            "event_type=unknown integrations=hubspot,unknown user_ids=invalid",
            422,
        ),
        ("alice", "operator", "test", "integration=unknown", 404),
    ]


def test_an_action_whose_audit_entry_cannot_be_written_is_not_done(
    api: TestClient, database: str, sandbox: Any
) -> None:
    engine = get_engine(database)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_log RENAME TO audit_log_away"))
    try:
        refused = api.post("/integrations/test/hubspot", headers=ALICE)
        read = api.get("/integrations/status", headers=VIEWER)
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE audit_log_away RENAME TO audit_log"))
    assert (refused.status_code, read.status_code) == (503, 503)
    assert refused.json() == {"detail": "the audit log is unavailable; nothing was done", "errors": []}
    assert sandbox.request_count("hubspot") == 0  # the connection test never ran
    assert "integration" not in read.text  # no status was handed out
    # Working again, the same call is recorded and runs.
    assert api.post("/integrations/test/hubspot", headers=ALICE).status_code == 200
    assert sandbox.request_count("hubspot") > 0
    assert summary(audit_rows(source="api")) == [("alice", "operator", "test", "integration=hubspot", 200)]


def test_an_answer_whose_outcome_cannot_be_recorded_is_withheld(
    sqlite_database: str, sandbox: Any, configured: None
) -> None:
    with TestClient(create_app()) as api:
        with get_engine(sqlite_database).begin() as connection:
            connection.execute(
                text(
                    "CREATE TRIGGER no_outcome BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'x'); END"
                )
            )
        try:
            answer = api.get("/integrations/status", headers=VIEWER)
        finally:
            with get_engine(sqlite_database).begin() as connection:
                connection.execute(text("DROP TRIGGER no_outcome"))
    assert answer.status_code == 503
    assert answer.json()["detail"] == "the audit log is unavailable; nothing was done"
    # The entry was written before the handler ran: the read is on record, its outcome unknown.
    assert summary(audit_rows(source="api")) == [("dashboard", "viewer", "read:status", None, None)]


def test_cleanup_deletes_audit_entries_past_their_retention(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENNU_RETENTION_AUDIT_DAYS", "30")
    from ennu.settings import reload_settings

    reload_settings()
    now = datetime.now(UTC)
    with session_scope() as session:
        for days, action in ((45, "old"), (29, "recent"), (0, "today")):
            session.add(
                AuditEntry(
                    at=now - timedelta(days=days),
                    actor="alice",
                    role="operator",
                    action=action,
                    target=None,
                    outcome=200,
                    source="api",
                )
            )
    removed = cleanup()
    assert removed["audit_log"] == 1
    assert [r.action for r in audit_rows()] == ["recent", "today"]


def deployment_run(tags: list[str]) -> Any:
    """A run of a `replay` deployment as the Prefect UI creates it (by the API, no automation), to be
    executed in this process."""
    deployment_id = replay.to_deployment(name="audit-test").apply()
    with get_client(sync_client=True) as client:
        return client.create_flow_run_from_deployment(
            deployment_id, parameters={"integration": "hubspot"}, tags=tags
        )


def test_a_replay_started_in_the_prefect_ui_is_recorded(database: str) -> None:
    by_hand = deployment_run([])
    run_flow(replay, flow_run=by_hand, parameters={"integration": "hubspot"})
    # one the intake started (it recorded its own entry with the operator's label): not recorded twice
    started_by_intake = deployment_run([INTAKE_RUN_TAG])
    run_flow(replay, flow_run=started_by_intake, parameters={"integration": "hubspot"})
    # called directly (the delivery worker, a test): not an operator's action
    replay(integration="hubspot")

    assert summary(audit_rows()) == [
        ("prefect-ui", "operator", "replay", "integration=hubspot statuses=failed", 200),
    ]
    assert audit_rows()[0].source == "prefect"


@pytest.mark.parametrize(
    ("configured_value", "expected"),
    [
        ("alice=tok-1,tok-2", [("alice", "tok-1"), ("operator-2", "tok-2")]),
        (" plain , b.o_b-2 = tok-3 ", [("operator-1", "plain"), ("b.o_b-2", "tok-3")]),
        # base64 padding is not a label: the whole entry is the token
        ("c2VjcmV0=,c2VjcmV0MQ==", [("operator-1", "c2VjcmV0="), ("operator-2", "c2VjcmV0MQ==")]),
        ("a b=tok", [("operator-1", "a b=tok")]),  # not a label: the whole entry is the token
        ("", []),
    ],
)
def test_tokens_may_be_labelled_and_plain_tokens_are_named_by_position(
    configured_value: str, expected: list[tuple[str, str]]
) -> None:
    assert parse_tokens(Role.OPERATOR, configured_value) == expected


def test_the_audit_log_is_documented_in_the_openapi_document(sqlite_database: str) -> None:
    operation = create_app().openapi()["paths"]["/integrations/audit"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"since", "action", "actor", "page", "page_size"}
    assert {"200", "401", "403", "422", "503"} <= set(operation["responses"])
