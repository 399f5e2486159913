"""A small batch is mapped with the transforms' per-value definitions, a large one vectorised: same output."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ennu.db import session_scope
from ennu.models import Biomarker
from mappings import apply_mapping, load_all_mappings
from mappings.frame import PER_VALUE_ROWS
from tasks.extract import extract_records
from tests.factories import add_appointment, add_assessment, add_clinic, add_event, add_goal, add_person

REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
PEOPLE = PER_VALUE_ROWS + 4  # the whole batch goes the vectorised way, each row alone the per-value way


def _biomarker(user_id: int, n: int) -> int:
    with session_scope() as session:
        row = Biomarker(
            user_id=user_id,
            name="glucose" if n % 3 else "blood_pressure_systolic",
            loinc_code="2345-7" if n % 3 else "8480-6",
            value=[92.0, 5.55, 612.0, 76.0][n % 4],
            unit="mg/dL" if n % 3 else "mm[Hg]",
            reference_low=70 if n % 2 else None,
            reference_high=99,
            observed_at=datetime(2026, 11, 3, 8, n, tzinfo=UTC),
        )
        session.add(row)
        session.flush()
        return row.id


def _events(event_type: str) -> list[str]:
    ids = []
    clinic = add_clinic()
    for n in range(PEOPLE):
        user = add_person(
            phone=None if n % 4 == 0 else "(555) 010-1234",
            first_name=" Ada " if n % 2 else "Bo",
            clinic_id=clinic if n % 2 else None,  # a join with misses: integer ids become floats
        )
        resource: int | None = None
        if event_type == "assessment.completed":
            resource = add_assessment(user, overall=[7.4, 0.0, 10.0, 3.25][n % 4])
        elif event_type.startswith("health_goal."):
            resource = add_goal(user, status="completed" if event_type.endswith("completed") else "active")
        elif event_type == "biomarker.updated":
            resource = _biomarker(user, n)
        elif event_type.startswith("appointment."):
            status = "cancelled" if event_type.endswith("cancelled") else "scheduled"
            resource = add_appointment(user, datetime(2026, 12, 3, 15, n, tzinfo=UTC), status=status)
        ids.append(add_event(event_type, user, resource, event_id=f"paths-{event_type}-{n}"))
    return ids


def _cells(frame: pd.DataFrame) -> list[list[tuple[type, Any]]]:
    return [[(type(v), v) for v in row] for row in frame.itertuples(index=False)]


def test_per_value_and_vectorised_mapping_agree_for_every_mapping(sqlite_database: str) -> None:
    mappings = load_all_mappings(REPO_MAPPINGS)
    checked = 0
    for event_type in sorted({event for event, _ in mappings}):
        if event_type in ("user.deletion_requested", "subscription.changed", "payment.changed"):
            continue
        frame = extract_records(event_type, _events(event_type)).frame
        assert len(frame) == PEOPLE
        for (event, connector), mapping in mappings.items():
            if event != event_type:
                continue
            whole = apply_mapping(mapping, frame)
            one_by_one = pd.concat([apply_mapping(mapping, frame.iloc[[i]]) for i in range(len(frame))])
            assert list(one_by_one.columns) == list(whole.columns)
            assert _cells(one_by_one) == _cells(whole), (event_type, connector)
            checked += 1
    assert checked >= 15
