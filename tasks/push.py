"""Push: send valid records to a connector in vendor-sized batches, idempotently, behind the breaker."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from sqlalchemy import select

from connectors.base import Connector, Outcome, Record, sends_marked_by
from connectors.endpoint import NotConfigured
from connectors.http import AuthError, PermanentError, RetryableError
from connectors.rate_limit import take_ahead
from connectors.registry import CONNECTORS, build_connector
from ennu import circuit, deliveries
from ennu.db import session_scope
from ennu.models import SyncLog, SyncStatus
from ennu.secrets import SecretUnavailable, blocks_in_use
from ennu.settings import Settings, get_settings
from tasks.extract import chunks

META_COLUMNS = ("_record_key", "_event_id", "_user_id")
DELIVERED = (SyncStatus.CREATED, SyncStatus.UPDATED, SyncStatus.UNCHANGED)

_connectors: dict[str, tuple[Settings, Connector, float]] = {}  # (settings, connector, built at)
_connectors_lock = threading.Lock()


def connector_for(name: str, settings: Settings | None = None) -> Connector:
    """One connector (one pooled HTTP session) per integration per process, rebuilt when settings change.

    The cache holds the settings object itself and compares identity: an id() could be reused by a new
    object after the old one is gone, and hand back a connector configured for the old settings.

    Raises `NotConfigured` (`NoCredentials` in production without credentials), and a `RetryableError`
    "credentials unreadable" when a credential's Secret block could not be read: retried later, never
    built without it.
    """
    settings = settings or get_settings()
    now = time.monotonic()
    with _connectors_lock:
        cached = _connectors.get(name)
        # Credentials from Secret blocks are read again after ENNU_SECRET_CACHE_SECONDS: a rotated one
        # reaches the connector too (its pool is rebuilt then, at most every minute).
        fresh = cached is not None and (
            not blocks_in_use() or now - cached[2] < max(settings.secret_cache_seconds, 60.0)
        )
        if cached is not None and cached[0] is settings and fresh:
            return cached[1]
        if cached is not None:
            cached[1].close()
        try:
            connector = build_connector(name, settings)
        except SecretUnavailable as exc:
            raise RetryableError(name, exc.reason, now=False) from None
        from tasks.host_biomarkers import provide_host_data  # late: it maps the host's rows with this module

        provide_host_data(connector, settings)
        _connectors[name] = (settings, connector, now)
        return connector


def payload_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _clean(value: Any) -> Any:
    if type(value) is str:  # most fields: no NaN check, no numpy unboxing
        return value
    if value is None or (not isinstance(value, list | dict | str) and pd.isna(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars → plain Python for JSON bodies
        return value.item()
    return value


def to_records(mapped: pd.DataFrame) -> list[Record]:
    """One `Record` per mapped row; only the mapping's destination fields go into `fields`."""
    destination = [c for c in mapped.columns if c not in META_COLUMNS]
    # Column by column (a list each, cleaned once), then zipped into rows: a dict per row from
    # `to_dict("records")` and a clean per cell cost more than the rest of building the records.
    values = [[_clean(v) for v in mapped[c].tolist()] for c in destination]
    keys, events, users = (mapped[c].tolist() for c in META_COLUMNS)
    rows = zip(*values, strict=True) if values else iter([()] * len(keys))
    return [
        Record(
            record_key=str(key),
            event_id=None if _clean(event) is None else str(event),
            user_id=None if _clean(user) is None else int(user),
            fields=dict(zip(destination, row, strict=True)),
        )
        for key, event, user, row in zip(keys, events, users, rows, strict=True)
    ]


def last_delivered_hashes(
    connector: str, object_name: str, record_keys: Sequence[str]
) -> dict[str, str | None]:
    """The payload hash of the latest delivered version of each record at this destination."""
    found: dict[str, str | None] = {}
    with session_scope() as session:
        for part in chunks(sorted(set(record_keys))):
            rows = session.execute(
                select(SyncLog.record_key, SyncLog.payload_hash)
                .where(
                    SyncLog.connector == connector,
                    SyncLog.object == object_name,
                    SyncLog.record_key.in_(part),
                    SyncLog.status.in_([s.value for s in DELIVERED]),
                )
                .order_by(SyncLog.id)
            ).all()
            found.update({key: digest for key, digest in rows})  # later rows win
    return found


@dataclass
class PushPlan:
    """What to send, in batches, and what needs no request at all."""

    batches: list[list[Record]] = field(default_factory=list)
    settled: list[Outcome] = field(default_factory=list)  # unchanged or duplicate, decided without HTTP
    hashes: dict[str, str] = field(default_factory=dict)  # record key -> payload hash


def plan_push(
    connector: str,
    object_name: str,
    upsert_key: str,
    records: Sequence[Record],
    batch_size: int,
    *,
    force: bool = False,
) -> PushPlan:
    """Deduplicate, skip what the destination already has, and cut vendor-sized batches.

    Several rows of one record (two events of one person in one run) send the last; two records that
    share a destination key (two people with one e-mail) cannot both be upserted: the later is rejected.
    """
    plan = PushPlan()
    latest = {r.record_key: r for r in records}
    by_destination_key: dict[str, Record] = {}
    for record in latest.values():
        key = str(record.fields.get(upsert_key)).strip().lower()
        if key in by_destination_key:
            plan.settled.append(
                Outcome(
                    record.record_key, SyncStatus.REJECTED, error=f"another record has the same {upsert_key}"
                )
            )
            continue
        by_destination_key[key] = record
    unique = list(by_destination_key.values())
    plan.hashes = {r.record_key: payload_hash(r.fields) for r in unique}
    delivered = {} if force else last_delivered_hashes(connector, object_name, [r.record_key for r in unique])
    to_send = []
    for record in unique:
        if delivered.get(record.record_key) == plan.hashes[record.record_key]:
            plan.settled.append(Outcome(record.record_key, SyncStatus.UNCHANGED))
        else:
            to_send.append(record)
    group_field = CONNECTORS[connector].batch_group_field if connector in CONNECTORS else None
    if group_field is not None:  # one person side by side: fewer requests where a request is per person
        to_send.sort(key=lambda r: str(r.fields.get(group_field)))
    plan.batches = [list(part) for part in chunks(to_send, batch_size)]
    return plan


def vendor_trouble(outcome: Outcome) -> bool:
    """An outcome that says the vendor, not the record, is in trouble: a lost answer or a retryable error."""
    return outcome.status == SyncStatus.UNKNOWN or (
        outcome.status == SyncStatus.DEFERRED and outcome.not_before is None
    )


def _all(records: Sequence[Record], status: SyncStatus, error: str) -> list[Outcome]:
    return [Outcome(r.record_key, status, error=error) for r in records]


def take_slots_ahead(names: Sequence[str]) -> None:
    """Before a batch's pushes: the first slots of every destination's rate limit in one Prefect round trip
    (`connectors.rate_limit.take_ahead`), instead of one per destination, each push waiting on its own."""
    limits = []
    for name in names:
        try:
            http = getattr(connector_for(name), "http", None)
        except (NotConfigured, RetryableError):  # its push reports why the connector cannot be built
            continue
        if http is not None and http.rate_limit is not None:
            limits.append(http.rate_limit)
    take_ahead(limits)


def send_marker(connector: Connector) -> Callable[[Sequence[Record]], None] | None:
    """For a "resend_unless_orphaned" connector: each request's deliveries become `unknown` just before it
    leaves, so a worker that dies with the request in flight never has it sent again."""
    if connector.ambiguous_sends != "resend_unless_orphaned":
        return None
    owner, name = deliveries.current_owner(), connector.name

    def mark(records: Sequence[Record]) -> None:
        deliveries.mark_sending(owner, [(str(r.event_id), name) for r in records if r.event_id is not None])

    return mark


BatchReport = Callable[[int, list[Outcome] | Exception], None]


@task(
    name="push",
    task_run_name="push {connector_name}/{object_name}",
    cache_policy=NONE,
)
def push_batches(
    connector_name: str, object_name: str, upsert_key: str, batches: list[list[Record]], report: BatchReport
) -> int:
    """Send these vendor batches one after the other, each one's outcomes (or the error it raised) handed
    to `report(index, ...)` the moment it is back, so they are recorded while the next is at the vendor.
    Several batches a task: a Prefect task run (its states, events and log lines) cost as much CPU as a
    batch's own work. Every batch is tried; the task then raises the first batch's error (it shows
    Failed), or returns the records pushed."""
    logger = get_run_logger()
    counts: Counter[str] = Counter()
    first: Exception | None = None
    for index, records in enumerate(batches):
        try:
            outcomes = push_one(logger, connector_name, object_name, upsert_key, records)
        except Exception as exc:  # this batch's outcome: the others go on, as separate tasks would
            report(index, exc)
            first = first or exc
            continue
        report(index, outcomes)
        counts.update(o.status.value for o in outcomes)
    pushed = sum(len(b) for b in batches)
    logger.info(
        "%s/%s: %d records in %d batches pushed: %s",
        connector_name,
        object_name,
        pushed,
        len(batches),
        dict(counts.most_common()),
    )
    if first is not None:
        raise first
    return pushed


def push_one(
    logger: Any, connector_name: str, object_name: str, upsert_key: str, records: list[Record]
) -> list[Outcome]:
    """Send one batch. The client retries each request where that is safe (`connectors.http.VendorHttp`);
    vendor trouble that outlasts those retries raises, and the delivery engine offers the batch again
    later (or looks it up first where a send may have arrived): never a Prefect retry of the whole batch,
    which would repeat the requests that did succeed."""
    state = circuit.current_state(connector_name)
    if state.open:
        logger.warning("%s: circuit open, %d records deferred to its probe", connector_name, len(records))
        return [
            Outcome(r.record_key, SyncStatus.DEFERRED, error="circuit open", not_before=state.opened_until)
            for r in records
        ]
    try:
        connector = connector_for(connector_name)
    except NotConfigured as exc:  # production without credentials (or half configured): never sent
        logger.error("%s: %s; %d records not sent", connector_name, exc.reason, len(records))
        return _all(records, SyncStatus.FAILED, exc.reason)
    except RetryableError as exc:  # a credential could not be read: nothing sent, the deliveries stay owed
        logger.warning("%s: %s; %d records offered again later", connector_name, exc.reason, len(records))
        return _all(records, SyncStatus.DEFERRED, exc.reason)
    started = time.monotonic()
    try:
        with sends_marked_by(send_marker(connector)):
            outcomes = connector.push(object_name, upsert_key, records)
    except RetryableError as exc:
        if circuit.record_failure(connector_name, exc.reason):
            logger.error("%s: circuit opened after repeated failures (%s)", connector_name, exc.reason)
        raise
    except AuthError as exc:
        circuit.record_failure(connector_name, exc.reason)
        logger.error(
            "%s: credentials refused (%s); %d records deferred", connector_name, exc.reason, len(records)
        )
        return _all(records, SyncStatus.DEFERRED, exc.reason)
    except PermanentError as exc:
        circuit.record_success(connector_name)
        logger.error("%s: batch refused (%s)", connector_name, exc.reason)
        return _all(records, SyncStatus.FAILED, exc.reason)
    trouble = next((o for o in outcomes if vendor_trouble(o)), None)
    if trouble is None:
        circuit.record_success(connector_name)
    elif circuit.record_failure(connector_name, trouble.error or trouble.status.value):
        # A connector that returns per-record outcomes (Twilio) reports vendor trouble without raising.
        logger.error("%s: circuit opened after repeated failures (%s)", connector_name, trouble.error)
    elapsed = int((time.monotonic() - started) * 1000)
    return [replace(o, duration_ms=elapsed) for o in outcomes]


@task(name="reconcile", cache_policy=NONE)
def reconcile(
    connector_name: str, object_name: str, records: list[Record], since: datetime
) -> dict[str, Outcome]:
    """Look up at the vendor the records whose last send lost its answer; those found are settled."""
    found = connector_for(connector_name).reconcile(object_name, records, since)
    get_run_logger().info(
        "%s/%s: %d of %d ambiguous sends found at the vendor",
        connector_name,
        object_name,
        len(found),
        len(records),
    )
    return found
