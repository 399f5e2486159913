"""Fire one event of every host type for one demo person at a running `make up`, and show what reached
each stand-in.

For a demo person with both consents, a phone, a clinic, an assessment, a biomarker and an active goal,
it posts in turn: `user.registered`, `user.login`, `user.clinic_changed` (to another clinic),
`assessment.completed`, `biomarker.updated`, `health_goal.created`, `health_goal.progressed` (60 %),
`health_goal.completed`, `appointment.scheduled` (a consultation two days ahead), `appointment.cancelled`,
`user.consent_changed` (marketing withdrawn) and last `user.deletion_requested`. It changes the host rows
each event is about first, as the host app would, waits for every delivery of the event to settle (a wait
by design such as quiet hours counts as settled, with its reason), and prints one line per event: where
each delivery ended. Then what the stand-ins hold of the person, by vendor and kind, before and after the
erasure. Ids and counts only: nothing personal is printed.

    make up    # in another terminal
    .venv/bin/python -m devtools.every_event
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from sqlalchemy import func, select

from ennu.db import session_scope
from ennu.models import (
    Appointment,
    Assessment,
    Biomarker,
    Clinic,
    Delivery,
    DeliveryStatus,
    HealthGoal,
    User,
    utcnow,
)
from sandbox.app import VENDORS
from sandbox.client import SandboxClient

SETTLED = {s.value for s in DeliveryStatus} - {"pending", "unknown"}


def pick_person() -> dict[str, int]:
    """A demo person the host can fire every event for: both consents, a phone, a clinic and some rows."""
    with session_scope() as session:
        assessed = select(Assessment.user_id).where(Assessment.completed_at.is_not(None))
        measured = select(Biomarker.user_id)
        aiming = select(HealthGoal.user_id).where(HealthGoal.status == "active")
        user = session.execute(
            select(User)
            .where(
                User.marketing_consent.is_(True),
                User.communication_consent.is_(True),
                User.phone.is_not(None),
                User.clinic_id.is_not(None),
                User.id.in_(assessed),
                User.id.in_(measured),
                User.id.in_(aiming),
            )
            .order_by(User.id)
            .limit(1)
        ).scalar_one_or_none()
        if user is None:
            raise SystemExit("no demo person has everything this needs: run `make up` (it loads the demo)")
        other_clinic = session.execute(
            select(Clinic.id).where(Clinic.id != user.clinic_id).order_by(Clinic.id).limit(1)
        ).scalar_one()
        assessment = session.execute(
            select(Assessment.id)
            .where(Assessment.user_id == user.id, Assessment.completed_at.is_not(None))
            .order_by(Assessment.completed_at.desc())
            .limit(1)
        ).scalar_one()
        biomarker = session.execute(
            select(Biomarker.id).where(Biomarker.user_id == user.id).order_by(Biomarker.id.desc()).limit(1)
        ).scalar_one()
        goal = session.execute(
            select(HealthGoal.id)
            .where(HealthGoal.user_id == user.id, HealthGoal.status == "active")
            .order_by(HealthGoal.id)
            .limit(1)
        ).scalar_one()
        return {
            "user": user.id,
            "other_clinic": other_clinic,
            "assessment": assessment,
            "biomarker": biomarker,
            "goal": goal,
        }


def change_host(step: str, ids: dict[str, int]) -> None:
    """What the host app changes before it fires `step`."""
    with session_scope() as session:
        user = session.get(User, ids["user"])
        goal = session.get(HealthGoal, ids["goal"])
        assert user is not None and goal is not None
        if step == "user.clinic_changed":
            user.clinic_id = ids["other_clinic"]
        elif step == "health_goal.progressed":
            goal.progress_percent = 60
        elif step == "health_goal.completed":
            goal.status, goal.completed_at, goal.progress_percent = "completed", utcnow(), 100
        elif step == "appointment.scheduled":
            starts = (utcnow() + timedelta(days=2)).replace(hour=15, minute=0, second=0, microsecond=0)
            appointment = Appointment(user_id=user.id, starts_at=starts, kind="consultation")
            session.add(appointment)
            session.flush()
            ids["appointment"] = appointment.id
        elif step == "appointment.cancelled":
            row = session.get(Appointment, ids["appointment"])
            assert row is not None
            row.status = "cancelled"
        elif step == "user.consent_changed":
            user.marketing_consent = False


RESOURCE = {
    "assessment.completed": "assessment",
    "biomarker.updated": "biomarker",
    "health_goal.created": "goal",
    "health_goal.progressed": "goal",
    "health_goal.completed": "goal",
    "appointment.scheduled": "appointment",
    "appointment.cancelled": "appointment",
}
STEPS = [
    "user.registered",
    "user.login",
    "user.clinic_changed",
    "assessment.completed",
    "biomarker.updated",
    "health_goal.created",
    "health_goal.progressed",
    "health_goal.completed",
    "appointment.scheduled",
    "appointment.cancelled",
    "user.consent_changed",
]


def outcomes(event_id: str) -> dict[str, str]:
    """Each destination of the event: its delivery state (and its reason where it did not deliver)."""
    with session_scope() as session:
        rows = session.execute(
            select(Delivery.integration, Delivery.status, Delivery.last_error).where(
                Delivery.event_id == event_id
            )
        ).all()
    return {i: s if s == "delivered" or not e else f"{s} ({e})" for i, s, e in rows}


def settled(event_id: str) -> bool:
    with session_scope() as session:
        rows = session.execute(
            select(Delivery.status, Delivery.not_before, func.count())
            .where(Delivery.event_id == event_id)
            .group_by(Delivery.status, Delivery.not_before)
        ).all()
    # A wait by design (quiet hours, a reminder's time) has a not_before: it is where it should be.
    return bool(rows) and all(s in SETTLED or (s == "deferred" and nb is not None) for s, nb, _ in rows)


# Posts one host event to the intake's /events (raising when it is refused): over HTTP, or a test's client.
PostEvent = Callable[[dict[str, Any]], None]


def over_http(intake: str, token: str) -> PostEvent:
    def post(body: dict[str, Any]) -> None:
        answer = requests.post(
            f"{intake}/events", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        answer.raise_for_status()

    return post


def fire(post: PostEvent, step: str, ids: dict[str, int], timeout: float) -> dict[str, str]:
    event_id = f"every-{step}-{uuid.uuid4().hex[:8]}"
    resource = RESOURCE.get(step)
    post(
        {
            "id": event_id,
            "type": step,
            "occurred_at": datetime.now(UTC).isoformat(),
            "subject": ids["user"],
            "resource": str(ids[resource]) if resource else None,
            "payload": {},
        }
    )
    deadline = time.monotonic() + timeout
    while not settled(event_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    return outcomes(event_id)


def holdings(sandbox: SandboxClient) -> dict[str, dict[str, int]]:
    """What each stand-in holds, by kind (counts of everything it stores, the demo's other people too:
    the differences are this run's)."""
    out: dict[str, dict[str, int]] = {}
    for vendor in sorted(VENDORS):
        kinds = sandbox.holdings(vendor)
        out[vendor] = {kind: len(items) for kind, items in kinds.items() if items}
    return out


def difference(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for vendor in sorted(set(before) | set(after)):
        change = Counter(after.get(vendor, {}))
        change.subtract(before.get(vendor, {}))
        moved = {k: n for k, n in change.items() if n}
        if moved:
            out[vendor] = moved
    return out


@dataclass
class EveryEvent:
    """One run: the person, each event's deliveries (integration -> where it ended), what the stand-ins
    gained by kind before the erasure, and what they still hold of the run after it."""

    person: int
    deliveries: dict[str, dict[str, str]] = field(default_factory=dict)
    gained: dict[str, dict[str, int]] = field(default_factory=dict)
    after_erasure: dict[str, dict[str, int]] = field(default_factory=dict)


def every_event(
    post: PostEvent, sandbox: SandboxClient, timeout: float, show: Callable[[str], None] = print
) -> EveryEvent:
    """Fire every step for a demo person, then erase them; `show` gets each line as it is known."""
    ids = pick_person()
    run = EveryEvent(ids["user"])
    show(json.dumps({"person": ids["user"]}))
    start = holdings(sandbox)
    for step in STEPS:
        change_host(step, ids)
        run.deliveries[step] = fire(post, step, ids, timeout)
        show(json.dumps({"event": step, "deliveries": run.deliveries[step]}))
    run.gained = difference(start, holdings(sandbox))
    show(json.dumps({"stand-ins gained": run.gained}))
    erasure = "user.deletion_requested"
    run.deliveries[erasure] = fire(post, erasure, ids, timeout)
    show(json.dumps({"event": erasure, "deliveries": run.deliveries[erasure]}))
    run.after_erasure = difference(start, holdings(sandbox))
    show(json.dumps({"stand-ins after the erasure": run.after_erasure}))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intake-url", default="http://127.0.0.1:8000")
    parser.add_argument("--sandbox-url", default="http://127.0.0.1:8765")
    parser.add_argument("--intake-token", default="dev-intake-token")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each event")
    args = parser.parse_args()
    every_event(over_http(args.intake_url, args.intake_token), SandboxClient(args.sandbox_url), args.timeout)


if __name__ == "__main__":
    main()
