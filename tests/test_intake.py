"""The intake API: events in at the door, with clear refusals that never echo what was sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ennu.db import session_scope
from ennu.models import OutboxEvent, as_utc
from intake.app import MAX_BODY_BYTES, create_app
from intake.auth import FailedAuthThrottle

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


def raw_event(payload: str) -> str:
    """An event whose payload is written as given: JSON's own encoder cannot write NaN or 1e400."""
    return json.dumps(event(id="evt-odd", payload="PAYLOAD")).replace('"PAYLOAD"', payload)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_a_non_finite_number_is_422_with_a_reason_and_nothing_is_stored(
    client: TestClient, number: str
) -> None:
    body = raw_event('{"hba1c_glucose": [1, {"value": ' + number + "}]}")

    response = client.post("/events", content=body, headers={**TOKEN, "Content-Type": "application/json"})

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "loc": ["body"],
            "type": "json_invalid",
            "msg": "a number is not finite, or too large for a double; not accepted",
        }
    ]
    assert number.lstrip("-") not in response.text and "hba1c" not in response.text
    assert outbox_count() == 0


def test_a_large_finite_number_is_still_accepted(client: TestClient) -> None:
    body = raw_event('{"value": 1.7976931348623157e308}')
    response = client.post("/events", content=body, headers={**TOKEN, "Content-Type": "application/json"})
    assert response.status_code == 202 and outbox_count() == 1


def test_an_offset_timestamp_is_stored_as_the_same_instant(client: TestClient) -> None:
    """`10:00+05:00` is 05:00 UTC on both databases (SQLite keeps no offset: it stored `10:00`)."""
    answer = client.post("/events", json=event(occurred_at="2026-11-29T10:00:00+05:00"), headers=TOKEN)
    # Any aware timestamp the hub writes is converted too, not only the intake's.
    plus_five = timezone(timedelta(hours=5))
    with session_scope() as session:
        session.add(
            OutboxEvent(
                id="evt-hub", type="user.login", occurred_at=datetime(2026, 11, 29, 10, tzinfo=plus_five)
            )
        )

    assert answer.status_code == 202
    with session_scope() as session:
        stored = {e.id: as_utc(e.occurred_at) for e in session.execute(select(OutboxEvent)).scalars()}
        # A query bound with an aware value compares the instant, not the wall-clock digits.
        later = session.execute(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.occurred_at > datetime(2026, 11, 29, 9, 30, tzinfo=plus_five))
        ).scalar_one()
    assert stored == {
        "evt-1": datetime(2026, 11, 29, 5, tzinfo=UTC),
        "evt-hub": datetime(2026, 11, 29, 5, tzinfo=UTC),
    }
    assert later == 2


def test_the_21st_wrong_token_in_a_minute_is_429_and_a_valid_token_still_passes(client: TestClient) -> None:
    wrong = {"Authorization": "Bearer guess"}
    first = [client.post("/events", json=event(), headers=wrong).status_code for _ in range(20)]
    throttled = client.post("/events", json=event(), headers=wrong)
    missing = client.post("/events", json=event())
    valid = client.post("/events", json=event(), headers=TOKEN)
    with TestClient(client.app, client=("198.51.100.7", 50000)) as elsewhere:
        other_client = elsewhere.post("/events", json=event(id="evt-2"), headers=wrong)

    assert first == [401] * 20
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert throttled.json() == {"detail": "too many failed authentications; retry later", "errors": []}
    assert missing.status_code == 401, "a missing token is not a guess"
    assert valid.status_code == 202, "a valid token is never throttled"
    assert other_client.status_code == 401, "throttled per client address"
    assert outbox_count() == 1


def test_failed_authentications_leave_the_window_and_memory_stays_bounded() -> None:
    now = [0.0]
    throttle = FailedAuthThrottle(limit=3, window_seconds=60, max_clients=100, clock=lambda: now[0])

    def fail_at(moment: float) -> int | None:
        now[0] = moment
        return throttle.failed("203.0.113.1")

    # The 4th within a minute waits until the failure at 10 s leaves the window; at 70.5 s it has, and
    # the throttled one at 30 s still counts; at 75 s the limit is reached again.
    answers = [fail_at(t) for t in (0, 10, 20, 30, 70.5, 75)]
    for n in range(1000):
        throttle.failed(f"192.0.2.{n}")

    assert answers == [None, None, None, 40, None, 15]
    assert len(throttle) == 100, "the least recently seen addresses are forgotten first"


def test_an_unknown_field_name_is_not_repeated(client: TestClient) -> None:
    response = client.post("/events", json=event(glucose_of_jane=212), headers=TOKEN)

    assert response.status_code == 422
    assert "glucose_of_jane" not in response.text and "212" not in response.text
    assert {
        "loc": ["body", "<unknown field>"],
        "type": "extra_forbidden",
        "msg": "Extra inputs are not permitted",
    } in (response.json()["errors"])


def test_a_trailing_slash_is_not_redirected_to_the_host_header(client: TestClient) -> None:
    for method, path in (("GET", "/health/"), ("POST", "/events/")):
        response = client.request(
            method, path, headers={**TOKEN, "Host": "attacker.example"}, follow_redirects=False
        )
        assert response.status_code == 404, (method, path)
        assert "location" not in response.headers
        assert "attacker.example" not in response.text
