"""Inbound sync tasks: fetch what changed at a CRM since the watermark, apply it to the host's users.

Only the columns the CRMs own and consent withdrawals are written (the inbound half of the mapping says
which); each applied change is one `received` row in the sync log (ids only) so the data endpoint shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

from prefect import task
from sqlalchemy import select

from connectors.base import MARKETING, ChangedRecord, Person
from connectors.registry import CONNECTORS, build_connector
from ennu.db import session_scope
from ennu.erasure import erased_among
from ennu.models import SyncLog, SyncStatus, User
from ennu.settings import get_settings
from ennu.vendor_schema import fingerprint
from mappings.inbound import host_user_id, host_values
from mappings.routing import ConsentNeed, routing_table
from mappings.schema import InboundMapping
from tasks.record import SyncEntry


@dataclass
class InboundSummary:
    """Counts only: which integration, how many records came and what became of them."""

    integration: str
    fetched: int = 0
    applied: int = 0  # users whose CRM-owned columns changed
    unchanged: int = 0  # the host already had the vendor's values (e.g. only we had touched the record)
    unmatched: int = 0  # no host user with the id the record carries (not one of ours, or erased)
    since: str | None = None
    watermark: str | None = None
    withdrawn_marketing: list[int] = field(default_factory=list)  # user ids: lists to unsubscribe from

    def row(self) -> dict[str, str | int | None]:
        row: dict[str, str | int | None] = {
            k: v for k, v in asdict(self).items() if k != "withdrawn_marketing"
        }
        row["marketing_withdrawn"] = len(self.withdrawn_marketing)
        return row


@task(name="fetch-changes", retries=2, retry_delay_seconds=10)
def fetch_changes(integration: str, inbound: InboundMapping, since: datetime) -> list[ChangedRecord]:
    connector = build_connector(integration)
    try:
        return connector.fetch_changes(inbound.object, since, inbound.vendor_fields)
    finally:
        connector.close()


@task(name="apply-changes")
def apply_changes(
    integration: str, inbound: InboundMapping, changes: Sequence[ChangedRecord]
) -> InboundSummary:
    """Write each record's CRM-owned values to its host user; one read of the users, one transaction."""
    summary = InboundSummary(integration, fetched=len(changes))
    by_user: dict[int, ChangedRecord] = {}
    for change in sorted(changes, key=lambda c: c.modified_at):
        user_id = host_user_id(inbound, change.values)
        if user_id is None:
            summary.unmatched += 1
        else:
            by_user[user_id] = change  # the newest change of a record wins
    with session_scope() as session:
        users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(list(by_user))))}
        erased = erased_among(session, by_user)  # never written back, nor logged with the vendor's id
        for user_id, change in by_user.items():
            user = users.get(user_id)
            if user is None or user_id in erased:
                summary.unmatched += 1
                continue
            wanted = host_values(inbound, change.values)
            diff = {column: value for column, value in wanted.items() if getattr(user, column) != value}
            if not diff:
                summary.unchanged += 1
                continue
            for column, value in diff.items():
                setattr(user, column, value)
            if diff.get("marketing_consent") is False:
                summary.withdrawn_marketing.append(user_id)
            summary.applied += 1
            session.add(
                SyncLog(
                    connector=integration,
                    object=inbound.object,
                    record_key=f"user:{user_id}",
                    user_id=user_id,
                    status=SyncStatus.RECEIVED.value,
                    remote_id=change.remote_id,
                    payload_hash=fingerprint(diff),
                )
            )
    return summary


@task(name="withdraw-marketing", retries=2, retry_delay_seconds=10)
def withdraw_marketing(user_ids: list[int]) -> list[SyncEntry]:
    """A CRM opt-out reaches the marketing destinations too: each enabled one withdraws the person."""
    table = routing_table(get_settings().mappings_dir)
    targets = [
        name
        for name, config in sorted(table.integrations.items())
        if config.enabled
        and config.consent == ConsentNeed.MARKETING
        and name in CONNECTORS
        # production without credentials: nothing there to withdraw (an unreadable credential raises: retried)
        and CONNECTORS[name].unavailable() is None
    ]
    with session_scope() as session:
        erased = erased_among(session, user_ids)
        people = [
            Person(user_id=u.id, email=u.email, phone=u.phone)
            for u in session.scalars(select(User).where(User.id.in_(user_ids)))
            if u.id not in erased
        ]
    entries: list[SyncEntry] = []
    for name in targets:
        connector = build_connector(name)
        try:
            for person in people:
                outcome = connector.withdraw_consent(person, frozenset({MARKETING}))
                if outcome is not None:
                    entries.append(
                        SyncEntry(
                            name,
                            "consent",
                            outcome.record_key,
                            None,
                            person.user_id,
                            outcome.status,
                            error=outcome.error,
                        )
                    )
        finally:
            connector.close()
    return entries
