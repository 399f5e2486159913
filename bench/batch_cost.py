"""What one micro-batch costs: worker CPU and wall time, and the Prefect server's CPU, per batch size.

Starts its own system without delivery workers (bench/system.py: PostgreSQL, Prefect server, sandbox,
intake); this process is the worker. For each batch size it posts that many events of fresh people through
the intake, claims them as one batch and runs the event type's flow in-process, as `python -m engine` does,
after one warm-up batch. Prints per size the median over `--repeat` batches: wall seconds, this process's
CPU seconds (the flow, its push threads and the claim), the Prefect server's CPU seconds (its process
group), CPU milliseconds per event, and the hub database's statements and connection check-outs (each a
round trip more, the pool's liveness ping included). CPU time, unlike wall time, hardly depends on what
else the machine runs; the load average is printed anyway.

    .venv/bin/python -m bench.batch_cost                      # sizes 1, 10, 50 of assessment.completed
    .venv/bin/python -m bench.batch_cost --sizes 50 --repeat 5 --event-type user.registered
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.people import RUN_TAG, event_body, make_people
from bench.system import Options, System, load, running_system

if TYPE_CHECKING:
    from engine.worker import DeliveryWorker


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class HubStatements:
    """Statements executed on, and connections checked out of, this process's hub database engine."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import event

        from ennu.db import get_engine

        self.statements = self.checkouts = 0
        self.lock = threading.Lock()
        engine = get_engine(url)
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine.pool, "checkout", self._checkout)

    def _statement(self, *_: Any) -> None:
        with self.lock:
            self.statements += 1

    def _checkout(self, *_: Any) -> None:
        with self.lock:
            self.checkouts += 1

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.statements, self.checkouts


@dataclass
class Cost:
    size: int
    wall_s: float
    worker_cpu_s: float
    prefect_cpu_s: float
    statements: int
    checkouts: int

    @property
    def cpu_ms_per_event(self) -> float:
        return 1000 * (self.worker_cpu_s + self.prefect_cpu_s) / self.size


def one_batch(
    system: System, worker: DeliveryWorker, hub: HubStatements, event_type: str, size: int, serial: int
) -> Cost:
    from ennu import deliveries
    from tasks.admit import admit

    people = make_people(size, event_type, system.hub_url)
    bodies = [event_body(p, f"cost-{RUN_TAG}-{serial}-{p.user_id}") for p in people]
    statuses = system.post_events(bodies)
    if any(s != 202 for s in statuses):
        raise SystemExit(f"the intake refused events: {sorted(set(statuses))}")
    errors = worker.stats.errors
    owner = worker.owner()
    prefect_pid = system.prefect.pid
    assert prefect_pid is not None
    prefect_before = group_cpu_seconds(prefect_pid)
    statements, checkouts = hub.counts()
    wall, cpu = time.perf_counter(), time.process_time()
    admit()
    claim = deliveries.claim(owner, size, event_type=event_type)
    if claim is None or len(claim.event_ids) != size:
        raise SystemExit(f"claimed {0 if claim is None else len(claim.event_ids)} of {size} events")
    worker.pool.submit(worker.run_batch, owner, claim.event_type, claim.event_ids).result()
    after = hub.counts()
    cost = Cost(
        size,
        time.perf_counter() - wall,
        time.process_time() - cpu,
        group_cpu_seconds(prefect_pid) - prefect_before,
        after[0] - statements,
        after[1] - checkouts,
    )
    if worker.stats.errors > errors:
        raise SystemExit("the batch failed: see the log above")
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,10,50", help="events per batch (default 1,10,50)")
    parser.add_argument("--repeat", type=int, default=3, help="batches per size (default 3)")
    parser.add_argument("--event-type", default="assessment.completed")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# load average at start: {load()}", file=sys.stderr, flush=True)
    with running_system(Options(workers=0)) as system:
        from engine.worker import DeliveryWorker

        worker = DeliveryWorker("batch-cost", concurrency=1)  # one batch thread, warm, as in the engine
        worker.warm_up()
        hub = HubStatements(system.hub_url)
        # First use: vendor schemas, connections, limits.
        one_batch(system, worker, hub, args.event_type, 5, 0)
        rows = []
        serial = 1
        for size in sizes:
            costs = []
            for _ in range(args.repeat):
                costs.append(one_batch(system, worker, hub, args.event_type, size, serial))
                serial += 1
            rows.append(
                (
                    size,
                    statistics.median(c.wall_s for c in costs),
                    statistics.median(c.worker_cpu_s for c in costs),
                    statistics.median(c.prefect_cpu_s for c in costs),
                    statistics.median(c.cpu_ms_per_event for c in costs),
                    statistics.median(c.statements for c in costs),
                    statistics.median(c.checkouts for c in costs),
                )
            )
    print(
        f"{'events':>8} {'wall_s':>8} {'worker_cpu_s':>13} {'prefect_cpu_s':>14} {'cpu_ms/event':>13}"
        f" {'hub_sql':>8} {'checkouts':>10}"
    )
    for size, wall, worker_cpu, prefect_cpu, per_event, statements, checkouts in rows:
        print(
            f"{size:>8} {wall:>8.2f} {worker_cpu:>13.2f} {prefect_cpu:>14.2f} {per_event:>13.1f}"
            f" {statements:>8.0f} {checkouts:>10.0f}"
        )
    print(f"# {args.event_type}, median of {args.repeat} batches; load average at end: {load()}")


if __name__ == "__main__":
    main()
