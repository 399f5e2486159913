"""Inbound sync tasks: fetch what changed at a CRM since the watermark, apply it to the host's users (and,
from HubSpot deals, to their health goals' CRM view).

Only the columns the CRMs own and consent withdrawals are written (the inbound half of the mapping says
which); each applied change is one `received` row in the sync log (ids only) so the data endpoint shows it.
The poll and the CRMs' webhooks (flows/hubspot_changes.py) apply through `apply_change`: a column keeps the
vendor time of its last applied change, and an older change never overwrites a newer one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from prefect import task
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.base import MARKETING, ChangedRecord, Person
from connectors.hubspot.settings import HubSpotSettings
from connectors.registry import CONNECTORS, build_connector
from ennu.db import session_scope
from ennu.erasure import erased_among
from ennu.models import HealthGoal, InboundFieldVersion, SyncLog, SyncStatus, User, as_utc
from ennu.settings import get_settings
from ennu.vendor_schema import fingerprint
from mappings.inbound import host_record_id, host_values
from mappings.routing import ConsentNeed, routing_table
from mappings.schema import InboundMapping
from tasks.record import SyncEntry


@dataclass
class InboundSummary:
    """Counts only: which integration, how many records came and what became of them."""

    integration: str
    object: str  # the vendor object: contacts (users), deals (health goals), Contact, ...
    fetched: int = 0
    applied: int = 0  # host records whose CRM-owned columns changed
    unchanged: int = 0  # the host already had the vendor's values (e.g. only we had touched the record)
    unmatched: int = 0  # no host record with the id the vendor's carries (not one of ours, or erased)
    since: str | None = None
    watermark: str | None = None
    withdrawn_marketing: list[int] = field(default_factory=list)  # user ids: lists to unsubscribe from

    def row(self) -> dict[str, str | int | None]:
        row: dict[str, str | int | None] = {
            k: v for k, v in asdict(self).items() if k != "withdrawn_marketing"
        }
        row["marketing_withdrawn"] = len(self.withdrawn_marketing)
        return row


Versions = dict[tuple[int, str], datetime]  # (record id, column) -> vendor time of its last applied change
InboundRecord = User | HealthGoal  # what an inbound half writes: a user (contacts) or a goal (deals)


def read_records(session: Session, record: str, record_ids: Iterable[int]) -> dict[int, InboundRecord]:
    """The host records of this kind (`user`, `health_goal`) with these ids, by id."""
    ids = sorted(set(record_ids))
    found: list[InboundRecord] = list(
        session.scalars(select(User).where(User.id.in_(ids)))
        if record == "user"
        else session.scalars(select(HealthGoal).where(HealthGoal.id.in_(ids)))
    )
    return {target.id: target for target in found}


def read_versions(session: Session, integration: str, record: str, record_ids: Iterable[int]) -> Versions:
    """The stored versions of these records' columns from this integration (`record`: user, health_goal)."""
    ids = sorted(set(record_ids))
    found: Versions = {}
    for start in range(0, len(ids), 1000):
        rows = session.execute(
            select(InboundFieldVersion).where(
                InboundFieldVersion.integration == integration,
                InboundFieldVersion.record == record,
                InboundFieldVersion.record_id.in_(ids[start : start + 1000]),
            )
        ).scalars()
        for row in rows:
            found[(row.record_id, row.column)] = as_utc(row.changed_at) or row.changed_at
    return found


def record_kind(target: InboundRecord) -> str:
    return "user" if isinstance(target, User) else "health_goal"


def owner_id(target: InboundRecord) -> int:
    """The person the record belongs to (erasure deletes the versions and log rows by it)."""
    return target.id if isinstance(target, User) else target.user_id


def own_values(inbound: InboundMapping, goal: HealthGoal) -> dict[str, str]:
    """Host column → the vendor value the host itself sends for the field it is read from (`own_value`).

    `deal_stage`: the stage id the HubSpot connector puts on a goal's deal, won once the goal is completed
    and open otherwise (the deal mappings of health_goal.created/completed/progressed)."""
    stages = HubSpotSettings.load()
    stage = stages.deal_stage_won if goal.status == "completed" else stages.deal_stage_open
    return {
        target.split(".", 1)[1]: stage
        for target, spec in inbound.fields.items()
        if spec.own_value == "deal_stage"
    }


def wanted_values(inbound: InboundMapping, target: InboundRecord, vendor: dict[str, Any]) -> dict[str, Any]:
    """The host values one vendor record asks for. A goal's column whose vendor value is the host's own (our
    write coming back) is cleared: the CRM holds what the host says, so there is no CRM view to keep."""
    wanted = host_values(inbound, vendor)
    if isinstance(target, HealthGoal):
        for column, own in own_values(inbound, target).items():
            if wanted.get(column) == own:
                wanted[column] = None
    return wanted


@dataclass(frozen=True)
class AppliedChange:
    """What one vendor change did to one record: the columns written, and those a newer change already set."""

    diff: dict[str, Any]
    stale: frozenset[str]


def apply_change(
    session: Session,
    integration: str,
    object_name: str,
    target: InboundRecord,
    wanted: dict[str, Any],
    changed_at: datetime,
    remote_id: str | None,
    versions: Versions,
) -> AppliedChange:
    """Write the wanted host values of one vendor record changed at `changed_at` (aware), column by column
    unless a newer change of that column was applied; remember the versions; log a `received` row."""
    kind = record_kind(target)
    current = {
        column: wanted[column]
        for column in wanted
        if (target.id, column) not in versions or versions[(target.id, column)] <= changed_at
    }
    stale = frozenset(wanted) - frozenset(current)
    for column in current:
        known = versions.get((target.id, column))
        if known is None:
            session.add(
                InboundFieldVersion(
                    integration=integration,
                    record=kind,
                    record_id=target.id,
                    user_id=owner_id(target),
                    column=column,
                    changed_at=changed_at,
                )
            )
        elif known < changed_at:
            session.execute(
                update(InboundFieldVersion)
                .where(
                    InboundFieldVersion.integration == integration,
                    InboundFieldVersion.record == kind,
                    InboundFieldVersion.record_id == target.id,
                    InboundFieldVersion.column == column,
                )
                .values(changed_at=changed_at)
            )
        versions[(target.id, column)] = max(changed_at, known or changed_at)
    diff = {column: value for column, value in current.items() if getattr(target, column) != value}
    for column, value in diff.items():
        setattr(target, column, value)
    if diff:
        session.add(
            SyncLog(
                connector=integration,
                object=object_name,
                record_key=f"{kind}:{target.id}",
                user_id=owner_id(target),
                status=SyncStatus.RECEIVED.value,
                remote_id=remote_id,
                payload_hash=fingerprint(diff),
            )
        )
    return AppliedChange(diff, stale)


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
    """Write each record's CRM-owned values to its host record (a user, a goal); one read of the records,
    one transaction."""
    summary = InboundSummary(integration, inbound.object, fetched=len(changes))
    by_id: dict[int, ChangedRecord] = {}
    for change in sorted(changes, key=lambda c: c.modified_at):
        record_id = host_record_id(inbound, change.values)
        if record_id is None:
            summary.unmatched += 1
        else:
            by_id[record_id] = change  # the newest change of a record wins
    with session_scope() as session:
        targets = read_records(session, inbound.record, by_id)
        # never written back, nor logged with the vendor's id
        erased = erased_among(session, {owner_id(t) for t in targets.values()})
        versions = read_versions(session, integration, inbound.record, by_id)
        for record_id, change in by_id.items():
            target = targets.get(record_id)
            if target is None or owner_id(target) in erased:
                summary.unmatched += 1
                continue
            applied = apply_change(
                session,
                integration,
                inbound.object,
                target,
                wanted_values(inbound, target, change.values),
                change.modified_at,
                change.remote_id,
                versions,
            )
            if not applied.diff:
                summary.unchanged += 1
                continue
            if applied.diff.get("marketing_consent") is False:
                summary.withdrawn_marketing.append(record_id)
            summary.applied += 1
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
