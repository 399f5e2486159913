"""Record: sync-log rows and delivery states as each batch's outcomes come back, and the run's summary."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.context import get_run_context
from sqlalchemy import insert

from ennu import deliveries
from ennu.db import session_scope
from ennu.deliveries import Held, Settlement
from ennu.models import DeliveryStatus, SyncLog, SyncStatus, table_of, utcnow
from tasks.extract import chunks

SUMMARY_COLUMNS = (
    "created",
    "updated",
    "unchanged",
    "rejected",
    "failed",
    "deferred",
    "unknown",
    "skipped",
    "erased",
)
# When one delivery has several outcomes (rows of one event at one destination), the one that still owes
# something wins, then the worst settled one.
PRECEDENCE = (
    SyncStatus.UNKNOWN,
    SyncStatus.DEFERRED,
    SyncStatus.FAILED,
    SyncStatus.REJECTED,
    SyncStatus.CREATED,
    SyncStatus.UPDATED,
    SyncStatus.ERASED,
    SyncStatus.UNCHANGED,
    SyncStatus.SKIPPED,
)
SENT = (SyncStatus.CREATED, SyncStatus.UPDATED, SyncStatus.UNCHANGED)
OWED = (SyncStatus.DEFERRED, SyncStatus.UNKNOWN)  # to be offered again


@dataclass(frozen=True)
class SyncEntry:
    """One outcome of one event's record at one destination, ready for the sync log."""

    connector: str
    object: str
    record_key: str
    event_id: str | None
    user_id: int | None
    status: SyncStatus
    remote_id: str | None = None
    error: str | None = None
    payload_hash: str | None = None
    duration_ms: int | None = None
    not_before: datetime | None = None  # a deferral by design: offered again then, no attempt spent


def current_flow_run_id() -> str | None:
    try:
        context = get_run_context()
    except RuntimeError:
        return None
    run = getattr(context, "flow_run", None) or getattr(
        getattr(context, "task_run", None), "flow_run_id", None
    )
    return str(getattr(run, "id", run)) if run is not None else None


def sync_log_rows(
    entries: Sequence[SyncEntry], flow_run_id: str | None, attempts: dict[tuple[str, str], int] | None = None
) -> list[dict[str, object]]:
    """One row per entry; `attempt` is the delivery's attempt number (1 for the first)."""
    attempts = attempts or {}
    now = utcnow()
    return [
        {
            "event_id": e.event_id,
            "connector": e.connector,
            "object": e.object,
            "record_key": e.record_key,
            "user_id": e.user_id,
            "status": e.status.value,
            "remote_id": e.remote_id,
            "error": e.error,
            "payload_hash": e.payload_hash if e.status in SENT else None,
            "attempt": attempts.get((e.event_id or "", e.connector), 0) + 1,
            "flow_run_id": flow_run_id,
            "duration_ms": e.duration_ms,
            "created_at": now,
        }
        for e in entries
    ]


def write_sync_log(
    entries: Sequence[SyncEntry], flow_run_id: str | None, attempts: dict[tuple[str, str], int] | None = None
) -> None:
    rows = sync_log_rows(entries, flow_run_id, attempts)
    if not rows:
        return
    with session_scope() as session:
        for part in chunks(rows, 1000):
            session.execute(insert(table_of(SyncLog)), list(part))


def as_settled(entry: SyncEntry, results: dict[tuple[str, str], tuple[str, str | None]]) -> SyncEntry:
    """An entry as its delivery ended up: a deferral past the attempt cap is recorded as the failure."""
    status, reason = results.get((entry.event_id or "", entry.connector), (None, None))
    if status == DeliveryStatus.FAILED.value and entry.status in (SyncStatus.DEFERRED, SyncStatus.UNKNOWN):
        return replace(entry, status=SyncStatus.FAILED, error=reason)
    return entry


def settlements(entries: Iterable[SyncEntry]) -> list[Settlement]:
    """One settlement per (event, destination): the entry that owes the most wins."""
    rank = {status: n for n, status in enumerate(PRECEDENCE)}
    chosen: dict[tuple[str, str], SyncEntry] = {}
    for e in entries:
        if e.event_id is None:
            continue
        key = (e.event_id, e.connector)
        if key not in chosen or rank.get(e.status, 99) < rank.get(chosen[key].status, 99):
            chosen[key] = e
    return [
        Settlement(e.event_id or "", e.connector, e.status, e.error, e.not_before) for e in chosen.values()
    ]


class Ledger:
    """What one batch holds, and everything recorded for it so far (thread-safe: batches finish at once)."""

    def __init__(self, owner: str, held: Sequence[Held]) -> None:
        self.owner = owner
        self.held = list(held)
        self.by_pair = deliveries.held_by_pair(self.held)
        self.attempts = {pair: h.attempts for pair, h in self.by_pair.items()}
        self.by_event: dict[str, dict[str, Held]] = {}
        for h in self.held:
            self.by_event.setdefault(h.event_id, {})[h.integration] = h
        self.entries: list[SyncEntry] = []
        self.settled: set[tuple[str, str]] = set()
        self.flow_run_id = current_flow_run_id()
        self._lock = threading.Lock()

    @property
    def event_ids(self) -> list[str]:
        return list(self.by_event)

    def holds(self, event_id: str, integration: str) -> bool:
        return integration in self.by_event.get(event_id, {})

    def held_for(self, integration: str) -> list[Held]:
        return [h for h in self.held if h.integration == integration]

    def events_held_for(self, integration: str) -> set[str]:
        """The events this batch holds a delivery to `integration` for (a frame's rows are kept by it)."""
        return {h.event_id for h in self.held if h.integration == integration}

    def write(self, entries: Sequence[SyncEntry]) -> None:
        """Sync-log rows for these outcomes and the delivery states they settle, committed now."""
        mine = [e for e in entries if e.event_id is None or self.holds(e.event_id, e.connector)]
        if not mine:
            return
        due = settlements(mine)
        # One transaction: the delivery states and the sync log agree even if the process dies here.
        finished = {s.event_id for s in due}
        with session_scope() as session:
            results = deliveries.settle(self.owner, self.by_pair, due, session=session)
            mine = [as_settled(e, results) for e in mine]
            for part in chunks(sync_log_rows(mine, self.flow_run_id, self.attempts), 1000):
                session.execute(insert(table_of(SyncLog)), list(part))
            one_writer = session.get_bind().dialect.name == "sqlite"
            if one_writer:  # this transaction holds SQLite's write lock: it sees every settled delivery
                deliveries.finish_events(finished, session=session)
        if not one_writer:
            deliveries.finish_events(finished)
        with self._lock:
            self.entries += mine
            self.settled.update((s.event_id, s.integration) for s in due)

    def unsettled(self) -> list[Held]:
        with self._lock:
            return [h for h in self.held if (h.event_id, h.integration) not in self.settled]


def summarise(entries: Sequence[SyncEntry]) -> list[dict[str, int | str]]:
    """Per destination: records sent and their outcomes (counts only)."""
    return table_of_counts(count_outcomes(entries))


def count_outcomes(entries: Iterable[SyncEntry]) -> dict[str, Counter[str]]:
    per_destination: dict[str, Counter[str]] = {}
    for entry in entries:
        per_destination.setdefault(f"{entry.connector}/{entry.object}", Counter())[entry.status.value] += 1
    return per_destination


def table_of_counts(per_destination: dict[str, Counter[str]]) -> list[dict[str, int | str]]:
    table: list[dict[str, int | str]] = []
    for destination, counts in sorted(per_destination.items()):
        sent = counts["created"] + counts["updated"] + counts["failed"] + counts["unknown"]
        table.append({"destination": destination, "sent": sent, **{c: counts[c] for c in SUMMARY_COLUMNS}})
    return table


NOT_DELIVERED = (SyncStatus.REJECTED, SyncStatus.FAILED, SyncStatus.DEFERRED, SyncStatus.UNKNOWN)
UNDELIVERED_ROWS = 500  # an artifact is for reading; the sync log has every row


def undelivered(entries: Sequence[SyncEntry], attempts: dict[tuple[str, str], int]) -> list[dict[str, str]]:
    """One row per record that did not arrive: where, which record, why (field and expectation or vendor
    code, never a value), which attempt, and where its sync-log rows are."""
    return [
        {
            "destination": f"{e.connector}/{e.object}",
            "record": e.record_key,
            "status": e.status.value,
            "reason": e.error or "",
            "attempt": str(attempts.get((e.event_id or "", e.connector), 0) + 1),
            "sync log": f"/integrations/data/{e.connector}?record_key={e.record_key}",
        }
        for e in entries
        if e.status in NOT_DELIVERED
    ][:UNDELIVERED_ROWS]


def headline(rows: Sequence[dict[str, str]], destinations: int) -> str:
    """One line: how many destinations did not take how many records, and the commonest reason."""
    if not rows:
        return "every record arrived or was settled"
    by_status = Counter(r["status"] for r in rows)
    where = len({r["destination"] for r in rows})
    reason, _ = Counter(r["reason"] for r in rows).most_common(1)[0]
    counts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    return f"{where} of {destinations} destinations did not take every record ({counts}): {reason}"


class Tally:
    """The outcomes of one run's batches, kept as counts and the first undelivered rows (memory stays flat
    however many batches a bulk sync carries); thread-safe, as its batches finish at once."""

    def __init__(self) -> None:
        self.events = 0
        self.outcomes = 0
        self.open = 0
        self.counts: dict[str, Counter[str]] = {}
        self.undelivered: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def add(self, ledger: Ledger) -> list[dict[str, int | str]]:
        """Count a batch's outcomes in; its own summary table."""
        counts = count_outcomes(ledger.entries)
        attempts = ledger.attempts
        with self._lock:
            self.events += len(ledger.event_ids)
            self.outcomes += len(ledger.entries)
            self.open += sum(1 for e in ledger.entries if e.status in OWED)
            for destination, counted in counts.items():
                self.counts.setdefault(destination, Counter()).update(counted)
            room = UNDELIVERED_ROWS - len(self.undelivered)
            if room > 0:
                self.undelivered += undelivered(ledger.entries, attempts)[:room]
        return table_of_counts(counts)

    def summary(self) -> list[dict[str, int | str]]:
        with self._lock:
            return table_of_counts(self.counts)


def record(tally: Tally, artifact_title: str) -> list[dict[str, int | str]]:
    """Attach the summary and, when a record did not arrive, why (every outcome is already recorded), to the
    flow run: a plain call, not a task (a task run costs the Prefect server more than this does)."""
    table = tally.summary()
    create_table_artifact(
        key="sync-summary",
        table=table,
        description=f"{artifact_title}: {tally.events} events, outcomes per destination (counts only)",
    )
    if tally.undelivered:
        create_table_artifact(
            key="undelivered",
            table=tally.undelivered,
            description=f"{artifact_title}: {headline(tally.undelivered, len(table))}",
        )
    get_run_logger().info(
        "recorded %d outcomes for %d events (%d to be offered again)",
        tally.outcomes,
        tally.events,
        tally.open,
    )
    return table
