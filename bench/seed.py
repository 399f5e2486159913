"""Outbox events for the benchmark, one per host record of the demo data (synthetic people only)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Select, select

from devtools.demo import generate_demo
from ennu.db import session_scope
from ennu.events import HostEvent
from ennu.models import Assessment, Biomarker, HealthGoal, User
from tasks.ingest import ingest

DEMO_SEED = 11
# A glucose result (mg/dL) far above its critical limit: what makes the care-team notice path run.
CRITICAL_GLUCOSE_MG_DL = 612.0


def demo_people(people: int) -> None:
    """The demo generator's people, assessments, biomarkers and goals, without deliberately bad rows."""
    generate_demo(people=people, seed=DEMO_SEED, invalid_fraction=0.0)


def _subjects(event_type: str) -> Select[int, int]:
    """(user id, resource id) of every host record an event of this type can be about, oldest first."""
    if event_type in ("user.registered", "user.login"):
        return select(User.id, User.id).order_by(User.id)
    if event_type == "assessment.completed":
        return (
            select(Assessment.user_id, Assessment.id)
            .where(Assessment.status == "completed")
            .order_by(Assessment.user_id, Assessment.id)
        )
    if event_type == "health_goal.created":
        return select(HealthGoal.user_id, HealthGoal.id).order_by(HealthGoal.id)
    if event_type == "health_goal.completed":
        return (
            select(HealthGoal.user_id, HealthGoal.id)
            .where(HealthGoal.status == "completed")
            .order_by(HealthGoal.id)
        )
    if event_type == "biomarker.updated":
        return select(Biomarker.user_id, Biomarker.id).order_by(Biomarker.user_id, Biomarker.id)
    raise ValueError(f"no bench events for {event_type!r}")


def events_for(event_type: str, limit: int) -> list[str]:
    """Up to `limit` outbox events of `event_type`, one per host record (assessments: the latest a person).

    The same ids can be run again for every connector of the event type: the pipeline runs with
    `force=True`, so nothing is skipped as already delivered.
    """
    with session_scope() as session:
        pairs = [(int(u), int(r)) for u, r in session.execute(_subjects(event_type)).all()]
    if event_type == "assessment.completed":
        pairs = list({user_id: (user_id, a) for user_id, a in pairs}.values())  # the latest per person
    return _ingest(event_type, pairs[:limit])


def critical_results(people: int) -> list[str]:
    """One critical glucose result for each of the first `people` demo people, with its event."""
    now = datetime.now(UTC)
    with session_scope() as session:
        user_ids = session.execute(select(User.id).order_by(User.id).limit(people)).scalars().all()
        rows = [
            Biomarker(
                user_id=u,
                name="glucose",
                loinc_code="2345-7",
                value=CRITICAL_GLUCOSE_MG_DL,
                unit="mg/dL",
                reference_low=70,
                reference_high=99,
                observed_at=now,
            )
            for u in user_ids
        ]
        session.add_all(rows)
        session.flush()
        pairs = [(row.user_id, row.id) for row in rows]
    return _ingest("biomarker.updated", pairs, prefix="bench-critical")


def _ingest(event_type: str, pairs: list[tuple[int, int]], prefix: str = "bench") -> list[str]:
    now = datetime.now(UTC)
    resource_less = event_type.startswith("user.")
    return [
        ingest(
            HostEvent(
                id=f"{prefix}-{event_type}-{resource}",
                type=event_type,
                occurred_at=now,
                subject=user_id,
                resource=None if resource_less else str(resource),
            ),
            emit=False,
        ).event_id
        for user_id, resource in pairs
    ]
