"""`consent-changed`: the host changed a person's consent: what they withdrew stops at every vendor.

The host sends `user.consent_changed` (ids only) after it changes `users.marketing_consent` or
`users.communication_consent`; the flow reads the flags as they are now. A withdrawn marketing consent
unsubscribes (archives) the Mailchimp member, opts the address out of all HubSpot email and sets the
Salesforce Contact's Email Opt Out; a withdrawn communication consent sets Do Not Call. A per-integration
refusal in the consents table withdraws both at that integration. A granted consent changes nothing here:
the next registration or profile sync carries it.
"""

from __future__ import annotations

from typing import Any

from prefect import State, flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from sqlalchemy import select

from connectors.base import COMMUNICATION, MARKETING, Person
from connectors.endpoint import NotConfigured
from connectors.http import ConnectorError, RetryableError
from ennu import deliveries
from ennu.db import session_scope
from ennu.models import Consent, OutboxEvent, SyncStatus, User
from flows.results import NO_RESULTS
from tasks.admit import CONSENT_CHANGE, admit
from tasks.push import connector_for
from tasks.record import Ledger, SyncEntry, summarise
from tasks.run_state import batch_state

CONSENT_OBJECT = "consent"


def consents_now(event_ids: list[str]) -> dict[str, tuple[Person, frozenset[str], set[str]] | None]:
    """Event id → (person, consents withdrawn by flag, integrations refused outright); None: no user row."""
    with session_scope() as session:
        events = session.execute(
            select(OutboxEvent.id, OutboxEvent.subject).where(
                OutboxEvent.id.in_(event_ids), OutboxEvent.type == CONSENT_CHANGE
            )
        ).all()
        subjects = [s for _, s in events if s]
        users = {u.id: u for u in session.execute(select(User).where(User.id.in_(subjects))).scalars()}
        refused: dict[int, set[str]] = {}
        for user_id, integration in session.execute(
            select(Consent.user_id, Consent.integration).where(
                Consent.user_id.in_(subjects), Consent.granted.is_(False)
            )
        ):
            refused.setdefault(user_id, set()).add(integration)
        found: dict[str, tuple[Person, frozenset[str], set[str]] | None] = {}
        for event_id, subject in events:
            user = users.get(subject) if subject else None
            if user is None:
                found[event_id] = None
                continue
            withdrawn = frozenset(
                name
                for name, given in (
                    (MARKETING, user.marketing_consent),
                    (COMMUNICATION, user.communication_consent),
                )
                if not given
            )
            person = Person(user_id=user.id, email=user.email, phone=user.phone)
            found[event_id] = (person, withdrawn, refused.get(user.id, set()))
    return found


@task(name="withdraw-at-destination", cache_policy=NONE, retries=1, retry_delay_seconds=[2])
def withdraw_at(integration: str, person: Person, withdrawn: frozenset[str], event_id: str) -> SyncEntry:
    """Ask one destination to stop what the person withdrew; a retryable vendor failure is retried."""
    key = f"user:{person.user_id}"
    if not withdrawn:
        return SyncEntry(
            integration,
            CONSENT_OBJECT,
            key,
            event_id,
            person.user_id,
            SyncStatus.SKIPPED,
            error="nothing withdrawn",
        )
    try:
        outcome = connector_for(integration).withdraw_consent(person, withdrawn)
    except RetryableError:
        raise
    except (ConnectorError, NotConfigured) as exc:  # production without credentials: "no credentials"
        return SyncEntry(
            integration, CONSENT_OBJECT, key, event_id, person.user_id, SyncStatus.FAILED, error=exc.reason
        )
    if outcome is None:
        return SyncEntry(
            integration,
            CONSENT_OBJECT,
            key,
            event_id,
            person.user_id,
            SyncStatus.SKIPPED,
            error="nothing to stop here",
        )
    return SyncEntry(
        integration,
        CONSENT_OBJECT,
        key,
        event_id,
        person.user_id,
        outcome.status,
        outcome.remote_id,
        outcome.error,
    )


def withdraw_everywhere(ledger: Ledger) -> list[SyncEntry]:
    entries: list[SyncEntry] = []
    futures = []
    for event_id, found in consents_now(ledger.event_ids).items():
        held = list(ledger.by_event.get(event_id, {}))
        if found is None:
            entries += [
                SyncEntry(
                    i,
                    CONSENT_OBJECT,
                    f"event:{event_id}",
                    event_id,
                    None,
                    SyncStatus.REJECTED,
                    error="user not found",
                )
                for i in held
            ]
            continue
        person, withdrawn, refused = found
        for integration in held:
            everything = frozenset({MARKETING, COMMUNICATION}) if integration in refused else withdrawn
            futures.append(
                (integration, person, event_id, withdraw_at.submit(integration, person, everything, event_id))
            )
    for integration, person, event_id, future in futures:
        result = future.result(raise_on_failure=False)
        if isinstance(result, SyncEntry):
            entries.append(result)
            continue
        entries.append(
            SyncEntry(
                integration,
                CONSENT_OBJECT,
                f"user:{person.user_id}",
                event_id,
                person.user_id,
                SyncStatus.DEFERRED,
                error=getattr(result, "reason", type(result).__name__),
            )
        )
    return entries


@flow(name="consent-changed", log_prints=False, **NO_RESULTS)
def consent_changed(event_ids: list[str]) -> State[Any]:
    """Carry these `user.consent_changed` events: each withdrawn consent stops at every vendor holding it."""
    owner = deliveries.current_owner()
    admit(event_ids)
    with deliveries.keep_leased(owner):
        ledger = Ledger(owner, deliveries.take(owner, event_ids))
        ledger.write(withdraw_everywhere(ledger))
    summary = summarise(ledger.entries)
    create_table_artifact(
        key="consent-withdrawals",
        table=summary,
        description="Consent withdrawals per destination (counts only)",
    )
    get_run_logger().info("consent changes of %d events carried", len(ledger.event_ids))
    return batch_state(summary)  # a withdrawal a vendor refused for good fails the run, and alerts
