"""`erase-user`: the right to deletion: every destination that holds the person erases or anonymises them."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from sqlalchemy import select

from connectors.base import Person
from connectors.endpoint import NotConfigured
from connectors.http import ConnectorError, RetryableError
from connectors.registry import CONNECTORS
from ennu import deliveries
from ennu.audit import audited_run, describe
from ennu.db import session_scope
from ennu.erasure import ERASURE_OBJECT, scrub_person
from ennu.erasure_report import erasure_report
from ennu.models import ErasedPerson, HealthGoal, OutboxEvent, SyncStatus, User, utcnow
from ennu.secrets import SecretUnavailable
from ennu.settings import get_settings
from flows.results import NO_RESULTS
from mappings.routing import routing_table
from tasks.admit import admit
from tasks.push import connector_for
from tasks.record import Ledger, SyncEntry

# An erasure waits this long for the person's deliveries in flight to finish, then looks again.
IN_FLIGHT_WAIT = timedelta(seconds=2)
# Destinations that keep the record by law or by design, and only record the decision.
RETAINED = {"epic_fhir": "medical record retained (HIPAA retention); erasure decision recorded"}
DISABLED = "pending: destination disabled"


def people_to_erase(event_ids: list[str]) -> dict[str, Person | None]:
    """Event id → the person (keys destinations know them by), None for an event without a subject.

    When the host already deleted the user row, the person is still erased by host id: destinations that
    key them by it (Salesforce, GA4, Zapier) erase, those that need the e-mail say so in the report.
    """
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
    return {
        event_id: users.get(subject) or Person(user_id=subject) if subject else None
        for event_id, subject in events
    }


@task(name="erase-at-destination", cache_policy=NONE, retries=1, retry_delay_seconds=[2])
def erase_at(integration: str, person: Person, event_id: str) -> SyncEntry:
    """Ask one destination to erase one person; a retryable vendor failure is retried by Prefect."""
    key = f"user:{person.user_id}"
    if integration in RETAINED:
        return SyncEntry(
            integration,
            ERASURE_OBJECT,
            key,
            event_id,
            person.user_id,
            SyncStatus.SKIPPED,
            error=RETAINED[integration],
        )
    config = routing_table(get_settings().mappings_dir).integrations.get(integration)
    destination = CONNECTORS[integration]
    try:
        disabled = ((config is None or not config.enabled) and not destination.has_credentials()) or (
            destination.unavailable() is not None  # production without credentials
        )
    except SecretUnavailable as exc:  # a credential could not be read: retried, never taken as "none"
        raise RetryableError(integration, exc.reason, now=False) from None
    if disabled:
        # It once received the person; asked again after a while (and by every drain) until enabled.
        wait = timedelta(seconds=get_settings().erasure_pending_retry_seconds)
        return SyncEntry(
            integration,
            ERASURE_OBJECT,
            key,
            event_id,
            person.user_id,
            SyncStatus.DEFERRED,
            error=DISABLED,
            not_before=utcnow() + wait,
        )
    try:
        outcome = connector_for(integration).erase(person)
    except RetryableError:
        raise
    except (ConnectorError, NotConfigured) as exc:
        return SyncEntry(
            integration, ERASURE_OBJECT, key, event_id, person.user_id, SyncStatus.FAILED, error=exc.reason
        )
    return SyncEntry(
        integration,
        ERASURE_OBJECT,
        key,
        event_id,
        person.user_id,
        outcome.status,
        outcome.remote_id,
        outcome.error,
        not_before=outcome.not_before,
    )


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
                    ERASURE_OBJECT,
                    f"event:{event_id}",
                    event_id,
                    None,
                    SyncStatus.REJECTED,
                    error="no subject to erase",
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
                    ERASURE_OBJECT,
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
                ERASURE_OBJECT,
                f"user:{person.user_id}",
                event_id,
                person.user_id,
                SyncStatus.DEFERRED,
                error=getattr(result, "reason", type(result).__name__),
            )
        )
    return entries


def leave_no_trace(person: Person) -> int:
    """After the destinations: cancel what was routed meanwhile, and scrub the hub's rows of the person."""
    cancelled = deliveries.cancel_person(person.user_id, "person erased")
    scrubbed = scrub_person(person.user_id, person.email, person.phone)
    return cancelled + scrubbed.sync_log + scrubbed.outbox + scrubbed.deliveries + scrubbed.receipts


def report_rows(user_ids: list[int]) -> list[dict[str, str]]:
    """The erasure report of each person: destination, outcome, time, reference, what is outstanding."""
    rows: list[dict[str, str]] = []
    for user_id in user_ids:
        report = erasure_report(user_id)
        if report is not None:
            rows += [{"person": str(user_id), **row} for row in report.rows()]
    return rows


@flow(name="erase-user", log_prints=False, **NO_RESULTS)
def erase_user(event_ids: list[str]) -> list[dict[str, str]]:
    """Erase the people of these `user.deletion_requested` events at every destination that held them."""
    logger = get_run_logger()
    owner = deliveries.current_owner()
    # Started by hand from the Prefect UI: audited (the host's own request was, at POST /events).
    with audited_run("erasure", describe(event_ids=f"{len(event_ids)} ids")):
        admit(event_ids)
        with deliveries.keep_leased(owner):
            ledger = Ledger(owner, deliveries.take(owner, event_ids))
            people = people_to_erase(ledger.event_ids)
            ledger.write(erase_people(ledger, people))
            erased = [p for p in people.values() if p is not None]
            cleared = sum(leave_no_trace(p) for p in erased)
    rows = report_rows(sorted({p.user_id for p in erased}))
    outstanding = sum(1 for r in rows if r["outstanding"] == "True")
    create_table_artifact(
        key="erasure-outcomes",
        table=rows,
        description=(
            f"Erasure of {len(erased)} people: outcome per destination, {outstanding} outstanding "
            "(host ids and references only; GET /integrations/erasures/{person} for one person)"
        ),
    )
    logger.info("erased %d people; %d hub rows cancelled or scrubbed", len(erased), cleared)
    return rows
