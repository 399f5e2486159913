"""Event → record latency: POST /events to the HubSpot contact at the stand-in, at a steady rate.

Posts `--rate` events a second for `--duration` seconds (`assessment.completed` of fresh synthetic people,
or `user.registered`), and times each from just before its POST to the contact's `createdAt` at the HubSpot
stand-in (polled once a second). Prints p50, p95 and max, how many arrived, the backlog's peak (open
deliveries and not-yet-routed events, sampled from the hub database every half second), the intake's own
p95 answer time, the batches (flow runs x mean events each, own system only) and the load average
(1, 5, 15 min) at start and end.

Against its own system by default (bench/system.py: PostgreSQL, one delivery worker as in `make up`), or
against a running `make up` with --intake-url, --sandbox-url and --database-url. The old path, one process
per event (`prefect serve` of deployments/serve.py and `run_deployment(..., timeout=0)` per event, no
delivery worker), is measured with --old-path, or after the worker path in the same run with --compare;
both need the bench's own system. An event that has not arrived `--timeout` seconds after the last post
counts as slower than anything measured (shown as ">timeout"; `arrived_p50_s` is over the arrived only).

    .venv/bin/python -m bench.latency --rate 5 --duration 30
    .venv/bin/python -m bench.latency --rate 1 --duration 20 --compare
    .venv/bin/python -m bench.latency --intake-url http://127.0.0.1:8000 \\
        --sandbox-url http://127.0.0.1:8765 --database-url sqlite:///.ennu/ennu.db --rate 2 --duration 30
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime

import requests

from bench.people import RUN_TAG, Person, event_body, make_people
from bench.system import PY, Options, System, load, running_system
from sandbox.client import SandboxClient

OLD_FLOW = {"assessment.completed": "assessment-completed", "user.registered": "user-registered"}


@dataclass
class Target:
    """Where events go and where their records are looked for."""

    intake_url: str
    token: str
    sandbox_url: str
    _local: threading.local = field(default_factory=threading.local)

    def post(self, body: dict[str, object]) -> int:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        try:
            answer = session.post(
                f"{self.intake_url.rstrip('/')}/events",
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=30,
            )
        except requests.RequestException:
            return 0
        return answer.status_code


@dataclass
class Result:
    path: str  # "worker" or "old: one process per event"
    rate: float
    duration_s: float
    posted: int
    accepted: int
    arrived: int
    p50_s: float | None  # over every posted event; one that never arrived counts as slower than all
    p95_s: float | None
    max_s: float | None
    arrived_p50_s: float | None  # over the arrived ones only
    backlog_peak: int  # open deliveries (pending, deferred, unknown)
    unrouted_peak: int  # events in the outbox no worker has routed yet
    intake_p95_ms: float | None
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float]
    batches: int | None = None  # flow runs that recorded outcomes (own system only: from the logs)
    events_per_batch: float | None = None


RECORDED = re.compile(r"recorded \d+ outcomes for (\d+) events")


def with_batches(result: Result, logs: list[str]) -> Result:
    """The batch count and mean batch size, from the flow runs' "recorded … for N events" log lines."""
    sizes = [int(n) for text in logs for n in RECORDED.findall(text)]
    result.batches = len(sizes)
    result.events_per_batch = round(sum(sizes) / len(sizes), 1) if sizes else None
    return result


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank; `inf` stands for an event that never arrived."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@contextlib.contextmanager
def sampling_backlog(every: float = 0.5) -> Iterator[list[tuple[int, int]]]:
    """Sample (open deliveries, unrouted events) from the hub database while the block runs."""
    from bench.hub import backlog

    samples: list[tuple[int, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            with contextlib.suppress(Exception):  # a busy database skips a sample, it does not end the run
                samples.append(backlog())

    thread = threading.Thread(target=sample, name="backlog", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(timeout=10)


def created_at(contact: dict[str, object]) -> float | None:
    text = contact.get("createdAt")
    try:
        return datetime.fromisoformat(str(text)).timestamp() if text else None
    except ValueError:
        return None


def measure(
    target: Target,
    people: list[Person],
    rate: float,
    timeout: float,
    label: str,
    after_post: Callable[[str], None] | None = None,
) -> Result:
    """Post one event per person at `rate` a second; wait (at most `timeout` after the last) for contacts."""
    stand_in = SandboxClient(target.sandbox_url, timeout=30)
    started_load = load()
    posted: dict[str, float] = {}  # e-mail -> wall-clock time just before the POST
    answered_ms: list[float] = []
    accepted = 0
    lock = threading.Lock()

    def send(person: Person, n: int) -> None:
        nonlocal accepted
        event_id = f"latency-{RUN_TAG}-{person.user_id}-{n}"
        before = time.time()
        with lock:
            posted[person.email.lower()] = before
        status = target.post(event_body(person, event_id))
        with lock:
            answered_ms.append((time.time() - before) * 1000)
            accepted += status == 202
        if after_post is not None and status == 202:
            after_post(event_id)

    arrived: dict[str, float] = {}

    def watch() -> None:
        for contact in stand_in.objects("hubspot", "contacts"):
            props = contact.get("properties")
            email = str(props.get("email", "")).lower() if isinstance(props, dict) else ""
            if email in posted and email not in arrived:
                arrived[email] = created_at(contact) or time.time()

    threads = max(4, min(32, math.ceil(rate * 2)))
    with sampling_backlog() as samples, ThreadPoolExecutor(threads) as pool:
        start = time.monotonic()
        next_watch = start
        for n, person in enumerate(people):
            due = start + n / rate
            while (wait := due - time.monotonic()) > 0:
                if time.monotonic() >= next_watch:
                    watch()
                    next_watch = time.monotonic() + 1.0
                time.sleep(min(wait, 0.05))
            pool.submit(send, person, n)
        pool.shutdown(wait=True)
        deadline = time.monotonic() + timeout
        while len(arrived) < len(posted) and time.monotonic() < deadline:
            watch()
            time.sleep(1.0)
        watch()
    latencies = [max(0.0, arrived[e] - t) for e, t in posted.items() if e in arrived]
    censored = latencies + [math.inf] * (len(posted) - len(latencies))
    answered = sorted(answered_ms)

    def rounded(value: float | None) -> float | None:
        return None if value is None else (value if math.isinf(value) else round(value, 2))

    return Result(
        label,
        rate,
        round(len(people) / rate, 1),
        len(posted),
        accepted,
        len(latencies),
        rounded(percentile(censored, 0.50)),
        rounded(percentile(censored, 0.95)),
        rounded(max(censored) if censored else None),
        rounded(percentile(latencies, 0.50)),
        max((s[0] for s in samples), default=0),
        max((s[1] for s in samples), default=0),
        rounded(percentile(answered, 0.95)),
        started_load,
        load(),
    )


def run_old_path(system: System, target: Target, people: list[Person], args: argparse.Namespace) -> Result:
    """No delivery worker: `prefect serve` of every deployment, and one `run_deployment` per event."""
    system.stop_workers()
    served = system.start_extra(
        "deployments", [PY, "-m", "deployments.serve", "--limit", str(args.serve_limit)]
    )
    from prefect.deployments import run_deployment

    name = f"{OLD_FLOW[args.event_type]}/default"
    wait_for_deployment(name, served.alive, timeout=300)

    def trigger(event_id: str) -> None:
        run_deployment(name, parameters={"event_ids": [event_id]}, timeout=0)

    result = measure(target, people, args.rate, args.old_timeout, "old: one process per event", trigger)
    return with_batches(result, [served.output()])


def wait_for_deployment(name: str, alive: Callable[[], bool], timeout: float) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("`python -m deployments.serve` exited; see its log")
        try:
            with get_client(sync_client=True) as client:
                client.read_deployment_by_name(name)
            return
        except Exception:  # not registered yet
            time.sleep(1.0)
    raise RuntimeError(f"deployment {name} not served within {timeout:.0f} s")


def show(results: list[Result], as_json: bool) -> None:
    if as_json:
        for r in results:  # a latency that never ended is null in JSON (`arrived` < `posted` says so)
            body = {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(r).items()}
            print(json.dumps(body), flush=True)
        return
    head = (  # the columns, narrow enough to read; JSON has every field
        "path",
        "rate/s",
        "posted",
        "arrived",
        "p50_s",
        "p95_s",
        "max_s",
        "arrived_p50",
        "backlog",
        "unrouted",
        "intake95ms",
        "batches",
        "load 1/5/15 start → end",
    )
    print("  ".join(f"{h:>10}" if i else f"{h:<28}" for i, h in enumerate(head)))

    def cell(v: float | None) -> str:
        return "-" if v is None else (">timeout" if math.isinf(v) else f"{v:.2f}")

    for r in results:
        values = [
            r.path,
            f"{r.rate:g}",
            str(r.posted),
            str(r.arrived),
            cell(r.p50_s),
            cell(r.p95_s),
            cell(r.max_s),
            cell(r.arrived_p50_s),
            str(r.backlog_peak),
            str(r.unrouted_peak),
            cell(r.intake_p95_ms),
            "-" if r.batches is None else f"{r.batches}x{r.events_per_batch or 0:g}",
            f"{r.load_start} → {r.load_end}",
        ]
        print("  ".join(f"{v:>10}" if i else f"{v:<28}" for i, v in enumerate(values)), flush=True)
    if len(results) == 2 and results[0].p50_s and results[1].p50_s:
        worker, old = results
        if not math.isinf(old.p50_s or 0.0):
            print(f"old path / worker, p50: {(old.p50_s or 0.0) / (worker.p50_s or 1.0):.1f}x")
        elif old.arrived_p50_s is not None:
            bound = old.arrived_p50_s / (worker.p50_s or 1.0)
            print(
                f"old path / worker, p50: more than {bound:.1f}x (fewer than half the old path's events "
                f"arrived within its wait; {bound:.1f}x is the ratio of the arrived ones' median)"
            )
        else:
            print("old path / worker: none of the old path's events arrived within its wait")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=5.0, help="events a second (default 5)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of posting (default 30)")
    parser.add_argument("--event-type", choices=sorted(OLD_FLOW), default="assessment.completed")
    parser.add_argument("--timeout", type=float, default=120.0, help="wait after the last post (default 120)")
    parser.add_argument(
        "--workers", type=int, default=1, help="delivery workers of the own system (default 1)"
    )
    parser.add_argument("--old-path", action="store_true", help="only the one-process-per-event path")
    parser.add_argument("--compare", action="store_true", help="the worker path, then the old path")
    parser.add_argument("--old-timeout", type=float, default=300.0, help="the old path's wait (default 300)")
    parser.add_argument("--serve-limit", type=int, default=4, help="`deployments.serve --limit` (default 4)")
    parser.add_argument("--intake-url", help="a running system's intake API (e.g. make up's :8000)")
    parser.add_argument("--sandbox-url", help="its sandbox (default ENNU_SANDBOX_URL)")
    parser.add_argument("--database-url", help="its hub database (default DATABASE_URL or .ennu/ennu.db)")
    parser.add_argument("--intake-token", default=os.environ.get("ENNU_INTAKE_TOKEN", "dev-intake-token"))
    parser.add_argument("--json", action="store_true", help="JSON lines instead of the table")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be positive")
    if args.intake_url and (args.old_path or args.compare):
        parser.error("--old-path and --compare need the bench's own system (a running worker would race it)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    count = max(1, round(args.rate * args.duration))
    print(f"# load average at start: {load()}", file=sys.stderr, flush=True)
    results: list[Result] = []
    if args.intake_url:
        if args.database_url:
            os.environ["DATABASE_URL"] = args.database_url
        from ennu.settings import get_settings, reload_settings

        settings = reload_settings()
        target = Target(args.intake_url, args.intake_token, args.sandbox_url or get_settings().sandbox_url)
        print(f"# against {args.intake_url}; hub {settings.database_url.split('://', 1)[0]}", file=sys.stderr)
        results.append(
            measure(target, make_people(count, args.event_type), args.rate, args.timeout, "worker")
        )
    else:
        options = Options(workers=0 if args.old_path else args.workers, enable=())
        with running_system(options) as system:
            from bench.system import INTAKE_TOKEN

            target = Target(system.intake_url, INTAKE_TOKEN, system.sandbox_url)
            if not args.old_path:
                people = make_people(count, args.event_type)
                result = measure(target, people, args.rate, args.timeout, f"worker x{args.workers}")
                results.append(with_batches(result, [w.output() for w in system.workers]))
            if args.old_path or args.compare:
                system.sandbox.reset()
                results.append(run_old_path(system, target, make_people(count, args.event_type), args))
    show(results, args.json)
    print(f"# load average at end: {load()}", file=sys.stderr, flush=True)
    return 0 if all(r.arrived == r.posted for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
