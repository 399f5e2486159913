"""Extract: read outbox events and the host records they point at into one frame, a row per record."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ennu.db import session_scope
from ennu.events import EVENT_TYPES
from ennu.models import (
    Appointment,
    Assessment,
    AssessmentScore,
    Base,
    Biomarker,
    Clinic,
    HealthGoal,
    OutboxEvent,
    Payment,
    Subscription,
    SyncLog,
    SyncStatus,
    User,
)
from ennu.settings import get_settings
from mappings.loader import event_payload_keys

IN_CHUNK = 500

RESOURCE_MODELS: dict[str, type[Base]] = {
    "assessment": Assessment,
    "biomarker": Biomarker,
    "health_goal": HealthGoal,
    "subscription": Subscription,
    "payment": Payment,
    "appointment": Appointment,
}


@dataclass
class Extracted:
    """The frame to route, and the events that could not be turned into a row (with why)."""

    event_type: str
    frame: pd.DataFrame
    missing: dict[str, str] = field(default_factory=dict)  # event id -> reason (no values)

    @property
    def event_ids(self) -> list[str]:
        return [str(v) for v in self.frame["event.id"].tolist()] if len(self.frame) else []


def chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _columns(model: type[Base]) -> list[Any]:
    return list(model.__table__.columns)


def read_rows(session: Session, model: type[Base], prefix: str, ids: Iterable[Any]) -> pd.DataFrame:
    """Rows of `model` by primary key, columns renamed `<prefix>.<column>`. Rows become plain tuples first:
    pandas builds a frame from tuples about 2.6 times faster than from SQLAlchemy's Row objects."""
    columns = _columns(model)
    key = model.__table__.primary_key.columns.values()[0]  # type: ignore[attr-defined]
    unique_ids = sorted({i for i in ids if i is not None and not pd.isna(i)})
    rows: list[Any] = []
    for part in chunks(unique_ids):
        rows.extend(map(tuple, session.execute(select(*columns).where(key.in_(part)))))
    return pd.DataFrame(rows, columns=[f"{prefix}.{c.name}" for c in columns])


def read_scores(session: Session, assessment_ids: Iterable[int]) -> pd.DataFrame:
    """Per-category scores pivoted to `assessment.scores.<category>` columns."""
    ids = sorted(set(assessment_ids))
    rows: list[Any] = []
    for part in chunks(ids):
        scores = select(AssessmentScore.assessment_id, AssessmentScore.category, AssessmentScore.score)
        rows.extend(map(tuple, session.execute(scores.where(AssessmentScore.assessment_id.in_(part)))))
    if not rows:
        return pd.DataFrame({"assessment.id": pd.Series(dtype="int64")})
    long = pd.DataFrame(rows, columns=["assessment.id", "category", "score"])
    wide = long.pivot(index="assessment.id", columns="category", values="score")
    wide.columns = [f"assessment.scores.{c}" for c in wide.columns]
    return wide.reset_index()


def with_clinics(session: Session, frame: pd.DataFrame) -> pd.DataFrame:
    """The people's clinic as `clinic.<column>` columns (empty for people without one)."""
    clinics = read_rows(session, Clinic, "clinic", frame["user.clinic_id"])
    return frame.merge(clinics, how="left", left_on="user.clinic_id", right_on="clinic.id")


def salesforce_leads(session: Session, user_ids: Iterable[int]) -> set[int]:
    """The people the hub last reached in Salesforce as a Lead: their latest Lead or Contact write there
    (the sync log's `object`) was to a Lead. Their Contact records go to that Lead, or to the Contact it
    was converted to (connectors/salesforce/leads.py), never to a second record of theirs."""
    ids = sorted({int(i) for i in user_ids if i is not None and not pd.isna(i)})
    latest: dict[int, tuple[int, str]] = {}
    for part in chunks(ids):
        rows = session.execute(
            select(SyncLog.user_id, SyncLog.object, func.max(SyncLog.id))
            .where(
                SyncLog.connector == "salesforce",
                SyncLog.object.in_(("Lead", "Contact")),
                SyncLog.status.in_((SyncStatus.CREATED.value, SyncStatus.UPDATED.value)),
                SyncLog.user_id.in_(part),
            )
            .group_by(SyncLog.user_id, SyncLog.object)
        ).all()
        for user_id, object_name, last in rows:
            if user_id is None:
                continue
            if user_id not in latest or latest[user_id][0] < last:
                latest[user_id] = (last, object_name)
    return {user_id for user_id, (_, object_name) in latest.items() if object_name == "Lead"}


def read_events(session: Session, event_ids: Sequence[str]) -> pd.DataFrame:
    """The events' envelopes, and an `event.<key>` column for each payload key a mapping reads."""
    read = sorted(event_payload_keys(get_settings().mappings_dir))
    columns: list[Any] = [
        OutboxEvent.id,
        OutboxEvent.type,
        OutboxEvent.occurred_at,
        OutboxEvent.subject,
        OutboxEvent.resource,
    ]
    if read:
        columns.append(OutboxEvent.payload)
    rows: list[Any] = []
    for part in chunks(list(dict.fromkeys(event_ids))):
        rows.extend(map(tuple, session.execute(select(*columns).where(OutboxEvent.id.in_(part)))))
    names = ["event.id", "event.type", "event.occurred_at", "event.subject", "event.resource"]
    if not read:
        return pd.DataFrame(rows, columns=names)
    frame = pd.DataFrame(rows, columns=[*names, "event.__payload"])
    for key in read:
        frame[f"event.{key}"] = [(p or {}).get(key) for p in frame["event.__payload"]]
    return frame.drop(columns=["event.__payload"])


def extract_records(event_type: str, event_ids: Sequence[str]) -> Extracted:
    """Join events of one type with their user and resource rows (plain function; the task wraps it)."""
    kind = EVENT_TYPES[event_type].resource_kind
    missing: dict[str, str] = {}
    with session_scope() as session:
        events = read_events(session, event_ids)
        found = set(events["event.id"])
        missing.update({i: "event not in the outbox" for i in event_ids if i not in found})
        wrong_type = events["event.type"] != event_type
        missing.update({i: "event is of another type" for i in events.loc[wrong_type, "event.id"]})
        events = events.loc[~wrong_type]
        frame = events.merge(
            read_rows(session, User, "user", events["event.subject"]),
            how="left",
            left_on="event.subject",
            right_on="user.id",
        )
        frame = with_clinics(session, frame)
        if kind is not None:
            resource_ids = pd.to_numeric(frame["event.resource"], errors="coerce")
            frame = frame.assign(**{f"{kind}.__id": resource_ids})
            resources = read_rows(session, RESOURCE_MODELS[kind], kind, resource_ids)
            frame = frame.merge(resources, how="left", left_on=f"{kind}.__id", right_on=f"{kind}.id")
            frame = frame.drop(columns=[f"{kind}.__id"])
            if kind == "assessment":
                frame = frame.merge(
                    read_scores(session, frame["assessment.id"].dropna().astype(int)),
                    how="left",
                    on="assessment.id",
                )
            belongs = frame[f"{kind}.user_id"] == frame["user.id"]
            lost = frame[f"{kind}.id"].isna() | ~belongs
            missing.update(
                {i: f"{kind} not found for the event's subject" for i in frame.loc[lost, "event.id"]}
            )
            frame = frame.loc[~lost]
        lost_user = frame["user.id"].isna()
        missing.update({i: "user not found" for i in frame.loc[lost_user, "event.id"]})
        frame = frame.loc[~lost_user].reset_index(drop=True)
        leads = salesforce_leads(session, frame["user.id"])
    frame["user.salesforce_lead"] = frame["user.id"].isin(leads)
    frame["user.id"] = frame["user.id"].astype("int64")
    return Extracted(event_type, frame, missing)
