"""Synthetic people for the benches, each with the one host record an event of theirs points at."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from ennu.db import session_scope
from ennu.models import Assessment, AssessmentScore, Biomarker, HealthGoal, User

# A glucose result (mg/dL) beyond its critical limit (mappings/loinc.yaml): Twilio and the chat alerts run.
CRITICAL_GLUCOSE_MG_DL = 612.0
RUN_TAG = uuid.uuid4().hex[:6]
_numbers = itertools.count(1)
EVENT_TYPES = ("assessment.completed", "user.registered", "biomarker.updated", "health_goal.completed")
GOAL_KIND = "lose_weight"  # every bench goal's: the goal follow-ups (ENNU_GOAL_FOLLOW_UP_BY_KIND) go by it


@dataclass(frozen=True)
class Person:
    """Ids and the stand-ins' keys of one synthetic person (e-mail and phone are made up per run)."""

    user_id: int
    email: str
    phone: str  # E.164, as Twilio receives it
    event_type: str
    resource: int | None  # the assessment, biomarker or goal id; None for user.* events


def daytime_zone(hour: int = 13) -> str:
    """A fixed-offset zone where it is now about `hour` o'clock: Twilio sends only from 08:00 to 21:00."""
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        name = f"Etc/GMT{-offset:+d}"
        if now.astimezone(ZoneInfo(name)).hour == hour:
            return name
    return "UTC"


def make_people(count: int, event_type: str, database_url: str | None = None) -> list[Person]:
    """`count` people with every consent given, in a daytime zone, each with a record for `event_type`."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"no bench people for {event_type!r}")
    zone = daytime_zone()
    now = datetime.now(UTC)
    made: list[Person] = []
    with session_scope(database_url) as session:
        users = []
        for _ in range(count):
            n = next(_numbers)
            users.append(
                User(
                    first_name="Bench",
                    last_name=f"Person{n}",
                    email=f"bench.{RUN_TAG}.{n}@example.test",
                    phone=f"+1555{(int(RUN_TAG, 16) * 7 + n) % 10**7:07d}",
                    date_of_birth=date(1980, 1 + n % 12, 1 + n % 28),
                    sex="female" if n % 2 else "male",
                    timezone=zone,
                    marketing_consent=True,
                    communication_consent=True,
                )
            )
        session.add_all(users)
        session.flush()
        records = [_record(event_type, user.id, now) for user in users]
        session.add_all([r for r in records if r is not None])
        session.flush()
        if event_type == "assessment.completed":
            session.add_all(
                AssessmentScore(assessment_id=a.id, category="energy", score=7.0)
                for a in records
                if a is not None
            )
        for user, record in zip(users, records, strict=True):
            resource = None if record is None else record.id
            made.append(Person(user.id, user.email, user.phone or "", event_type, resource))
    return made


def _record(event_type: str, user_id: int, now: datetime) -> Assessment | Biomarker | HealthGoal | None:
    if event_type == "user.registered":
        return None
    if event_type == "assessment.completed":
        return Assessment(
            user_id=user_id,
            type="sleep",
            status="completed",
            started_at=now - timedelta(minutes=20),
            completed_at=now,
            overall_score=7.0,
        )
    if event_type == "biomarker.updated":
        return Biomarker(
            user_id=user_id,
            name="glucose",
            loinc_code="2345-7",
            value=CRITICAL_GLUCOSE_MG_DL,
            unit="mg/dL",
            reference_low=70,
            reference_high=99,
            observed_at=now,
        )
    return HealthGoal(
        user_id=user_id,
        kind=GOAL_KIND,
        target="Lose 5 kg by June",
        status="completed",
        due_date=date(now.year + 1, 6, 1),
        completed_at=now,
    )


def event_body(person: Person, event_id: str) -> dict[str, object]:
    """The host app's `POST /events` body for this person's event (ids only)."""
    return {
        "id": event_id,
        "type": person.event_type,
        "occurred_at": datetime.now(UTC).isoformat(),
        "subject": person.user_id,
        "resource": None if person.resource is None else str(person.resource),
        "payload": {},
    }


def mixed(count: int, database_url: str | None = None) -> list[Person]:
    """`count` people spread over the four event types that between them reach every destination."""
    people: list[Person] = []
    for i, event_type in enumerate(EVENT_TYPES):
        share = count // len(EVENT_TYPES) + (1 if i < count % len(EVENT_TYPES) else 0)
        if share:
            people += make_people(share, event_type, database_url)
    return people
