"""The scenarios of `python -m bench.faults`: each makes trouble, posts events and says when to judge."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import hub
from bench.people import RUN_TAG, Person, event_body, make_people, mixed
from bench.system import System, load
from bench.tally import (
    VENDORS,
    Index,
    Row,
    complete,
    expected_for,
    logged,
    observe,
    request_counts,
    rows_for,
    vendor_requests,
    visibly_failed,
)

POLL_SECONDS = 0.5
RECOVERY_CEILING = 60.0  # after the trouble ends, everything is to be delivered within a minute


@dataclass(frozen=True)
class Sizes:
    burst: int = 300
    kill: int = 200
    bulk: int = 100
    same_person: int = 20
    twilio: int = 20
    prefect: int = 50
    fault: int = 60  # events of each vendor-trouble scenario (g, h, i)


QUICK = Sizes(burst=60, kill=40, bulk=20, same_person=20, twilio=8, prefect=20, fault=20)


@dataclass
class Run:
    """One scenario: its people and events, what each destination should hold, when to judge it."""

    system: System
    key: str
    title: str
    index: Index = field(default_factory=Index)
    people: list[Person] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    expected: dict[str, set[int]] = field(default_factory=dict)
    reference: float = field(default_factory=time.monotonic)
    reference_label: str = "the first post"
    ceiling: float = 0.0
    completed_at: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: list[Row] = field(default_factory=list)
    after: list[Callable[[Run], None]] = field(default_factory=list)
    baseline: dict[str, int] = field(default_factory=dict)  # requests each stand-in had before the scenario
    load_start: tuple[float, float, float] = field(default_factory=load)
    load_end: tuple[float, float, float] | None = None

    def expect(self, people: Sequence[Person], only: Sequence[str] | None = None) -> None:
        self.people += people
        for person in people:
            self.index.add(person)
        for name, users in expected_for(people, self.system.mappings, only).items():
            self.expected.setdefault(name, set()).update(users)

    def bodies(self, people: Sequence[Person], each: int = 1) -> list[dict[str, Any]]:
        """The events of these people (`each` per person, distinct ids), indexed for the count."""
        out = []
        for person in people:
            for k in range(each):
                event_id = f"{self.key}-{RUN_TAG}-{person.user_id}-{k}"
                self.index.add(person, event_id)
                self.event_ids.append(event_id)
                out.append(event_body(person, event_id))
        return out

    def post(self, people: Sequence[Person], each: int = 1, threads: int = 8) -> list[int]:
        statuses = self.system.post_events(self.bodies(people, each), threads)
        refused = len([s for s in statuses if s != 202])
        if refused:
            self.notes.append(f"the intake answered {refused} of {len(statuses)} posts with another status")
        return statuses

    def requests(self, vendor: str) -> list[dict[str, Any]]:
        """What the stand-in received during this scenario."""
        return self.system.sandbox.requests(vendor)[self.baseline.get(vendor, 0) :]

    def poll(self) -> dict[str, Any]:
        seen = observe(self.system.sandbox, self.index)
        now = time.monotonic()
        for name in complete(self.expected, seen):
            self.completed_at.setdefault(name, now)
        return seen

    def wait(self, seconds: float) -> None:
        """Watch the stand-ins (completion times are kept) for `seconds`."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.poll()
            time.sleep(min(POLL_SECONDS, max(0.0, until - time.monotonic())))

    def judge(self) -> list[Row]:
        """Watch until everything is there and nothing is owed, or the ceiling; then count."""
        seen = self.poll()
        while True:
            everything = complete(self.expected, seen) == set(self.expected)
            owed = hub.open_work(self.event_ids) if self.event_ids else 0
            if (everything and owed == 0) or time.monotonic() >= self.ceiling:
                break
            time.sleep(POLL_SECONDS)
            seen = self.poll()
        if owed:
            self.notes.append(f"{owed} deliveries still open at the ceiling")
        recovered = {n: round(t - self.reference, 1) for n, t in self.completed_at.items()}
        rows = rows_for(
            self.key,
            self.expected,
            seen,
            vendor_requests(self.system.sandbox, self.baseline),
            recovered,
            logged(self.index.users),
            self.index.events_per_person(),
            visibly_failed(hub.failed(self.event_ids), self.index),
        )
        rows += self.extra
        if any(not r.ok or r.failed for r in rows) and self.event_ids:
            unsettled = {k: n for k, n in hub.states(self.event_ids).items() if k[1] != "delivered"}
            shown = ", ".join(f"{i} {s} [{e}] x{n}" for (i, s, e), n in sorted(unsettled.items()))
            self.notes.append(f"delivery states not delivered: {shown or 'none'}")
        for hook in self.after:
            hook(self)
        self.load_end = load()
        return rows


# --------------------------------------------------------------------------- the scenarios


def burst(run: Run, sizes: Sizes) -> None:
    people = mixed(sizes.burst)
    run.expect(people)
    run.reference = time.monotonic()
    run.post(people)
    run.ceiling = run.reference + 180

    def share(r: Run) -> None:
        logs = {w.name: w.log for w in r.system.workers}
        found = hub.worker_share(r.event_ids, logs)
        r.notes.append(
            "worker share: "
            + ", ".join(f"{w} {v['events']} events in {v['runs']} runs" for w, v in found.items())
        )

    run.after.append(share)


def kill_worker(run: Run, sizes: Sizes) -> None:
    if len(run.system.workers) < 1:
        raise RuntimeError("the kill scenario needs a worker")
    victim = run.system.workers[0]
    name = victim.args[victim.args.index("--name") + 1]
    people = mixed(sizes.kill)
    run.expect(people)
    run.post(people)
    deadline = time.monotonic() + 120
    held = events = 0
    expiry = None
    while time.monotonic() < deadline:
        held, events, expiry = hub.leases_of(name)
        if held and vendor_requests(run.system.sandbox, run.baseline):
            break
        time.sleep(0.2)
    run.system.kill_worker(0)
    run.reference = time.monotonic()
    run.reference_label = "the kill -9"
    remaining = max(0.0, hub.seconds_until(expiry))
    run.ceiling = run.reference + remaining + RECOVERY_CEILING
    run.notes.append(
        f"killed {name} (kill -9 of its process group) holding {held} deliveries of {events} "
        f"events; its leases expired {remaining:.0f} s after the kill; ceiling = expiry + 60 s"
    )
    run.system.restart_worker(0, wait=False)


def bulk_two_destinations(run: Run, sizes: Sizes, failing_seconds: float = 15.0) -> None:
    from flows.bulk_sync import synthetic_events  # imports Prefect: after the system's environment is set

    asked = ["hubspot", "salesforce"]
    people = make_people(sizes.bulk, "user.registered")
    run.expect(people, only=asked)
    run.system.sandbox.fail("salesforce", "status", status=503, seconds=failing_seconds)
    healed = time.monotonic() + failing_seconds
    for chunk in synthetic_events("user.registered", [p.user_id for p in people], uuid.uuid4().hex, asked):
        run.event_ids += chunk
    run.reference, run.reference_label = healed, "salesforce healed"
    run.ceiling = healed + RECOVERY_CEILING
    run.notes.append(
        f"bulk sync of {len(run.event_ids)} user.registered events asking for hubspot and "
        f"salesforce; salesforce answered 503 for {failing_seconds:.0f} s"
    )


def same_person(run: Run, sizes: Sizes) -> None:
    people = make_people(1, "user.registered")
    run.expect(people)
    run.reference = time.monotonic()
    run.post(people, each=sizes.same_person, threads=sizes.same_person)
    run.ceiling = run.reference + 120
    run.notes.append(f"{sizes.same_person} user.registered events of one person posted at once")


def twilio_commit(mode: str) -> Callable[[Run, Sizes], None]:
    def scenario(run: Run, sizes: Sizes) -> None:
        people = make_people(sizes.twilio, "health_goal.completed")
        run.expect(people)
        lost_answers = max(2, sizes.twilio // 4)
        run.system.sandbox.fail("twilio", mode, count=lost_answers)  # type: ignore[arg-type]
        run.reference = time.monotonic()
        run.post(people)
        run.ceiling = run.reference + 240

        def stored(r: Run) -> None:
            n = sum(1 for q in r.requests("twilio") if q["fault"] == mode)
            r.notes.append(f"twilio {mode}: {n} sends carried out by the stand-in with the answer lost")

        run.after.append(stored)

    return scenario


def prefect_down(run: Run, sizes: Sizes, down_after_posting: float = 20.0) -> None:
    people = mixed(sizes.prefect)
    run.expect(people)
    run.system.stop_prefect()
    stopped = time.monotonic()
    statuses = run.post(people)
    run.wait(down_after_posting)
    run.system.start_prefect()
    run.reference, run.reference_label = time.monotonic(), "Prefect answering again"
    run.ceiling = run.reference + RECOVERY_CEILING
    accepted = statuses.count(202)
    run.extra.append(
        Row(
            run.key,
            "intake/202",
            len(statuses),
            accepted,
            0,
            len(statuses) - accepted,
            0,
            None,
            None,
            "POST /events while Prefect was down",
        )
    )
    run.notes.append(
        f"Prefect server down for {run.reference - stopped:.0f} s (restart included); nobody ran the drain"
    )


def vendor_503(run: Run, sizes: Sizes, seconds: float = 20.0) -> None:
    people = mixed(sizes.fault)
    run.expect(people)
    run.system.sandbox.fail("hubspot", "status", status=503, seconds=seconds)
    healed = time.monotonic() + seconds
    run.post(people)
    run.reference, run.reference_label = healed, "hubspot healed"
    run.ceiling = healed + RECOVERY_CEILING
    run.wait(max(0.0, healed - time.monotonic()))
    run.notes.append(f"hubspot answered 503 for {seconds:.0f} s")


STORM_VENDORS = ("hubspot", "mailchimp", "salesforce", "stripe", "twilio")


def rate_storm(run: Run, sizes: Sizes, seconds: float = 20.0) -> None:
    people = mixed(sizes.fault)
    run.expect(people)
    for vendor in STORM_VENDORS:
        run.system.sandbox.set_rate(vendor, per_second=1.0, retry_after=2)
    run.post(people)
    run.wait(seconds)
    for vendor in STORM_VENDORS:
        run.system.sandbox.set_rate(vendor, None)
    run.reference, run.reference_label = time.monotonic(), "the limits lifted"
    run.ceiling = run.reference + RECOVERY_CEILING

    def count_429(r: Run) -> None:
        n = sum(1 for v in STORM_VENDORS for q in r.requests(v) if q["status"] == 429)
        r.notes.append(
            f"{', '.join(STORM_VENDORS)} limited to 1 request/s (Retry-After: 2) for "
            f"{seconds:.0f} s: {n} answers were 429"
        )

    run.after.append(count_429)


def resets(run: Run, sizes: Sizes, seconds: float = 15.0) -> None:
    people = mixed(sizes.fault)
    run.expect(people)
    for vendor in VENDORS:
        run.system.sandbox.fail(vendor, "reset", seconds=seconds)
    healed = time.monotonic() + seconds
    run.post(people)
    run.reference, run.reference_label = healed, "the resets stopped"
    run.ceiling = healed + RECOVERY_CEILING
    run.wait(max(0.0, healed - time.monotonic()))

    def count_resets(r: Run) -> None:
        n = sum(1 for v in VENDORS for q in r.requests(v) if q.get("fault") == "reset")
        r.notes.append(f"every stand-in reset connections for {seconds:.0f} s: {n} requests reset")

    run.after.append(count_resets)


@dataclass(frozen=True)
class Scenario:
    key: str  # what --scenarios takes (its letter selects every scenario of that letter)
    title: str
    setup: Callable[[Run, Sizes], None]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("a-burst", "burst of events, two workers on PostgreSQL", burst),
    Scenario("b-kill", "kill -9 of a worker mid-batch, restarted", kill_worker),
    Scenario("c-bulk", "bulk sync to two destinations, one failing for a while", bulk_two_destinations),
    Scenario("d-one-person", "events of one person at once", same_person),
    Scenario("e-commit-reset", "Twilio stores the message, then resets", twilio_commit("commit_then_reset")),
    Scenario(
        "e-commit-late", "Twilio stores the message, then answers late", twilio_commit("commit_then_late")
    ),
    Scenario("f-prefect-down", "Prefect server stopped while events are posted", prefect_down),
    Scenario("g-vendor-503", "a vendor answers 503 for 20 s", vendor_503),
    Scenario("h-429-storm", "429 storm with Retry-After", rate_storm),
    Scenario("i-resets", "connection resets for a while", resets),
)


def prepare(system: System) -> list[str]:
    """Between scenarios: stand-ins healed, nothing left open, every circuit closed.

    The stand-ins are not reset: a reset would also forget the tokens and sessions the connectors hold
    (a 401 each, an attempt spent), which is not the trouble being measured. Each scenario has people of
    its own, and its requests are counted from a baseline.
    """
    from ennu.circuit import reset_circuit

    notes = []
    for vendor in VENDORS:
        system.sandbox.heal(vendor)
        system.sandbox.set_rate(vendor, None)
    left = hub.cancel_leftovers()
    if left:
        notes.append(f"{left} deliveries left open by the previous scenario were cancelled first")
    for integration in (
        "hubspot",
        "mailchimp",
        "stripe",
        "salesforce",
        "ga4",
        "zapier",
        "twilio",
        "epic_fhir",
        "slack",
        "teams",
    ):
        reset_circuit(integration)
    return notes


def run_scenario(system: System, scenario: Scenario, sizes: Sizes) -> tuple[Run, list[Row]]:
    notes = prepare(system)
    run = Run(system, scenario.key, scenario.title, baseline=request_counts(system.sandbox))
    run.notes += notes
    scenario.setup(run, sizes)
    return run, run.judge()
