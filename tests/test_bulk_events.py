"""A bulk sync's own outbox events and deliveries, written by the database a chunk at a time: on SQLite and
PostgreSQL, the same rows the engine routes (ids, payload, destinations, timestamps, priorities), every
record once across chunks, an erased person never."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from ennu.db import session_scope
from ennu.models import Delivery, ErasedPerson, OutboxEvent
from ennu.settings import reload_settings
from flows.bulk_sync import synthetic_events
from tasks.admit import BULK_ORIGIN, BULK_PRIORITY_OFFSET
from tests.factories import add_assessment, add_goal, add_person

RUN = "0123456789abcdef"


@pytest.fixture()
def chunks_of_three(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENNU_BULK_BATCH_SIZE", "3")
    reload_settings()


def written(event_type: str, user_ids: list[int] | None, integrations: list[str] | None = None) -> list[str]:
    """Every event id the bulk run wrote, chunk after chunk."""
    chunks = synthetic_events(event_type, user_ids, RUN, integrations or ["hubspot"])
    return [event_id for chunk in chunks for event_id in chunk]


def test_every_person_once_in_chunks_and_the_erased_never(database: str, chunks_of_three: None) -> None:
    people = [add_person() for _ in range(8)]
    with session_scope() as session:
        session.add(ErasedPerson(user_id=people[4], event_id="erase-1"))
    before = datetime.now(UTC)

    written = list(synthetic_events("user.registered", None, RUN, ["hubspot", "salesforce"]))

    kept = [p for p in people if p != people[4]]
    assert [len(chunk) for chunk in written] == [3, 3, 1]
    assert [i for chunk in written for i in chunk] == [f"bulk-01234567-{p}-0" for p in kept]
    with session_scope() as session:
        events = session.execute(select(OutboxEvent).order_by(OutboxEvent.subject)).scalars().all()
        rows = session.execute(select(Delivery).order_by(Delivery.id)).scalars().all()
        assert [e.subject for e in events] == kept
        for event in events:
            assert event.type == "user.registered"
            assert event.resource is None
            assert event.payload == {"origin": BULK_ORIGIN}
            assert event.destinations == ["hubspot", "salesforce"]
            assert (event.status, event.attempts, event.processed_at) == ("pending", 0, None)
            assert event.occurred_at == event.received_at == event.routed_at
            assert before - timedelta(seconds=1) <= event.routed_at.replace(tzinfo=UTC) <= datetime.now(UTC)
        assert sorted((d.event_id, d.integration) for d in rows) == sorted(
            (e.id, name) for e in events for name in ("hubspot", "salesforce")
        )
        for delivery in rows:
            event = next(e for e in events if e.id == delivery.event_id)
            assert (delivery.event_type, delivery.user_id) == ("user.registered", event.subject)
            assert (delivery.status, delivery.attempts) == ("pending", 0)
            assert delivery.priority > BULK_PRIORITY_OFFSET  # behind every live event


def test_a_resource_event_carries_each_latest_record_once(database: str, chunks_of_three: None) -> None:
    people = [add_person() for _ in range(4)]
    latest = {}
    for person in people:
        add_assessment(person)
        latest[person] = add_assessment(person, kind="stress")  # the latest completed one is carried
    goals = [add_goal(p) for p in people] + [add_goal(people[0], status="completed")]

    assessments = written("assessment.completed", None)
    active = written("health_goal.created", people[1:3])

    assert assessments == [f"bulk-01234567-{p}-{latest[p]}" for p in people]
    assert active == [f"bulk-01234567-{p}-{g}" for p, g in zip(people[1:3], goals[1:3], strict=True)]
    with session_scope() as session:
        resources = dict(session.execute(select(OutboxEvent.id, OutboxEvent.resource)).all())
        assert {resources[i] for i in assessments} == {str(latest[p]) for p in people}
        assert session.execute(select(Delivery.event_id)).scalars().all().count(assessments[0]) == 1


def test_no_destination_routed_writes_done_events_and_no_delivery(database: str) -> None:
    add_person()
    ids = written("user.registered", None, ["nowhere"])
    with session_scope() as session:
        event = session.execute(select(OutboxEvent)).scalar_one()
        assert ids == [event.id]
        assert event.status == "done" and event.processed_at is not None
        assert session.execute(select(Delivery)).first() is None
