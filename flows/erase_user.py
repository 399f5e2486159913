"""`erase-user`: the right to deletion: every destination that holds the person erases or anonymises them."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from sqlalchemy import select, update

from connectors.base import Person
from connectors.http import ConnectorError, RetryableError
from ennu.db import session_scope
from ennu.models import HealthGoal, OutboxEvent, SyncLog, SyncStatus, User
from ennu.settings import get_settings
from mappings.routing import routing_table
from tasks.push import connector_for
from tasks.record import SyncEntry, current_flow_run_id, finish_events, summarise, write_sync_log

# Destinations that keep the record by law or by design, and only record the decision.
RETAINED = {"epic_fhir": "medical record retained (HIPAA retention); erasure decision recorded"}


def people_to_erase(event_ids: list[str]) -> dict[str, Person | None]:
    """Event id → the person (keys destinations know them by), None when the user row is gone."""
    with session_scope() as session:
        events = session.execute(
            select(OutboxEvent.id, OutboxEvent.subject).where(
                OutboxEvent.id.in_(event_ids), OutboxEvent.type == "user.deletion_requested"
            )
        ).all()
        subjects = [s for _, s in events if s]
        goals: dict[int, list[int]] = {}
        for goal_id, owner in session.execute(
            select(HealthGoal.id, HealthGoal.user_id).where(HealthGoal.user_id.in_(subjects))
        ):
            goals.setdefault(owner, []).append(goal_id)
        users = {
            u.id: Person(user_id=u.id, email=u.email, phone=u.phone, goal_ids=tuple(goals.get(u.id, ())))
            for u in session.execute(select(User).where(User.id.in_(subjects))).scalars()
        }
    return {event_id: users.get(subject) if subject else None for event_id, subject in events}


@task(name="erase-at-destination", cache_policy=NONE, retries=3, retry_delay_seconds=[5, 20, 60])
def erase_at(integration: str, person: Person, event_id: str) -> SyncEntry:
    """Ask one destination to erase one person; a retryable vendor failure is retried by Prefect."""
    key = f"user:{person.user_id}"
    if integration in RETAINED:
        return SyncEntry(
            integration,
            "person",
            key,
            event_id,
            person.user_id,
            SyncStatus.SKIPPED,
            error=RETAINED[integration],
        )
    try:
        outcome = connector_for(integration).erase(person)
    except RetryableError:
        raise
    except ConnectorError as exc:
        return SyncEntry(
            integration, "person", key, event_id, person.user_id, SyncStatus.FAILED, error=exc.reason
        )
    return SyncEntry(
        integration, "person", key, event_id, person.user_id, outcome.status, outcome.remote_id, outcome.error
    )


def pseudonymise_history(user_ids: list[int]) -> int:
    """Keep that syncs happened, drop what could identify the person at a vendor."""
    with session_scope() as session:
        result = session.execute(
            update(SyncLog)
            .where(SyncLog.user_id.in_(user_ids), SyncLog.status != SyncStatus.ERASED.value)
            .values(remote_id=None, payload_hash=None, error=None)
        )
        return int(getattr(result, "rowcount", 0) or 0)


@flow(name="erase-user", log_prints=False)
def erase_user(event_ids: list[str]) -> list[dict[str, int | str]]:
    """Erase the people of these `user.deletion_requested` events at every enabled destination."""
    logger = get_run_logger()
    table = routing_table(get_settings().mappings_dir)
    destinations = [name for name, config in table.integrations.items() if config.enabled]
    people = people_to_erase(event_ids)
    futures = []
    entries: list[SyncEntry] = []
    for event_id, person in people.items():
        if person is None:
            entries.append(
                SyncEntry(
                    "hub",
                    "event",
                    f"event:{event_id}",
                    event_id,
                    None,
                    SyncStatus.REJECTED,
                    error="user not found",
                )
            )
            continue
        futures += [
            (integration, person, event_id, erase_at.submit(integration, person, event_id))
            for integration in destinations
        ]
    for integration, person, event_id, future in futures:
        result = future.result(raise_on_failure=False)
        if isinstance(result, SyncEntry):
            entries.append(result)
        else:
            entries.append(
                SyncEntry(
                    integration,
                    "person",
                    f"user:{person.user_id}",
                    event_id,
                    person.user_id,
                    SyncStatus.DEFERRED,
                    error=getattr(result, "reason", type(result).__name__),
                )
            )
    cleared = pseudonymise_history([p.user_id for p in people.values() if p is not None])
    write_sync_log(entries, current_flow_run_id())
    deferred = {e.event_id for e in entries if e.status == SyncStatus.DEFERRED and e.event_id}
    finish_events(list(people), deferred)
    summary = summarise(entries)
    create_table_artifact(
        key="erasure-outcomes",
        table=summary,
        description=f"Erasure of {len(people)} people: outcome per destination (counts only)",
    )
    logger.info(
        "erased %d people at %d destinations; %d history rows pseudonymised",
        len(people),
        len(destinations),
        cleared,
    )
    return summary
