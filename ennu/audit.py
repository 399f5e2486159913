"""The audit log: who (a token's label), when, what (an action), to what (ids) and how it ended (a status).

Written before the action runs and closed with its outcome, so an action never happens unrecorded: a failed
write fails the action (the intake answers 503). Actors are labels or Prefect user names, never a token nor
a hash of one; targets are ids and integration names, never personal data. Kept ENNU_RETENTION_AUDIT_DAYS
(flows/cleanup.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from ennu.db import session_scope
from ennu.models import AuditedTokenLabel, AuditEntry, as_utc, utcnow

# Sources of an entry.
API = "api"
PREFECT = "prefect"
INTAKE = "intake"
# The tag the intake gives the deployment runs it starts: the intake's own entry already records them.
INTAKE_RUN_TAG = "ennu-intake"
# A deployment run started through the Prefect API by someone Prefect does not name (the UI, the CLI).
PREFECT_UI = "prefect-ui"
ACTOR_MAX = 80
TARGET_MAX = 400


class AuditUnavailable(RuntimeError):
    """The audit log could not be written: the action it would record must not go on."""


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str | None
    outcome: int | None
    source: str


def describe(**ids: Any) -> str | None:
    """A target as `name=value` pairs, in the order given, None values left out (values: ids and names the
    caller has checked; a list is joined with `,`)."""
    parts = []
    for name, value in ids.items():
        if value is None:
            continue
        shown = ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
        parts.append(f"{name}={shown}")
    text = " ".join(parts)
    return text[:TARGET_MAX] if text else None


def open_entry(*, actor: str, role: str, action: str, target: str | None, source: str = API) -> int:
    """Record an action about to run (no outcome yet); its id, for `close_entry`. Raises AuditUnavailable."""
    entry = AuditEntry(
        at=utcnow(), actor=actor[:ACTOR_MAX], role=role, action=action, target=target, source=source
    )
    try:
        with session_scope() as session:
            session.add(entry)
            session.flush()
            return int(entry.id)
    except Exception as exc:  # any database failure: the action must not run unrecorded
        raise AuditUnavailable(type(exc).__name__) from None


def close_entry(entry_id: int, outcome: int) -> None:
    """Record how the action ended (an HTTP status; a deployment run: 200 done, 500 raised)."""
    try:
        with session_scope() as session:
            session.execute(update(AuditEntry).where(AuditEntry.id == entry_id).values(outcome=outcome))
    except Exception as exc:
        raise AuditUnavailable(type(exc).__name__) from None


def entries(
    *,
    since: datetime | None = None,
    action: str | None = None,
    actor: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> tuple[int, list[AuditRow]]:
    """(total, one page of entries), newest first."""
    query = select(AuditEntry)
    if since is not None:  # stored in UTC (SQLite keeps no offset): compare in UTC
        query = query.where(AuditEntry.at >= (as_utc(since) or since).astimezone(UTC))
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = session.execute(
            query.order_by(AuditEntry.id.desc()).offset((page - 1) * page_size).limit(page_size)
        ).scalars()
        return total, [
            AuditRow(r.id, as_utc(r.at) or r.at, r.actor, r.role, r.action, r.target, r.outcome, r.source)
            for r in rows
        ]


def record_token_labels(configured: dict[str, set[str]]) -> list[tuple[str, str, str]]:
    """Compare the token labels configured now (per role) with those of the last start; record each label
    added or removed (a rotation) and remember the new set. Returns (action, role, label) of each change."""
    changes: list[tuple[str, str, str]] = []
    now = utcnow()
    try:
        with session_scope() as session:
            known: dict[str, set[str]] = {}
            for row in session.execute(select(AuditedTokenLabel)).scalars():
                known.setdefault(row.role, set()).add(row.label)
            for role in sorted(set(configured) | set(known)):
                now_set, before = configured.get(role, set()), known.get(role, set())
                for label in sorted(now_set - before):
                    changes.append(("token-added", role, label))
                    session.add(AuditedTokenLabel(role=role, label=label, since=now))
                for label in sorted(before - now_set):
                    changes.append(("token-removed", role, label))
                    session.execute(
                        delete(AuditedTokenLabel).where(
                            AuditedTokenLabel.role == role, AuditedTokenLabel.label == label
                        )
                    )
            for action, role, label in changes:
                session.add(
                    AuditEntry(
                        at=now,
                        actor=INTAKE,
                        role=role,
                        action=action,
                        target=describe(label=label),
                        outcome=200,
                        source=INTAKE,
                    )
                )
    except Exception as exc:
        raise AuditUnavailable(type(exc).__name__) from None
    return changes


def deployment_run_actor() -> tuple[str, str] | None:
    """(actor, role) when the current flow run is a deployment run someone started by hand; None when the
    flow was called directly (the delivery worker, a test), runs on a schedule, or the intake started it
    (the intake recorded it already, with the operator's label)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    if run is None or run.deployment_id is None or run.auto_scheduled or INTAKE_RUN_TAG in (run.tags or []):
        return None
    created_by = run.created_by
    if created_by is not None and str(created_by.type).upper() == "AUTOMATION":
        return None  # a trigger's run (an event flow, an erasure from the host's request): not a hand action
    if created_by is not None and created_by.display_value:
        return created_by.display_value, str(created_by.type or "user").lower()
    return PREFECT_UI, "operator"


def record_deployment_run(action: str, target: str | None) -> int | None:
    """Open the entry of a hand-started deployment run (see `deployment_run_actor`); None if not one."""
    who = deployment_run_actor()
    if who is None:
        return None
    actor, role = who
    return open_entry(actor=actor, role=role, action=action, target=target, source=PREFECT)


@contextmanager
def audited_run(action: str, target: str | None) -> Iterator[None]:
    """Around a maintenance flow's work (or as its decorator, under `@flow`): a hand-started deployment run
    is recorded before it acts and closed with 200 (done) or 500 (raised); any other run records nothing."""
    entry = record_deployment_run(action, target)
    try:
        yield
    except BaseException:
        if entry is not None:
            close_entry(entry, 500)
        raise
    if entry is not None:
        close_entry(entry, 200)
