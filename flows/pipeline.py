"""The path of one batch of events: take → extract → route → map → validate → push → record.

The batch works only on the deliveries it holds (leased in the delivery engine): a destination whose
delivery of an event is settled, or held by another worker, is not sent that event. Each pushed batch's
outcomes are recorded the moment they come back, so a crash loses no record of what a vendor accepted.
"""

from __future__ import annotations

import concurrent.futures
import math
import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar, cast

import pandas as pd
from prefect import get_run_logger
from prefect.futures import PrefectConcurrentFuture, PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from connectors.base import Outcome, Record
from connectors.http import ConnectorError
from connectors.rate_limit import expect_requests
from connectors.registry import CONNECTORS
from ennu import circuit, deliveries
from ennu.models import DeliveryStatus, SyncStatus, utcnow
from tasks.admit import admit
from tasks.batch_phase import pushes_under_way
from tasks.extract import Extracted
from tasks.prepare import prepare
from tasks.push import BatchReport, plan_push, push_batches, reconcile, take_slots_ahead, to_records
from tasks.record import Ledger, SyncEntry, Tally, record
from tasks.route import Route
from tasks.validate import ValidationResult

SummaryTable = list[dict[str, int | str]]
NO_OUTCOME = "no outcome recorded"
# A "resend_unless_orphaned" destination's send orphaned by its worker (it died or stopped with the request
# in flight): failed, never sent again by itself.
NOT_SENT_TWICE = "its worker stopped with the send in flight; not sent again: replay to send it anyway"
# What a forced re-run sends again; a skipped (no consent) or cancelled (erased) delivery never.
RESENDABLE = (DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value, DeliveryStatus.REJECTED.value)

# Batches of several destinations go out concurrently, every destination of a batch at once (a lone event
# goes to up to 8), so none waits past its rate-limit slots taken ahead; vendors cap concurrent connections
# (Mailchimp: 10).
PUSH_THREADS = 8
PUSH_RUNNER: TaskRunner[Any] = ThreadPoolTaskRunner(max_workers=PUSH_THREADS)
BATCHES_PER_PUSH = 10  # vendor batches one push task carries, at most
T = TypeVar("T")


def as_is(value: T) -> T:
    """A task argument Prefect hands over without walking it for futures (Prefect's `quote`): walking a
    batch's frames, mappings and records costs more than the stage itself for a small batch."""
    return cast(T, quote(value))


def unusable_event_entries(extracted: Extracted, ledger: Ledger) -> list[SyncEntry]:
    """Events whose user or resource is gone: each held delivery is rejected, so nobody wonders why."""
    return [
        event_entry(held, SyncStatus.REJECTED, reason)
        for event_id, reason in extracted.missing.items()
        for held in ledger.by_event.get(event_id, {}).values()
    ]


def _rows(r: Route, frame: pd.DataFrame, status: SyncStatus, error: str) -> list[SyncEntry]:
    record_ids = frame[f"{r.mapping.record}.id"]
    return [
        SyncEntry(
            r.connector,
            r.mapping.object,
            f"{r.mapping.record}:{rid}",
            str(eid),
            int(uid),
            status,
            error=error,
        )
        for rid, eid, uid in zip(record_ids, frame["event.id"], frame["user.id"], strict=True)
    ]


def withheld_entries(r: Route) -> list[SyncEntry]:
    """People without consent, and rows the route's filter leaves out: settled, never sent."""
    entries = _rows(r, r.refused, SyncStatus.SKIPPED, f"no consent for {r.connector}")
    if r.filtered is not None and len(r.filtered):
        entries += _rows(r, r.filtered, SyncStatus.SKIPPED, f"not selected by {r.where}")
    return entries


def rejected_entries(r: Route, checked: ValidationResult) -> list[SyncEntry]:
    return [
        SyncEntry(
            r.connector,
            r.mapping.object,
            rej.record_key,
            rej.event_id,
            rej.user_id,
            SyncStatus.REJECTED,
            error="; ".join(rej.failed),
        )
        for rej in checked.rejected
    ]


def outcome_entries(
    r: Route, records: Sequence[Record], outcomes: dict[str, Outcome], hashes: dict[str, str]
) -> list[SyncEntry]:
    """The records that have an outcome get it (rows of one record share its request); others wait."""
    entries = []
    for rec in records:
        outcome = outcomes.get(rec.record_key)
        if outcome is None:
            continue
        entries.append(
            SyncEntry(
                r.connector,
                outcome.object or r.mapping.object,
                rec.record_key,
                rec.event_id,
                rec.user_id,
                outcome.status,
                outcome.remote_id,
                outcome.error,
                hashes.get(rec.record_key),
                outcome.duration_ms,
                outcome.not_before,
            )
        )
    return entries


def after_error(connector: str, *, maybe_sent: bool) -> SyncStatus:
    """What a delivery whose batch raised becomes: looked up first where a send may have arrived without
    an idempotency key; a "resend_unless_orphaned" destination's marked send that the batch's error left
    in flight (`marked_sends`), orphaned: never sent again; else offered again."""
    known = CONNECTORS.get(connector)
    sends = known.ambiguous_sends if known is not None else "idempotent"
    if sends == "reconcile" or (sends == "resend_unless_orphaned" and maybe_sent):
        return SyncStatus.UNKNOWN
    return SyncStatus.DEFERRED


def marked_sends(connector: str, event_ids: Sequence[str | None]) -> set[str]:
    """Which of these events' deliveries to a "resend_unless_orphaned" destination are still marked as
    possibly sent: an error that is not the connector's own (a ConnectorError, a lost answer included, is
    raised only while nothing of the batch was answered, and offered again) left their request in flight."""
    known = CONNECTORS.get(connector)
    if known is None or known.ambiguous_sends != "resend_unless_orphaned":
        return set()
    pairs = [(str(e), connector) for e in event_ids if e is not None]
    return {e for e, _ in deliveries.marked(deliveries.current_owner(), pairs)}


def failed_batch(connector: str, batch: list[Record], error: BaseException) -> dict[str, Outcome]:
    """A batch whose push raised: retried later, or looked up first where the send may have arrived."""
    reason = error.reason if isinstance(error, ConnectorError) else type(error).__name__
    ids = [] if isinstance(error, ConnectorError) else [r.event_id for r in batch]
    marked = marked_sends(connector, ids)
    state = circuit.circuit_state(connector)
    outcomes = {}
    for r in batch:
        status = after_error(connector, maybe_sent=r.event_id in marked)
        # The vendor is down, not the record: it waits for the breaker's probe and spends no attempt.
        wait = state.opened_until if status == SyncStatus.DEFERRED and state.open else None
        outcomes[r.record_key] = Outcome(r.record_key, status, error=reason, not_before=wait)
    return outcomes


def undeclared(r: Route) -> str | None:
    """Why a route cannot be pushed (its connector or object is not registered), or None."""
    connector = CONNECTORS.get(r.connector)
    if connector is None:
        return f"no connector {r.connector!r} is registered"
    if r.mapping.object not in connector.batch_sizes:
        return f"{r.connector} has no object {r.mapping.object!r}"
    return None


def _held_rows(frame: pd.DataFrame, events: set[str]) -> pd.DataFrame:
    """The frame's rows whose event is among `events`: the frame itself when that is every row (a bulk
    chunk's usual case), not a copy of every column of the wide extracted frame."""
    if not len(frame):
        return frame
    mask = frame["event.id"].astype(str).isin(events).to_numpy()
    return frame if mask.all() else frame.loc[mask]


def _only_held(r: Route, ledger: Ledger) -> Route:
    """The route's rows (to send, refused, filtered out) whose event this batch holds a delivery to the
    route's destination for."""
    events = ledger.events_held_for(r.connector)
    filtered = None if r.filtered is None else _held_rows(r.filtered, events)
    return Route(
        r.connector, r.mapping, _held_rows(r.frame, events), _held_rows(r.refused, events), filtered, r.where
    )


def looked_up(r: Route, records: list[Record], ledger: Ledger) -> tuple[list[Record], list[SyncEntry]]:
    """Records whose last send was ambiguous are looked up at the vendor; those found are not sent again."""
    unknown = {h.event_id: h for h in ledger.held_for(r.connector) if h.status == SyncStatus.UNKNOWN.value}
    suspects = [rec for rec in records if rec.event_id in unknown]
    if not suspects:
        return records, []
    if CONNECTORS[r.connector].ambiguous_sends == "resend_unless_orphaned":  # orphaned: never sent twice
        lost = {
            x.record_key: Outcome(x.record_key, SyncStatus.FAILED, error=NOT_SENT_TWICE) for x in suspects
        }
        return [rec for rec in records if rec.record_key not in lost], outcome_entries(r, suspects, lost, {})
    times = [h.last_attempt_at for h in unknown.values() if h.last_attempt_at is not None]
    since = min(times) if times else utcnow() - timedelta(days=1)
    state = reconcile.submit(r.connector, r.mapping.object, as_is(suspects), since)
    state.wait()
    found: Any = state.result(raise_on_failure=False)
    if isinstance(found, BaseException):  # the lookup failed: still unknown, never re-sent blindly
        reason = found.reason if isinstance(found, ConnectorError) else type(found).__name__
        lost = {
            s.record_key: Outcome(s.record_key, SyncStatus.UNKNOWN, error=f"lookup: {reason}")
            for s in suspects
        }
        return [rec for rec in records if rec.record_key not in lost], outcome_entries(r, suspects, lost, {})
    return [rec for rec in records if rec.record_key not in found], outcome_entries(r, suspects, found, {})


def run_event_pipeline(
    event_type: str,
    event_ids: list[str],
    *,
    force: bool = False,
    only: list[str] | None = None,
    tally: Tally | None = None,
    push_threads: int = PUSH_THREADS,
) -> SummaryTable:
    """Carry the held deliveries of these events to their destinations and record each outcome.

    Args:
        force: send even records whose content the destination already has.
        only: take only the deliveries to these integrations (the others stay for the workers).
        tally: count the outcomes into this run-wide tally (a bulk sync's chunks) instead of attaching
            this batch's own summary artifacts.
        push_threads: the push runner's threads this batch has to itself (a bulk sync's chunks in flight
            share them): its batches are cut into that many push tasks.
    """
    owner = deliveries.current_owner()
    admit(event_ids)
    if force:  # a re-run on purpose: destinations that have the events get them again
        deliveries.reopen(statuses=RESENDABLE, event_ids=event_ids, integrations=only)
    with deliveries.keep_leased(owner):
        ledger = Ledger(owner, deliveries.take(owner, event_ids, only))
        try:
            _deliver(event_type, ledger, force, push_threads)
        except BaseException as exc:
            # Whatever was not recorded is offered again (an attempt spent), and fails at the cap.
            # Where a send may have reached a vendor without idempotency keys, it is looked up first.
            reason = f"batch error: {type(exc).__name__}"
            unsettled = ledger.unsettled()
            marked = {
                (e, i)
                for i in {h.integration for h in unsettled}
                for e in marked_sends(i, [h.event_id for h in unsettled if h.integration == i])
            }
            deliveries.settle(
                owner,
                ledger.held,
                [
                    deliveries.Settlement(
                        h.event_id,
                        h.integration,
                        after_error(h.integration, maybe_sent=(h.event_id, h.integration) in marked),
                        reason,
                    )
                    for h in unsettled
                ],
            )
            raise
    if tally is not None:
        return tally.add(ledger)
    own = Tally()
    own.add(ledger)
    return record(own, event_type)


def _deliver(event_type: str, ledger: Ledger, force: bool, push_threads: int) -> None:
    logger = get_run_logger()
    if not ledger.held:
        logger.info("nothing to deliver: these events' deliveries are settled or held by another worker")
        return
    prepared = prepare(event_type, ledger.event_ids, lambda r: _only_held(r, ledger))
    extracted = prepared.extracted
    ledger.write(unusable_event_entries(extracted, ledger))
    routed = {r.connector for r in prepared.routes}
    pushes: list[Push] = []
    for r in prepared.routes:
        ledger.write(withheld_entries(r))
    for r, checked in prepared.sending:
        ledger.write(rejected_entries(r, checked))
        unusable = undeclared(r)
        if unusable is not None:  # a mapping the lint would refuse: this route fails, the others go
            logger.error("%s: %s; its records failed", r.destination, unusable)
            records = to_records(checked.valid)
            failed = {x.record_key: Outcome(x.record_key, SyncStatus.FAILED, error=unusable) for x in records}
            ledger.write(outcome_entries(r, records, failed, {}))
            continue
        records, found = looked_up(r, to_records(checked.valid), ledger)
        ledger.write(found)
        destination = CONNECTORS[r.connector]
        plan = plan_push(
            r.connector,
            r.mapping.object,
            r.mapping.upsert_key,
            records,
            destination.batch_sizes[r.mapping.object],
            force=force,
        )
        ledger.write(outcome_entries(r, records, {o.record_key: o for o in plan.settled}, plan.hashes))
        # The rate limit's slots for the whole plan are taken at its first request: one Prefect round trip
        # for a route's batches, not one per batch (connectors.rate_limit).
        expect_requests(
            r.connector, sum(destination.expected_requests(r.mapping.object, len(b)) for b in plan.batches)
        )
        if destination.ambiguous_sends == "reconcile":
            pairs = [(str(x.event_id), r.connector) for b in plan.batches for x in b]
            deliveries.mark_sending(ledger.owner, pairs)
        pushes += [Push(r, b, records, plan.hashes) for b in per_push(plan.batches, push_threads)]
    # Each destination's first slots in one Prefect round trip, not one per destination's push.
    take_slots_ahead(list(dict.fromkeys(p.route.connector for p in pushes)))
    reports: queue.SimpleQueue[Report] = queue.SimpleQueue()
    for n, p in enumerate(pushes):
        r = p.route
        p.future = push_batches.submit(
            r.connector, r.mapping.object, r.mapping.upsert_key, as_is(p.batches), as_is(reporter(reports, n))
        )
        thread_future(p.future).add_done_callback(ender(reports, n))
    ledger.write(
        [
            event_entry(h, SyncStatus.SKIPPED, "no longer routed")
            for h in ledger.unsettled()
            if h.integration not in routed and h.event_id not in extracted.missing
        ]
    )
    pushes_under_way()  # the worker may start its next batch while this one waits for its answers
    collect(pushes, reports, ledger)
    leftover = ledger.unsettled()
    if leftover:  # a bug's safety net: nothing held is left leased without an outcome
        logger.error("%d deliveries had no outcome; offered again", len(leftover))
        ledger.write([event_entry(h, SyncStatus.DEFERRED, NO_OUTCOME) for h in leftover])


def event_entry(held: deliveries.Held, status: SyncStatus, reason: str) -> SyncEntry:
    """An outcome for a whole event at one destination (no record of it was mapped)."""
    return SyncEntry(
        held.integration, "event", f"event:{held.event_id}", held.event_id, None, status, error=reason
    )


@dataclass
class Push:
    """One push task: a route's vendor batches, every record of the route, their payload hashes."""

    route: Route
    batches: list[list[Record]]
    records: list[Record]
    hashes: dict[str, str]
    future: PrefectFuture[int] | None = field(default=None, repr=False)


# (push, batch index, its outcomes or error) as a push hands a batch over; (push, None, None) as it ends.
Report = tuple[int, int | None, list[Outcome] | Exception | None]


def per_push(batches: list[list[Record]], threads: int) -> list[list[list[Record]]]:
    """A route's vendor batches cut into push tasks: as many tasks as the batch has threads of the runner
    (the batches still go out side by side; a task more would only wait for a thread, and costs a task
    run), each of at most BATCHES_PER_PUSH batches."""
    size = min(BATCHES_PER_PUSH, max(1, math.ceil(len(batches) / max(1, threads))))
    return [batches[start : start + size] for start in range(0, len(batches), size)]


def reporter(reports: queue.SimpleQueue[Report], push: int) -> BatchReport:
    def report(index: int, result: list[Outcome] | Exception) -> None:
        reports.put((push, index, result))

    return report


def ender(reports: queue.SimpleQueue[Report], push: int) -> Callable[[object], None]:
    def ended(_: object) -> None:
        reports.put((push, None, None))

    return ended


def thread_future(future: PrefectFuture[Any]) -> concurrent.futures.Future[Any]:
    """The thread's own future of a push on PUSH_RUNNER (a thread pool of this process)."""
    if not isinstance(future, PrefectConcurrentFuture):
        raise TypeError("pushes run on PUSH_RUNNER's threads (the flow's task_runner)")
    return future.wrapped_future


def collect(pushes: list[Push], reports: queue.SimpleQueue[Report], ledger: Ledger) -> None:
    """Record pushed batches as soon as they are back, whichever finishes first: every batch that is back
    at that moment in one write (one transaction, not one each).

    A batch's outcomes apply to every record sharing a record key with it (`records` is the route's). A
    push that ended without handing some batch over (it raised before) fails those batches with its error.
    """
    unreported = {n: set(range(len(p.batches))) for n, p in enumerate(pushes)}
    running = set(unreported)
    while running:
        back = [reports.get()]
        while True:
            try:
                back.append(reports.get_nowait())
            except queue.Empty:
                break
        entries: list[SyncEntry] = []
        for n, index, result in back:
            p = pushes[n]
            if index is None:  # the push ended
                running.discard(n)
                ended: Any = p.future.result(raise_on_failure=False) if p.future is not None else None
                if isinstance(ended, BaseException):
                    for left in sorted(unreported[n]):
                        outcomes = failed_batch(p.route.connector, p.batches[left], ended)
                        entries += outcome_entries(p.route, p.records, outcomes, p.hashes)
                unreported[n].clear()
                continue
            unreported[n].discard(index)
            if isinstance(result, BaseException):
                outcomes = failed_batch(p.route.connector, p.batches[index], result)
            else:
                outcomes = {o.record_key: o for o in result or []}
            entries += outcome_entries(p.route, p.records, outcomes, p.hashes)
        ledger.write(entries)
