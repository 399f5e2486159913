"""The intake API: events in at the door, with clear refusals that never echo what was sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ennu.db import session_scope
from ennu.models import OutboxEvent
from intake.app import MAX_BODY_BYTES, create_app

pytestmark = pytest.mark.usefixtures("prefect_server")
TOKEN = {"Authorization": "Bearer dev-intake-token"}


def event(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "evt-1",
        "type": "assessment.completed",
        "occurred_at": "2026-11-29T10:00:00Z",
        "subject": 1,
        "resource": "1",
        "payload": {},
    }
    body.update(overrides)
    return body


@pytest.fixture()
def client(database: str) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def outbox_count() -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(OutboxEvent)).scalar_one()


def test_event_is_stored_once_and_a_duplicate_returns_the_first_result(client: TestClient) -> None:
    first = client.post("/events", json=event(), headers=TOKEN)
    again = client.post("/events", json=event(), headers=TOKEN)

    assert first.status_code == 202
    assert first.json() == {
        "event_id": "evt-1",
        "status": "pending",
        "duplicate": False,
        "dropped_payload_keys": 0,
    }
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert outbox_count() == 1


def test_payload_keys_no_mapping_reads_are_dropped_and_never_stored(client: TestClient) -> None:
    login = event(
        type="user.login",
        resource=None,
        payload={"email": "jane@example.com", "ip": "203.0.113.9", "name": "Jane Doe"},
    )

    answer = client.post("/events", json=login, headers=TOKEN)

    assert answer.status_code == 202 and answer.json()["dropped_payload_keys"] == 3
    assert "jane" not in answer.text.lower() and "203.0.113.9" not in answer.text
    with session_scope() as session:
        assert session.execute(select(OutboxEvent.payload)).scalar_one() == {}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}])
def test_missing_or_wrong_token_is_401(client: TestClient, headers: dict[str, str]) -> None:
    assert client.post("/events", json=event(), headers=headers).status_code == 401
    assert outbox_count() == 0


@pytest.mark.parametrize(
    "body",
    [
        event(type="user.exploded"),
        event(subject="jane@example.com"),
        event(occurred_at="yesterday"),
        event(unexpected="jane@example.com"),
        {"id": "evt-1"},
    ],
)
def test_malformed_event_is_422_with_a_reason_and_no_echo(client: TestClient, body: dict) -> None:
    response = client.post("/events", json=body, headers=TOKEN)
    assert response.status_code == 422
    assert response.json()["detail"], "a reason is given"
    assert "jane@example.com" not in response.text
    assert "yesterday" not in response.text
    assert outbox_count() == 0


def test_body_over_the_limit_is_413_declared_or_chunked(client: TestClient) -> None:
    big = event(payload={"note": "x" * (MAX_BODY_BYTES + 10)})
    assert client.post("/events", json=big, headers=TOKEN).status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b'{"id": "evt-2", "payload": {"note": "'
        for _ in range(MAX_BODY_BYTES // 1000 + 2):
            yield b"y" * 1000
        yield b'"}}'

    response = client.post("/events", content=chunks(), headers={**TOKEN, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert outbox_count() == 0


def test_deeply_nested_json_is_refused_not_a_server_error(client: TestClient) -> None:
    nested = "[" * 5000 + "]" * 5000
    body = (
        '{"id": "evt-3", "type": "assessment.completed", "occurred_at": "2026-11-29T10:00:00Z", '
        f'"subject": 1, "payload": {{"x": {nested}}}}}'
    )
    response = client.post("/events", content=body, headers={**TOKEN, "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
