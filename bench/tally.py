"""Counting at the stand-ins: what each destination holds, attributed to the bench's people by their ids."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.people import EVENT_TYPES as BENCH_EVENT_TYPES
from bench.people import GOAL_KIND, Person
from ennu.db import session_scope
from ennu.follow_up import FILTER_PREFIX, follow_ups_for
from ennu.models import SyncLog
from ennu.settings import get_settings
from mappings import load_all_mappings
from mappings.routing import load_routing
from sandbox.client import SandboxClient

USER_REF = re.compile(r"user(?::|_id=)(\d+)")  # `user:<id>`, or the host app's `user-edit.php?user_id=<id>`
BIOMARKER_REF = re.compile(r"biomarker-(\d+)")
LOGGED_AS_SENT = ("created", "updated", "unchanged")


@dataclass
class Index:
    """How a stand-in's object names a person: by e-mail, phone, user id, record id or event id."""

    by_email: dict[str, int] = field(default_factory=dict)
    by_phone: dict[str, int] = field(default_factory=dict)
    by_resource: dict[tuple[str, str], int] = field(default_factory=dict)  # (event type, id) -> user
    by_event: dict[str, int] = field(default_factory=dict)
    users: set[int] = field(default_factory=set)

    def add(self, person: Person, event_id: str | None = None) -> None:
        self.by_email[person.email.lower()] = person.user_id
        self.by_phone[person.phone] = person.user_id
        self.users.add(person.user_id)
        if person.resource is not None:
            self.by_resource[(person.event_type, str(person.resource))] = person.user_id
        if event_id is not None:
            self.by_event[event_id] = person.user_id

    def events_per_person(self) -> Counter[int]:
        """How many of the scenario's events each person has (the posted ones, by their ids)."""
        return Counter(self.by_event.values())

    def user(self, value: Any) -> int | None:
        try:
            number = int(str(value))
        except ValueError:
            return None
        return number if number in self.users else None


# Whose an object is: one person (None: someone else's), or several for an object that carries several
# (a care-team digest: up to DIGEST_LIMIT notices in one chat message).
Key = Callable[[dict[str, Any], Index], int | list[int | None] | None]


def _props(o: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = o.get("properties") or {}
    return found


def _fhir_value(o: dict[str, Any], system_part: str) -> str | None:
    for identifier in o.get("identifier") or []:
        if system_part in str(identifier.get("system", "")):
            return str(identifier.get("value"))
    return None


def _observation_user(o: dict[str, Any], ix: Index) -> int | None:
    value = _fhir_value(o, "biomarker") or ""
    return ix.by_resource.get(("biomarker.updated", value.removeprefix("biomarker-")))


def _goal_user(goal_id: Any, ix: Index) -> int | None:
    return ix.by_resource.get(("health_goal.completed", str(goal_id)))


def _notice_users(notice: dict[str, Any], ix: Index) -> list[int | None]:
    """A care-team message names no person: each notice's link carries the result's id (`biomarker-<id>`),
    or the host user's (`user_id=<id>`); a digest carries several notices, each counted as a send."""
    text = json.dumps(notice)
    results = BIOMARKER_REF.findall(text)
    if results:
        return [ix.by_resource.get(("biomarker.updated", found)) for found in results]
    return [ix.user(found) for found in USER_REF.findall(text)] or [None]


@dataclass(frozen=True)
class Destination:
    """One kind of object at one stand-in, the mapping objects whose sends put it there, and whose it is.

    Which event types reach it is not written here: `routed_types` reads it from the routing table and the
    mappings, so a new route is counted (or refused, when it fills a kind of object nothing here counts).
    """

    name: str  # the row's name: stand-in/kind
    integration: str  # the hub's name (deliveries, sync log, routing.yaml)
    # The objects of the integration's mappings (`object:`) whose sends store it: the sync log's too.
    fills: tuple[str, ...]
    key: Key
    per_send: bool = False  # every send stores a new object (a message, an event, a hook call)
    logged: bool = True  # False: stored along with another object's send, never logged on its own

    @property
    def vendor(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def kind(self) -> str:
        return self.name.split("/", 1)[1]


DESTINATIONS: tuple[Destination, ...] = (
    Destination("hubspot/contacts", "hubspot", ("contacts",),
                lambda o, ix: ix.by_email.get(str(_props(o).get("email", "")).lower())),
    Destination("hubspot/deals", "hubspot", ("deals",),
                lambda o, ix: _goal_user(_props(o).get("ennu_goal_id"), ix)),
    # The follow-ups write the member first, then its event (connectors/mailchimp).
    Destination("mailchimp/members", "mailchimp", ("members", "assessment_followups", "goal_followups"),
                lambda o, ix: ix.by_email.get(str(o.get("email_address", "")).lower())),
    Destination("stripe/customers", "stripe", ("customers",),
                lambda o, ix: ix.by_email.get(str(o.get("email", "")).lower())),
    Destination("salesforce/Contact", "salesforce", ("Contact",),
                lambda o, ix: ix.user(o.get("ENNU_User_Id__c"))),
    Destination("salesforce/Opportunity", "salesforce", ("Opportunity",),
                lambda o, ix: _goal_user(o.get("ENNU_Goal_Id__c"), ix)),
    Destination("ga4/events", "ga4", ("events",),
                lambda o, ix: ix.by_event.get(str((o.get("params") or {}).get("event_id"))), per_send=True),
    Destination("zapier/payloads", "zapier", ("hooks",),
                lambda o, ix: ix.by_event.get(str((o.get("payload") or {}).get("id"))), per_send=True),
    Destination("twilio/messages", "twilio", ("messages",),
                lambda o, ix: ix.by_phone.get(str(o.get("to"))), per_send=True),
    # A survey's Observations (assessment.completed) name no biomarker: only the results' are counted.
    Destination("fhir/Observation", "epic_fhir", ("observations",), _observation_user),
    Destination("fhir/Patient", "epic_fhir", ("observations", "surveys"),
                lambda o, ix: ix.user(_fhir_value(o, "user-id")), logged=False),
    Destination("slack/messages", "slack", ("messages",), _notice_users, per_send=True),
    Destination("teams/messages", "teams", ("messages",), _notice_users, per_send=True),
)  # fmt: skip
VENDORS = tuple(dict.fromkeys(d.vendor for d in DESTINATIONS))


def keeps_bench_people(where: str | None) -> bool:
    """Whether a route's filter (`where:`) keeps the bench's people, whose records bench/people.py makes:
    every result critical, every goal completed and of one kind. A filter the bench has not been told
    about raises, so a new one cannot leave the tally counting the wrong people."""
    if where is None or where == "critical_biomarker":
        return True
    if where == "goal_active":
        return False
    if where.startswith(FILTER_PREFIX):
        settings = get_settings()
        follow_ups = follow_ups_for(GOAL_KIND, settings.goal_follow_up, settings.goal_follow_up_by_kind)
        return where.removeprefix(FILTER_PREFIX) in follow_ups
    raise ValueError(f"the tally does not know whether route filter {where!r} keeps the bench's people")


def routed_types(mappings_dir: Path) -> dict[str, set[str]]:
    """Destination -> the bench's event types whose routes put objects there: the enabled routes of the
    routing table in local mode (as the bench's system runs), each through its mapping's object."""
    table = load_routing(mappings_dir / "routing.yaml", local=True)
    mappings = load_all_mappings(mappings_dir)
    routed: dict[str, set[str]] = {d.name: set() for d in DESTINATIONS}
    for event_type in BENCH_EVENT_TYPES:
        for spec in table.routes_for(event_type):
            if not keeps_bench_people(spec.where):
                continue
            filled = mappings[(event_type, spec.mapping_name)].object
            reached = [d for d in DESTINATIONS if d.integration == spec.connector and filled in d.fills]
            if not reached:
                raise ValueError(
                    f"{event_type} -> {spec.connector}/{filled}: no stand-in object of the tally counts it"
                )
            for d in reached:
                routed[d.name].add(event_type)
    return routed


def expected_for(
    people: Iterable[Person], mappings_dir: Path, only: Sequence[str] | None = None
) -> dict[str, set[int]]:
    """Destination -> the people it should hold; `only`: the integrations asked for (a bulk sync's)."""
    routed = routed_types(mappings_dir)
    wanted: dict[str, set[int]] = {}
    for d in DESTINATIONS:
        if only is not None and d.integration not in only:
            continue
        users = {p.user_id for p in people if p.event_type in routed[d.name]}
        if users:
            wanted[d.name] = users
    return wanted


def _owners(found: int | list[int | None] | None) -> list[int | None]:
    return found if isinstance(found, list) else [found]


def observe(sandbox: SandboxClient, ix: Index) -> dict[str, Counter[int | None]]:
    """Destination -> how many objects each person has there (None: someone else's, e.g. an earlier run's)."""
    seen: dict[str, Counter[int | None]] = {}
    for d in DESTINATIONS:
        objects = sandbox.objects(d.vendor, d.kind)
        if objects:
            seen[d.name] = Counter(owner for o in objects for owner in _owners(d.key(o, ix)))
    return seen


def request_counts(sandbox: SandboxClient) -> dict[str, int]:
    """Requests each stand-in has received so far."""
    return {v: len(sandbox.requests(v)) for v in VENDORS}


def vendor_requests(sandbox: SandboxClient, since: dict[str, int] | None = None) -> dict[str, int]:
    """Requests each stand-in received after `since` (counts from `request_counts`); only those with any."""
    now = request_counts(sandbox)
    return {v: n - (since or {}).get(v, 0) for v, n in now.items() if n - (since or {}).get(v, 0) > 0}


def visibly_failed(dead_letters: Iterable[tuple[str, str]], ix: Index) -> dict[str, set[int]]:
    """Integration -> the people (by their events' ids) of these failed (event, integration) deliveries."""
    out: dict[str, set[int]] = {}
    for event_id, integration in dead_letters:
        user = ix.by_event.get(event_id)
        if user is not None:
            out.setdefault(integration, set()).add(user)
    return out


def logged(users: Iterable[int]) -> dict[tuple[str, str], Counter[int]]:
    """(integration, object) -> per person, how many sync-log rows say it was sent (created/updated/...)."""
    ids = sorted(set(users))
    out: dict[tuple[str, str], Counter[int]] = {}
    with session_scope() as session:
        for start in range(0, len(ids), 500):
            rows = session.execute(
                select(SyncLog.connector, SyncLog.object, SyncLog.user_id, SyncLog.status, func.count())
                .where(SyncLog.user_id.in_(ids[start : start + 500]), SyncLog.status.in_(LOGGED_AS_SENT))
                .group_by(SyncLog.connector, SyncLog.object, SyncLog.user_id, SyncLog.status)
            ).all()
            for connector, obj, user_id, status, n in rows:
                if user_id is None:  # not selected (the filter is on user ids); for the type checker
                    continue
                counter = out.setdefault((connector, obj), Counter())
                # A message-like destination logs each send as created; an upsert logs updates too.
                counter[int(user_id)] += int(n) if status == "created" else 0
                counter.setdefault(int(user_id), 0)
    return out


@dataclass
class Row:
    scenario: str
    destination: str
    expected: int
    delivered: int
    duplicated: int  # extra copies: a record created more than once for one person, a message or
    # event sent more than once for one event
    lost: int  # expected but absent after the scenario's ceiling, and not visibly failed
    stray: int  # this scenario's people's objects where none was asked for (or, at a stand-in nothing was
    # asked of, any requests during the scenario)
    recovery_s: float | None  # from the scenario's reference moment to the last expected object
    log_mismatch: int | None  # people whose sync log disagrees with the stand-in (None: not logged)
    note: str = ""
    # Expected but absent, their delivery a visible dead letter with its reason (`failed` in the status,
    # re-playable): a destination without a look-up that never sends twice (a send its worker was killed
    # with in flight) errs this way by design; never counted as lost, always shown.
    failed: int = 0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.stray == 0


def complete(expected: dict[str, set[int]], seen: dict[str, Counter[int | None]]) -> set[str]:
    """The destinations holding everything they should."""
    return {name for name, users in expected.items() if users <= set(seen.get(name, Counter()))}


def rows_for(
    scenario: str,
    expected: dict[str, set[int]],
    seen: dict[str, Counter[int | None]],
    requests: dict[str, int],
    recovered: dict[str, float],
    log: dict[tuple[str, str], Counter[int]],
    events: Counter[int] | None = None,
    failed: dict[str, set[int]] | None = None,
) -> list[Row]:
    """One row per destination that should hold something or holds anything, then stray stand-ins.

    `failed`: integration -> the people whose delivery there is visibly failed (`visibly_failed`).

    `events`: each person's events in the scenario (`Index.events_per_person`); a destination where every
    send stores a new object may hold one per event (20 events of one person: 20 GA4 hits, 20 Zaps), and
    only copies beyond that are duplicates. Without it, one a person.
    """
    per_person = events or Counter()
    rows: list[Row] = []
    by_name = {d.name: d for d in DESTINATIONS}
    ours_anywhere = {n for n, c in seen.items() if any(u is not None for u in c)}
    for name in [d.name for d in DESTINATIONS if d.name in expected or d.name in ours_anywhere]:
        d = by_name[name]
        want = expected.get(name, set())
        have = seen.get(name, Counter())
        ours = {u: n for u, n in have.items() if u in want}
        dead = (failed or {}).get(d.integration, set()) & (want - set(ours))
        mismatch: int | None = None
        if d.logged:
            says: Counter[int] = Counter()
            for logged_object in d.fills:  # `+=` keeps a person logged with 0 sends (an upsert's update)
                for user, sends in log.get((d.integration, logged_object), Counter()).items():
                    says[user] += sends
            if d.per_send:
                mismatch = sum(1 for u in want if says.get(u, 0) != have.get(u, 0))
            else:
                mismatch = sum(1 for u in want if (u in says) != (u in have))
        rows.append(
            Row(
                scenario,
                name,
                len(want),
                len(ours),
                sum(max(0, n - (max(1, per_person[u]) if d.per_send else 1)) for u, n in ours.items()),
                len(want - set(ours) - dead),
                sum(n for u, n in have.items() if u is not None and u not in want),
                recovered.get(name),
                mismatch,
                failed=len(dead),
            )
        )
    asked = {by_name[n].vendor for n in expected}
    for vendor, n in requests.items():
        if vendor not in asked:
            rows.append(Row(scenario, f"{vendor}/(requests)", 0, 0, 0, 0, n, None, None, "not asked for"))
    return rows
