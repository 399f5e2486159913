"""`erase-user`: the right to deletion: every destination that holds the person erases or anonymises them."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from sqlalchemy import select, update

from connectors.base import Person
from connectors.http import ConnectorError, RetryableError
from ennu import deliveries
from ennu.db import session_scope
from ennu.models import ErasedPerson, HealthGoal, OutboxEvent, SyncLog, SyncStatus, User, utcnow
from tasks.admit import admit
from tasks.push import connector_for
from tasks.record import Ledger, SyncEntry, summarise

# An erasure waits this long for the person's deliveries in flight to finish, then looks again.
IN_FLIGHT_WAIT = timedelta(seconds=2)
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


@task(name="erase-at-destination", cache_policy=NONE, retries=1, retry_delay_seconds=[2])
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


def remember_erased(user_id: int, event_id: str) -> None:
    """Put the person's host id on the erasure list (once; a repeated request keeps the first)."""
    with session_scope() as session:
        if session.get(ErasedPerson, user_id) is None:
            session.add(ErasedPerson(user_id=user_id, event_id=event_id))


def erase_people(ledger: Ledger, people: dict[str, Person | None]) -> list[SyncEntry]:
    """Cancel each person's other deliveries, wait out those in flight, then erase at every destination."""
    futures = []
    entries: list[SyncEntry] = []
    for event_id, person in people.items():
        held = list(ledger.by_event.get(event_id, {}))
        if person is None:
            entries += [
                SyncEntry(
                    i,
                    "person",
                    f"event:{event_id}",
                    event_id,
                    None,
                    SyncStatus.REJECTED,
                    error="user not found",
                )
                for i in held
            ]
            continue
        remember_erased(person.user_id, event_id)  # first: no later event of theirs is routed anywhere
        deliveries.cancel_person(person.user_id, "person erased", except_event=event_id)
        if deliveries.in_flight_for(person.user_id, except_event=event_id):
            wait_until = utcnow() + IN_FLIGHT_WAIT
            entries += [
                SyncEntry(
                    i,
                    "person",
                    f"user:{person.user_id}",
                    event_id,
                    person.user_id,
                    SyncStatus.DEFERRED,
                    error="waiting for deliveries in flight",
                    not_before=wait_until,
                )
                for i in held
            ]
            continue
        futures += [(i, person, event_id, erase_at.submit(i, person, event_id)) for i in held]
    for integration, person, event_id, future in futures:
        result = future.result(raise_on_failure=False)
        if isinstance(result, SyncEntry):
            entries.append(result)
            continue
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
    return entries


@flow(name="erase-user", log_prints=False)
def erase_user(event_ids: list[str]) -> list[dict[str, int | str]]:
    """Erase the people of these `user.deletion_requested` events at every destination their events ask."""
    logger = get_run_logger()
    owner = deliveries.current_owner()
    admit(event_ids)
    with deliveries.keep_leased(owner):
        ledger = Ledger(owner, deliveries.take(owner, event_ids))
        people = people_to_erase(ledger.event_ids)
        ledger.write(erase_people(ledger, people))
        cleared = pseudonymise_history([p.user_id for p in people.values() if p is not None])
    summary = summarise(ledger.entries)
    create_table_artifact(
        key="erasure-outcomes",
        table=summary,
        description=f"Erasure of {len(people)} people: outcome per destination (counts only)",
    )
    logger.info("erased %d people; %d history rows pseudonymised", len(people), cleared)
    return summary
