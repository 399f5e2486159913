"""A delivery worker: imports everything once, claims micro-batches, runs each type's flow in-process.

The outbox is the queue of record: the worker polls it (every ENNU_WORKER_POLL_SECONDS, at most a
second), routes new events, claims the due deliveries of up to ENNU_WORKER_BATCH_SIZE events of one
type and calls that type's flow with their ids — one flow run in the Prefect UI per batch, with its
tasks and artifacts. A lone event goes at once; a backlog is carried in full batches. A batch whose pushes
are all under way only waits for its destinations: it gives up its place among the `concurrency` batches
at work, and the next batch leaves for later the destinations that `concurrency` batches are still pushing
to (their deliveries wait for a later, larger batch), so a slow destination holds up no other. Expired leases,
deferred deliveries whose time has come, ambiguous sends to reconcile and unprocessed webhook receipts
are all just "due" rows, so recovery needs no schedule. Several workers (on several machines, with
PostgreSQL) share the work through the claims.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ennu import deliveries, heartbeats, receipts
from ennu.settings import get_settings
from tasks.batch_phase import told_when_pushes_under_way
from tasks.run_state import raise_unless_recorded

logger = logging.getLogger("ennu.worker")
RECEIPTS_PER_BATCH = 50
HEARTBEAT_SECONDS = 5.0
# After the Prefect API or the database failed, wait before claiming again (nothing was spent).
BACKOFF_SECONDS = 2.0
# Batches in flight per batch at work: those only waiting for their pushes (behind a slow destination).
IN_FLIGHT_PER_SLOT = 3


@dataclass
class WorkerStats:
    batches: int = 0
    events: int = 0
    receipts: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


_thread_contexts = threading.local()


def batch_thread_setup() -> None:
    """What every batch thread keeps for its life, so that no flow run pays for it again:

    - one Prefect API client (each flow run would otherwise build and open its own);
    - no flow-run heartbeat thread: it sleeps in one-second steps and is joined when a sync flow ends,
      which held a batch thread up to a second after its work. This worker's liveness is its own heartbeat
      (`worker_heartbeats`), and a crashed worker's deliveries come back through their leases.
    """
    from prefect.context import SyncClientContext
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    stack = contextlib.ExitStack()
    stack.enter_context(temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))
    stack.enter_context(SyncClientContext.get_or_create())
    _thread_contexts.stack = stack  # kept open for the thread's life


class DeliveryWorker:
    """Claims due work and runs it on warm threads until `stop` is set: `concurrency` batches at work, and
    up to `IN_FLIGHT_PER_SLOT` times as many in flight counting those only waiting for their pushes."""

    def __init__(self, name: str | None = None, *, concurrency: int | None = None) -> None:
        settings = get_settings()
        self.name = name or f"{socket.gethostname()}:{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency or settings.worker_concurrency
        self.stats = WorkerStats()
        self.stop = threading.Event()
        self.idle_until = 0.0
        self.threads = self.concurrency * IN_FLIGHT_PER_SLOT
        self.pool = ThreadPoolExecutor(
            self.threads, thread_name_prefix="batch", initializer=batch_thread_setup
        )
        self.in_flight: dict[Future[Any], str] = {}  # each batch's owner
        self.waiting: set[str] = set()  # owners of batches whose pushes are all under way
        self.waiting_lock = threading.Lock()
        self.wake = threading.Event()  # a batch gave up its place: claim now, not at the next poll
        self.api_ok = False
        self.api_checked_at = float("-inf")

    def warm_up(self) -> None:
        """Import the flows, build the connectors and a GX context in every batch thread, once."""
        import fastapi.encoders  # noqa: F401 - a flow run's first parameter serialisation imports it

        import flows.registry
        import flows.webhook_received  # noqa: F401
        from connectors.endpoint import NotConfigured
        from connectors.http import RetryableError
        from connectors.registry import CONNECTORS
        from mappings import load_all_mappings
        from mappings.routing import routing_table
        from tasks.push import connector_for
        from tasks.validate import _validator

        settings = get_settings()
        load_all_mappings(settings.mappings_dir)  # read and checked once, then only stat-ed
        table = routing_table(settings.mappings_dir)
        # Each enabled destination's connector (its HTTP pool, and in local mode the sandbox's signing key,
        # seconds of CPU to derive) is built now, not in the first batch bound for it.
        for name, config in table.integrations.items():
            if config.enabled and name in CONNECTORS:
                with contextlib.suppress(NotConfigured, RetryableError):  # its pushes report why
                    connector_for(name)

        barrier = threading.Barrier(self.threads)

        def build() -> None:
            _validator.warm()
            barrier.wait(timeout=300)  # every thread of the pool takes one

        for future in [self.pool.submit(build) for _ in range(self.threads)]:
            future.result()

    def owner(self) -> str:
        return f"{self.name}/{uuid.uuid4().hex[:8]}"

    def run_batch(self, owner: str, event_type: str, event_ids: list[str]) -> None:
        from flows.registry import EVENT_FLOWS

        try:
            with (
                deliveries.owned_by(owner, claimed=True),
                told_when_pushes_under_way(lambda: self.wait(owner)),
            ):
                # A run that failed because deliveries did is an outcome (recorded); one that raised is not.
                raise_unless_recorded(EVENT_FLOWS[event_type](event_ids=event_ids, return_state=True))
            self.stats.add(batches=1, events=len(event_ids))
        except BaseException:
            self.stats.add(errors=1)
            logger.exception("a %s batch of %d events failed", event_type, len(event_ids))
            self.idle_until = time.monotonic() + BACKOFF_SECONDS
        finally:
            # Whatever the flow did not take or settle (it could not start) is due again, no attempt spent.
            deliveries.release(owner)
            with self.waiting_lock:
                self.waiting.discard(owner)

    def wait(self, owner: str) -> None:
        """The batch of `owner` has its pushes under way: it no longer counts among the batches at work."""
        with self.waiting_lock:
            self.waiting.add(owner)
        self.wake.set()

    def run_receipts(self, owner: str, receipt_ids: list[int]) -> None:
        from flows.webhook_received import webhook_received

        try:
            with deliveries.owned_by(owner):
                webhook_received(receipt_ids=receipt_ids)
            self.stats.add(receipts=len(receipt_ids))
        except BaseException:
            self.stats.add(errors=1)
            logger.exception("a batch of %d webhook receipts failed", len(receipt_ids))
            self.idle_until = time.monotonic() + BACKOFF_SECONDS
        finally:
            receipts.release(owner)

    def prefect_reachable(self) -> bool:
        """Whether the Prefect API answers (checked at most once a second): no claim while it is away,
        so a batch never waits out the client's retries holding leases."""
        now = time.monotonic()
        if now - self.api_checked_at < 1.0:
            return self.api_ok
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            self.api_ok = client.api_healthcheck() is None
        self.api_checked_at = now
        if not self.api_ok:
            logger.warning("the Prefect API does not answer; claiming when it is back")
        return self.api_ok

    def claim_one(self) -> bool:
        """Claim one piece of due work onto a free thread; False when there is none."""
        from tasks.admit import admit

        settings = get_settings()
        admit()
        if not self.prefect_reachable():
            return False
        owner = self.owner()
        held = receipts.claim(owner, RECEIPTS_PER_BATCH)
        if held:
            self.in_flight[self.pool.submit(self.run_receipts, owner, held)] = owner
            return True
        # Destinations `concurrency` batches of this worker still push to wait for a later, larger batch.
        busy = deliveries.busy_integrations(f"{self.name}/", self.concurrency) if self.in_flight else []
        claim = deliveries.claim(
            owner, settings.worker_batch_size, bulk_max_events=settings.bulk_batch_size, leave=busy
        )
        if claim is None:
            return False
        self.in_flight[self.pool.submit(self.run_batch, owner, claim.event_type, claim.event_ids)] = owner
        return True

    def at_work(self) -> int:
        """Batches in flight that are not only waiting for their pushes."""
        with self.waiting_lock:
            return sum(1 for owner in self.in_flight.values() if owner not in self.waiting)

    def may_claim(self) -> bool:
        return (
            self.at_work() < self.concurrency
            and len(self.in_flight) < self.threads
            and time.monotonic() >= self.idle_until
        )

    def beat(self, *, warm: bool = True) -> None:
        try:
            s = self.stats
            heartbeats.beat(self.name, warm=warm, batches=s.batches, events=s.events, errors=s.errors)
        except Exception:  # the database is down: claiming reports it too
            logger.warning("heartbeat of %s not recorded", self.name, exc_info=True)

    def loop(self) -> None:
        poll = get_settings().worker_poll_seconds
        last_beat = 0.0
        while not self.stop.is_set():
            if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                self.beat()
                last_beat = time.monotonic()
            self.in_flight = {f: owner for f, owner in self.in_flight.items() if not f.done()}
            claimed = False
            if self.may_claim():
                try:
                    claimed = self.claim_one()
                except Exception:
                    logger.exception("claiming failed; trying again shortly")
                    self.idle_until = time.monotonic() + BACKOFF_SECONDS
            if not claimed:
                self.wake.wait(poll)
                self.wake.clear()
        self.pool.shutdown(wait=True)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.loop, name="delivery-worker", daemon=True)
        thread.start()
        return thread


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", help="this worker's name in leases (default: host and a random tag)")
    parser.add_argument("--concurrency", type=int, help="batches at once (default ENNU_WORKER_CONCURRENCY)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpcore"):  # a line per API call would drown the batches' own lines
        logging.getLogger(chatty).setLevel(logging.WARNING)
    from connectors.registry import validate_settings
    from connectors.settings import SettingsError
    from ennu.db import migrate

    try:
        validate_settings()  # a setting that does not parse stops the worker here, named
    except SettingsError as exc:
        raise SystemExit(f"delivery worker: {exc}") from None
    migrate()
    worker = DeliveryWorker(args.name, concurrency=args.concurrency)
    started = time.monotonic()
    worker.beat(warm=False)
    worker.warm_up()
    logger.info("delivery worker %s warm in %.1f s; polling", worker.name, time.monotonic() - started)

    def shut_down(*_: object) -> None:
        logger.info("delivery worker %s stopping after its batches in flight", worker.name)
        worker.stop.set()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    worker.loop()
    logger.info("delivery worker %s stopped: %s", worker.name, worker.stats)


if __name__ == "__main__":
    main()
