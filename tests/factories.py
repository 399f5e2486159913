"""Small builders of host records and outbox events for tests (synthetic data only)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from ennu.db import session_scope
from ennu.events import HostEvent
from ennu.models import (
    Appointment,
    Assessment,
    AssessmentScore,
    Biomarker,
    Clinic,
    Consent,
    HealthGoal,
    User,
)
from tasks.ingest import ingest

_ids = itertools.count(1)


def add_person(
    *,
    email: str | None = None,
    phone: str | None = "(555) 010-1234",
    marketing: bool = True,
    communication: bool = True,
    first_name: str = "Ada",
    clinic_id: int | None = None,
    timezone: str = "America/Chicago",
    reminder_channel: str = "sms",
) -> int:
    n = next(_ids)
    with session_scope() as session:
        user = User(
            first_name=first_name,
            last_name=f"Tester{n}",
            email=email or f"ada.tester{n}@example.com",
            phone=phone,
            date_of_birth=date(1980, 1, 1 + n % 28),
            sex="female",
            timezone=timezone,
            reminder_channel=reminder_channel,
            marketing_consent=marketing,
            communication_consent=communication,
            clinic_id=clinic_id,
        )
        session.add(user)
        session.flush()
        return user.id


def add_clinic(name: str = "Northside Clinic", *, domain: str | None = "northside.example.com") -> int:
    with session_scope() as session:
        clinic = Clinic(name=name, domain=domain)
        session.add(clinic)
        session.flush()
        return clinic.id


def add_assessment(user_id: int, *, overall: float = 7.4, kind: str = "sleep") -> int:
    with session_scope() as session:
        assessment = Assessment(
            user_id=user_id,
            type=kind,
            status="completed",
            started_at=datetime(2026, 11, 1, 9, 0, tzinfo=UTC),
            completed_at=datetime(2026, 11, 1, 9, 20, tzinfo=UTC),
            overall_score=overall,
        )
        session.add(assessment)
        session.flush()
        for category, score in (("sleep_quality", 6.5), ("energy", 8.0)):
            session.add(AssessmentScore(assessment_id=assessment.id, category=category, score=score))
        return assessment.id


def add_critical_glucose(user_id: int) -> int:
    """A glucose result far above its critical limit (what the care-team notice routes keep)."""
    with session_scope() as session:
        row = Biomarker(
            user_id=user_id,
            name="glucose",
            loinc_code="2345-7",
            value=452.0,
            unit="mg/dL",
            reference_low=70.0,
            reference_high=99.0,
            observed_at=datetime.now(UTC),
        )
        session.add(row)
        session.flush()
        return row.id


def refuse(user_id: int, integration: str) -> None:
    with session_scope() as session:
        session.add(Consent(user_id=user_id, integration=integration, granted=False))


def completed_event(user_id: int, assessment_id: int, *, event_id: str | None = None) -> str:
    event = HostEvent(
        id=event_id or f"evt-{user_id}-{assessment_id}",
        type="assessment.completed",
        occurred_at=datetime(2026, 11, 1, 9, 21, tzinfo=UTC),
        subject=user_id,
        resource=str(assessment_id),
        payload={},
    )
    return ingest(event, emit=False).event_id


def person_with_assessment(**kwargs: object) -> tuple[int, int, str]:
    """A person, their completed assessment and its outbox event id."""
    overall = kwargs.pop("overall", 7.4)
    user_id = add_person(**kwargs)  # type: ignore[arg-type]
    assessment_id = add_assessment(user_id, overall=float(overall))  # type: ignore[arg-type]
    return user_id, assessment_id, completed_event(user_id, assessment_id)


def add_goal(
    user_id: int, *, kind: str = "lose_weight", status: str = "active", progress: int | None = None
) -> int:
    with session_scope() as session:
        goal = HealthGoal(
            user_id=user_id,
            kind=kind,
            target="Lose 5 kg by June",
            status=status,
            due_date=date(2027, 6, 1),
            completed_at=datetime(2026, 11, 2, tzinfo=UTC) if status == "completed" else None,
            progress_percent=progress,
        )
        session.add(goal)
        session.flush()
        return goal.id


def add_appointment(
    user_id: int, starts_at: datetime, *, kind: str = "consultation", status: str = "scheduled"
) -> int:
    with session_scope() as session:
        appointment = Appointment(user_id=user_id, starts_at=starts_at, kind=kind, status=status)
        session.add(appointment)
        session.flush()
        return appointment.id


def add_event(
    event_type: str, user_id: int, resource: int | None = None, *, event_id: str | None = None
) -> str:
    event = HostEvent(
        id=event_id or f"evt-{event_type}-{user_id}-{resource or 0}",
        type=event_type,
        occurred_at=datetime(2026, 11, 3, 8, 0, tzinfo=UTC),
        subject=user_id,
        resource=None if resource is None else str(resource),
    )
    return ingest(event, emit=False).event_id


def zone_at_local_hour(hour: int) -> str:
    """A fixed-offset IANA zone where it is now `hour` o'clock (Etc/GMT+5 is UTC-5)."""
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        name = f"Etc/GMT{-offset:+d}"
        if now.astimezone(ZoneInfo(name)).hour == hour:
            return name
    raise AssertionError(f"no zone at {hour}:00")
