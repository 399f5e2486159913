"""Delivery states: create, claim (lease), renew, settle, replay and cancel the (event, destination) pairs.

Every event has one `Delivery` row per destination it asks for. A worker leases ready rows atomically, so
no delivery is ever held by two workers and no two deliveries of one person to one destination are in
flight at once; a crashed worker's leases expire and the rows are ready again. PostgreSQL serialises
claims with a transaction-scoped advisory lock and skips rows locked by others (`FOR UPDATE SKIP LOCKED`);
SQLite has one writer, and a claim is one `UPDATE … RETURNING` statement.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session, aliased

from ennu.db import session_scope
from ennu.erasure import ERASURE_EVENT, not_erased
from ennu.models import (
    OPEN_DELIVERY,
    Delivery,
    DeliveryStatus,
    EventStatus,
    OutboxEvent,
    SyncStatus,
    as_utc,
    table_of,
    utcnow,
)
from ennu.settings import get_settings

logger = logging.getLogger(__name__)
DELIVERY_TABLE = table_of(Delivery)

BULK_PRIORITY = 10  # deliveries of a bulk sync are queued at their integration's priority + 10
CLAIM_LOCK_KEY = 72_611_009  # pg_advisory_xact_lock key of the claim section
OPEN = [s.value for s in OPEN_DELIVERY]
IN_CHUNK = 500

# How an outcome at a destination settles its delivery.
SETTLED_AS: dict[SyncStatus, DeliveryStatus] = {
    SyncStatus.CREATED: DeliveryStatus.DELIVERED,
    SyncStatus.UPDATED: DeliveryStatus.DELIVERED,
    SyncStatus.UNCHANGED: DeliveryStatus.DELIVERED,
    SyncStatus.ERASED: DeliveryStatus.DELIVERED,
    SyncStatus.REJECTED: DeliveryStatus.REJECTED,
    SyncStatus.FAILED: DeliveryStatus.FAILED,
    SyncStatus.SKIPPED: DeliveryStatus.SKIPPED,
}


@dataclass(frozen=True)
class Held:
    """A delivery this worker holds: what it was before the lease (an `unknown` one is reconciled first)."""

    id: int
    event_id: str
    integration: str
    status: str
    attempts: int
    last_attempt_at: datetime | None


@dataclass(frozen=True)
class Claim:
    event_type: str
    held: list[Held]

    @property
    def event_ids(self) -> list[str]:
        return list(dict.fromkeys(h.event_id for h in self.held))


@dataclass(frozen=True)
class Settlement:
    """The outcome of one delivery. `not_before` on a deferral: a wait by design that costs no attempt."""

    event_id: str
    integration: str
    status: SyncStatus
    error: str | None = None
    not_before: datetime | None = None


PROCESS_OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
_owner: ContextVar[str | None] = ContextVar("ennu_delivery_owner", default=None)
# A worker's batch is exactly what its claim leased: `take` leases nothing more (a destination the claim
# left for later stays for a later batch).
_claimed: ContextVar[bool] = ContextVar("ennu_delivery_claimed", default=False)


def current_owner() -> str:
    """Who holds leases in this context: the worker's batch, else this process."""
    return _owner.get() or PROCESS_OWNER


@contextmanager
def owned_by(owner: str, *, claimed: bool = False) -> Iterator[None]:
    """Leases in this block are `owner`'s; `claimed`: the owner's claim is the whole batch (`take`)."""
    token, claimed_token = _owner.set(owner), _claimed.set(claimed)
    try:
        yield
    finally:
        _claimed.reset(claimed_token)
        _owner.reset(token)


@contextmanager
def keep_leased(owner: str) -> Iterator[None]:
    """Renew the owner's leases in the background while the block runs (a batch can outlast a lease)."""
    stop = threading.Event()
    interval = get_settings().lease_seconds / 3

    def renewing() -> None:
        while not stop.wait(interval):
            try:
                renew(owner)
            except Exception:  # a missed renewal is retried at the next interval
                logger.warning("could not renew the leases of %s", owner, exc_info=True)

    thread = threading.Thread(target=renewing, name="lease-renewal", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --------------------------------------------------------------------------- creating


def create(session: Session, rows: Iterable[tuple[str, str, int | None, str, int]]) -> int:
    """Insert (event id, event type, user id, integration, priority) rows; the caller marks events routed."""
    values = [
        {
            "event_id": event_id,
            "event_type": event_type,
            "user_id": user_id,
            "integration": integration,
            "priority": priority,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "created_at": utcnow(),
        }
        for event_id, event_type, user_id, integration, priority in rows
    ]
    for part in chunks(values):
        session.execute(insert(DELIVERY_TABLE), list(part))
    return len(values)


def create_for(session: Session, event_ids: Sequence[str], integration: str, priority: int) -> None:
    """Insert a pending delivery to `integration` for each of the events `event_ids` (already written), by
    the database from the events' own rows (`INSERT … SELECT`): a bulk run's thousands at once."""
    columns = {
        "event_id": OutboxEvent.id,
        "event_type": OutboxEvent.type,
        "user_id": OutboxEvent.subject,
        "integration": literal(integration),
        "priority": literal(priority),
        "status": literal(DeliveryStatus.PENDING.value),
        "attempts": literal(0),
        "created_at": literal(utcnow(), Delivery.created_at.type),
    }
    for part in chunks(event_ids):
        rows = select(*columns.values()).where(OutboxEvent.id.in_(part))
        session.execute(insert(DELIVERY_TABLE).from_select(list(columns), rows))


# --------------------------------------------------------------------------- claiming


def _ready(now: datetime) -> ColumnElement[bool]:
    return and_(
        Delivery.status.in_(OPEN),
        or_(Delivery.not_before.is_(None), Delivery.not_before <= now),
        or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at <= now),
        _may_send(),
    )


def _may_send() -> ColumnElement[bool]:
    """Never a delivery of an erased person (routed just before their erasure), except the erasure's own."""
    return or_(Delivery.event_type == ERASURE_EVENT, Delivery.user_id.is_(None), not_erased(Delivery.user_id))


def _person_free(now: datetime) -> ColumnElement[bool]:
    """No other delivery of the same person to the same destination is leased right now."""
    other = aliased(Delivery)
    return ~exists().where(
        other.user_id == Delivery.user_id,
        other.integration == Delivery.integration,
        other.id != Delivery.id,
        other.lease_expires_at > now,
        other.status.in_(OPEN),
    )


def _lock_claims(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK_KEY)))


def _lease(session: Session, ids_query: Any, owner: str, now: datetime) -> list[Held]:
    expires = now + timedelta(seconds=get_settings().lease_seconds)
    if session.get_bind().dialect.name == "postgresql":
        ids_query = ids_query.with_for_update(skip_locked=True)
    # The lease leaves `status` as it was, so the holder knows an `unknown` one is to be reconciled first.
    rows = session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids_query))
        .values(lease_owner=owner, lease_expires_at=expires)
        .returning(
            Delivery.id,
            Delivery.event_id,
            Delivery.integration,
            Delivery.status,
            Delivery.attempts,
            Delivery.last_attempt_at,
        )
        .execution_options(synchronize_session=False)  # no session object to bring up to date: rows only
    ).all()
    return [Held(r[0], r[1], r[2], r[3], r[4], as_utc(r[5])) for r in sorted(rows, key=lambda r: r[0])]


def busy_integrations(owner_prefix: str, at_least: int) -> list[str]:
    """Destinations that at least `at_least` batches of owners named `owner_prefix…` (one worker's)
    hold unsettled deliveries for right now."""
    now = utcnow()
    with session_scope() as session:
        rows = session.execute(
            select(Delivery.integration)
            .where(
                Delivery.lease_owner.startswith(owner_prefix, autoescape=True),
                Delivery.lease_expires_at > now,
                Delivery.status.in_(OPEN),
            )
            .group_by(Delivery.integration)
            .having(func.count(func.distinct(Delivery.lease_owner)) >= at_least)
        ).scalars()
        return sorted(rows)


def claim(
    owner: str,
    max_events: int,
    *,
    event_type: str | None = None,
    bulk_max_events: int | None = None,
    leave: Sequence[str] = (),
) -> Claim | None:
    """Lease the ready deliveries of up to `max_events` events of one type: the most urgent type first.

    When the most urgent due work is a bulk sync's (it queues behind every live event), the batch may
    take up to `bulk_max_events` events. Deliveries to the destinations in `leave` stay for a later claim
    (the worker's batches in flight are still pushing to them: a later batch carries more of them at once).
    """
    now = utcnow()
    with session_scope() as session:
        _lock_claims(session)
        ready = and_(_ready(now), _person_free(now))
        if leave:
            ready = and_(ready, Delivery.integration.not_in(list(leave)))
        query = select(Delivery.event_type, Delivery.priority).where(ready)
        if event_type is not None:
            query = query.where(Delivery.event_type == event_type)
        first = session.execute(query.order_by(Delivery.priority, Delivery.id).limit(1)).first()
        if first is None:
            return None
        chosen, priority = first
        if bulk_max_events is not None and priority >= BULK_PRIORITY:
            max_events = bulk_max_events
        of_type = and_(ready, Delivery.event_type == chosen)
        events = (
            select(Delivery.event_id)
            .where(of_type)
            .group_by(Delivery.event_id)
            .order_by(func.min(Delivery.priority), func.min(Delivery.id))
            .limit(max_events)
        )
        held = _lease(session, select(Delivery.id).where(of_type, Delivery.event_id.in_(events)), owner, now)
    return Claim(chosen, held) if held else None


def _not_by_index(column: Any) -> Any:
    """The column as an expression no index can look up (`status || ''`), so the planner finds the rows
    by the other condition's index (the events'): SQLite, without statistics, chose the status index for
    a batch's `event_id IN (…) AND status IN (…)` and walked every open delivery of the backlog (30,000
    of them: 10 ms a statement where the events' index takes 1)."""
    return column.concat("")


def take(owner: str, event_ids: Sequence[str], integrations: Sequence[str] | None = None) -> list[Held]:
    """The deliveries of these events this owner holds, leasing the ready ones (a flow run's own batch);
    within `owned_by(owner, claimed=True)` only those the owner's claim holds."""
    now = utcnow()
    held: list[Held] = []
    owned = and_(Delivery.lease_owner == owner, Delivery.lease_expires_at > now)
    with session_scope() as session:
        if not _claimed.get():  # leasing more races the claims; renewing one's own does not
            _lock_claims(session)
        for part in chunks(list(dict.fromkeys(event_ids))):
            mine = and_(
                Delivery.event_id.in_(part),
                _not_by_index(Delivery.status).in_(OPEN),
                owned if _claimed.get() else or_(and_(_ready(now), _person_free(now)), owned),
            )
            if integrations is not None:
                mine = and_(mine, Delivery.integration.in_(list(integrations)))
            held += _lease(session, select(Delivery.id).where(mine), owner, now)
    return held


def renew(owner: str) -> int:
    """Extend every lease this owner holds (the worker does this while a batch runs)."""
    now = utcnow()
    with session_scope() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.lease_owner == owner, Delivery.lease_expires_at > now, Delivery.status.in_(OPEN))
            .values(lease_expires_at=now + timedelta(seconds=get_settings().lease_seconds))
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def release(owner: str, event_ids: Sequence[str] | None = None) -> int:
    """Give leases back unsettled (nothing was sent: e.g. the Prefect API was down before the push)."""
    with session_scope() as session:
        query = update(Delivery).where(Delivery.lease_owner == owner, Delivery.status.in_(OPEN))
        if event_ids is not None:
            query = query.where(Delivery.event_id.in_(list(event_ids)))
        result = session.execute(
            query.values(lease_expires_at=None).execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def mark_sending(owner: str, pairs: Sequence[tuple[str, str]]) -> None:
    """Before a send to a vendor without idempotency keys: a crash from here on leaves the delivery
    `unknown`, so it is looked up at the vendor before it is ever sent again."""
    now = utcnow()
    params = [{"_event": e, "_integration": i} for e, i in pairs]
    if not params:
        return
    table = DELIVERY_TABLE
    with session_scope() as session:
        session.execute(
            update(table)
            .where(
                table.c.event_id == bindparam("_event"),
                table.c.integration == bindparam("_integration"),
                table.c.lease_owner == owner,
            )
            .values(
                status=DeliveryStatus.UNKNOWN.value,
                last_attempt_at=now,
                not_before=now + timedelta(seconds=get_settings().reconcile_delay_seconds),
            ),
            params,
        )


def marked(owner: str, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (event, integration) deliveries this owner marked with `mark_sending`."""
    wanted = set(pairs)
    if not wanted:
        return set()
    found: set[tuple[str, str]] = set()
    with session_scope() as session:
        for part in chunks(sorted({e for e, _ in wanted})):
            rows = session.execute(
                select(Delivery.event_id, Delivery.integration).where(
                    Delivery.event_id.in_(part),
                    Delivery.lease_owner == owner,
                    Delivery.status == DeliveryStatus.UNKNOWN.value,
                )
            )
            found.update((str(e), str(i)) for e, i in rows if (str(e), str(i)) in wanted)
    return found


# --------------------------------------------------------------------------- settling


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: base · 3^(n-1), ±25 % jitter."""
    base = get_settings().delivery_retry_base_seconds * 3 ** max(0, attempts - 1)
    return timedelta(seconds=base * random.uniform(0.75, 1.25))


def _next_state(held: Held, s: Settlement, now: datetime, max_attempts: int) -> dict[str, Any]:
    values: dict[str, Any] = {"_lease_expires_at": None, "_error": s.error}
    attempts = held.attempts
    if s.status in SETTLED_AS:
        status, not_before, settled = SETTLED_AS[s.status], None, now
    elif s.status == SyncStatus.UNKNOWN:
        attempts += 1
        if attempts >= max_attempts + 1:  # never re-sent blindly: an operator looks at it
            status, not_before, settled = DeliveryStatus.FAILED, None, now
            values["_error"] = f"ambiguous send not confirmed after {attempts} tries: {s.error or ''}"[:500]
        else:
            status, settled = DeliveryStatus.UNKNOWN, None
            not_before = now + timedelta(seconds=get_settings().reconcile_delay_seconds)
    elif s.status == SyncStatus.DEFERRED and s.not_before is not None:
        status, not_before, settled = DeliveryStatus.DEFERRED, s.not_before, None
    else:  # deferred by vendor trouble: an attempt spent
        attempts += 1
        if attempts >= max_attempts:
            status, not_before, settled = DeliveryStatus.FAILED, None, now
            values["_error"] = f"gave up after {attempts} attempts: {s.error or 'no reason'}"[:500]
        else:
            status, not_before, settled = DeliveryStatus.DEFERRED, now + retry_delay(attempts), None
    values.update(
        _id=held.id,
        _status=status.value,
        _attempts=attempts,
        _not_before=not_before,
        _settled_at=settled,
        _last_attempt_at=now if s.status not in (SyncStatus.SKIPPED, SyncStatus.REJECTED) else None,
    )
    return values


def held_by_pair(held: Iterable[Held]) -> dict[tuple[str, str], Held]:
    """Held deliveries by (event id, integration): what `settle` looks settlements up in."""
    return {(h.event_id, h.integration): h for h in held}


def settle(
    owner: str,
    held: Sequence[Held] | Mapping[tuple[str, str], Held],
    settlements: Sequence[Settlement],
    *,
    session: Session | None = None,
) -> dict[tuple[str, str], tuple[str, str | None]]:
    """Write the outcomes of held deliveries (only while this owner still holds them).

    `held` may come as `held_by_pair(...)` already (a batch settling in many writes builds it once).
    Returns each settled pair's new (status, reason): a deferral that ran out of attempts comes back
    `failed`. Pass `session` to write in the caller's transaction (then call `finish_events` after it).
    """
    now = utcnow()
    max_attempts = get_settings().delivery_max_attempts
    by_pair = held if isinstance(held, Mapping) else held_by_pair(held)
    params = []
    results: dict[tuple[str, str], tuple[str, str | None]] = {}
    for s in settlements:
        h = by_pair.get((s.event_id, s.integration))
        if h is not None:
            values = _next_state(h, s, now, max_attempts)
            params.append(values)
            results[(s.event_id, s.integration)] = (values["_status"], values["_error"])
    if not params:
        return results
    statements = _settling_statements(owner, params)
    if session is not None:
        for statement, values in statements:
            session.execute(statement, values)
        return results
    with session_scope() as own:
        for statement, values in statements:
            own.execute(statement, values)
    finish_events({s.event_id for s in settlements})
    return results


def _settling_statements(owner: str, params: Sequence[dict[str, Any]]) -> list[tuple[Any, dict[str, Any]]]:
    """The updates that write these new states: one statement for every IN_CHUNK deliveries that end up
    alike (a batch's delivered ones share every value but their id), not one row's parameters each."""
    alike: dict[tuple[Any, ...], list[int]] = {}
    for values in params:
        same = tuple(values[name] for name in _SETTLED_VALUES)
        alike.setdefault(same, []).append(values["_id"])
    table = DELIVERY_TABLE
    statement = (
        update(table)
        .where(table.c.id.in_(bindparam("_ids", expanding=True)), table.c.lease_owner == owner)
        .values(
            status=bindparam("_status"),
            attempts=bindparam("_attempts"),
            not_before=bindparam("_not_before"),
            settled_at=bindparam("_settled_at"),
            last_error=bindparam("_error"),
            lease_expires_at=bindparam("_lease_expires_at"),
            last_attempt_at=func.coalesce(bindparam("_last_attempt_at"), table.c.last_attempt_at),
        )
    )
    return [
        (statement, {**dict(zip(_SETTLED_VALUES, same, strict=True)), "_ids": list(part)})
        for same, ids in alike.items()
        for part in chunks(ids)
    ]


_SETTLED_VALUES = (
    "_status",
    "_attempts",
    "_not_before",
    "_settled_at",
    "_error",
    "_lease_expires_at",
    "_last_attempt_at",
)


def finish_events(event_ids: Iterable[str], *, session: Session | None = None) -> int:
    """Events whose every delivery is settled become `done`; one with open deliveries stays `pending`.

    Pass `session` only where the settling transaction is the one writer (SQLite): on PostgreSQL two
    transactions settling an event's last two deliveries would each still see the other's open, so there
    it runs after the settling commit.
    """
    if session is None:
        with session_scope() as own:
            return finish_events(event_ids, session=own)
    ids = sorted(set(event_ids))
    now = utcnow()
    done = 0
    open_delivery = exists().where(Delivery.event_id == OutboxEvent.id, Delivery.status.in_(OPEN))
    for part in chunks(ids):
        result = session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(part), OutboxEvent.status != EventStatus.DONE.value, ~open_delivery)
            .values(status=EventStatus.DONE.value, processed_at=now, attempts=OutboxEvent.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        done += int(getattr(result, "rowcount", 0) or 0)
    return done


# --------------------------------------------------------------------------- operators


def reopen(
    *,
    statuses: Sequence[str] = (DeliveryStatus.FAILED.value,),
    integration: str | None = None,
    event_ids: Sequence[str] | None = None,
    integrations: Sequence[str] | None = None,
) -> int:
    """Replay: matching settled deliveries are pending again with their attempts reset; returns how many.

    An erased person's deliveries are never replayed (their erasure's own may be).
    """
    with session_scope() as session:
        query = update(Delivery).where(Delivery.status.in_(list(statuses)), _may_send())
        if integration is not None:
            query = query.where(Delivery.integration == integration)
        if integrations is not None:
            query = query.where(Delivery.integration.in_(list(integrations)))
        if event_ids is not None:
            query = query.where(Delivery.event_id.in_(list(event_ids)))
        result = session.execute(
            query.values(
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                not_before=None,
                settled_at=None,
                lease_owner=None,
                lease_expires_at=None,
            ).execution_options(synchronize_session=False)
        )
        count = int(getattr(result, "rowcount", 0) or 0)
        reopened = select(Delivery.event_id).where(Delivery.status == DeliveryStatus.PENDING.value)
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(reopened), OutboxEvent.status == EventStatus.DONE.value)
            .values(status=EventStatus.PENDING.value)
            .execution_options(synchronize_session=False)
        )
    return count


def cancel_person(user_id: int, reason: str, *, except_event: str | None = None) -> int:
    """Cancel the person's open deliveries that no worker holds now (an erasure does this first, and last).

    Erasures' own deliveries are never cancelled: a destination still owing one keeps it.
    """
    now = utcnow()
    with session_scope() as session:
        query = update(Delivery).where(
            Delivery.user_id == user_id,
            Delivery.status.in_(OPEN),
            Delivery.event_type != ERASURE_EVENT,
            or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at <= now),
        )
        if except_event is not None:
            query = query.where(Delivery.event_id != except_event)
        result = session.execute(
            query.values(
                status=DeliveryStatus.CANCELLED.value,
                last_error=reason,
                settled_at=now,
                lease_owner=None,
                lease_expires_at=None,
            ).execution_options(synchronize_session=False)
        )
        count = int(getattr(result, "rowcount", 0) or 0)
    return count


def in_flight_for(user_id: int, *, except_event: str | None = None) -> int:
    """Deliveries of the person a worker holds right now."""
    now = utcnow()
    with session_scope() as session:
        query = select(func.count()).where(
            Delivery.user_id == user_id, Delivery.status.in_(OPEN), Delivery.lease_expires_at > now
        )
        if except_event is not None:
            query = query.where(Delivery.event_id != except_event)
        return int(session.execute(query).scalar_one())


def counts_by_integration() -> dict[str, dict[str, int]]:
    """Open and dead-letter deliveries per integration and state (`leased` while a worker holds one)."""
    now = utcnow()
    leased = and_(Delivery.lease_expires_at > now, Delivery.status.in_(OPEN))
    with session_scope() as session:
        rows = session.execute(
            select(Delivery.integration, Delivery.status, leased.label("leased"), func.count())
            .where(Delivery.status.in_([*OPEN, DeliveryStatus.FAILED.value]))
            .group_by(Delivery.integration, Delivery.status, leased)
        ).all()
    out: dict[str, dict[str, int]] = {}
    for integration, status, is_leased, n in rows:
        key = "leased" if is_leased else status
        per = out.setdefault(integration, {})
        per[key] = per.get(key, 0) + int(n)
    return out


def oldest_open() -> datetime | None:
    """When the oldest delivery still owed was created."""
    with session_scope() as session:
        value = session.execute(
            select(func.min(Delivery.created_at)).where(Delivery.status.in_(OPEN))
        ).scalar()
    return as_utc(value)
