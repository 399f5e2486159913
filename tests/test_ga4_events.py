"""GA4 events of every routed event type, end to end through the flows to the stand-in: pseudonymous ids,
coarse summaries only, marketing consent, the request floor, and goal_completed as a key event."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.ga4.connector import Ga4Connector
from connectors.ga4.settings import Ga4Settings
from connectors.registry import CONNECTORS
from connectors.settings import SettingsError
from devtools.routing import routing_copy
from ennu.db import session_scope
from ennu.models import Biomarker
from ennu.pseudonyms import person_pseudonym
from ennu.settings import get_settings, reload_settings
from flows.registry import EVENT_FLOWS
from mappings import load_all_mappings
from mappings.routing import load_routing
from tests.factories import add_assessment, add_event, add_goal, add_person

REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
# What no GA4 event may carry: the factories' contact data and the result's marker, value, unit and code.
NEVER_SENT = ("example.com", "Ada", "Tester", "555", "Lose 5 kg", "testosterone", "612", "ng/dL", "2986-8")


def _testosterone(user_id: int) -> int:
    """A result whose marker alone hints at a condition (hormone therapy): never named to analytics."""
    with session_scope() as session:
        row = Biomarker(
            user_id=user_id,
            name="testosterone_total",
            loinc_code="2986-8",
            value=612.0,
            unit="ng/dL",
            observed_at=datetime(2026, 11, 2, 7, 30, tzinfo=UTC),
        )
        session.add(row)
        session.flush()
        return row.id


# event type -> (GA4 event name, make the resource of a person, the params beside event_id)
EVENTS: dict[str, tuple[str, Callable[[int], int | None], dict[str, Any]]] = {
    "user.registered": ("sign_up", lambda _: None, {}),
    "user.login": ("login", lambda _: None, {}),
    "assessment.completed": ("assessment_completed", add_assessment, {"assessment_type": "sleep"}),
    "health_goal.created": ("goal_created", add_goal, {"goal_category": "fitness"}),
    "health_goal.completed": (
        "goal_completed",
        lambda user_id: add_goal(user_id, kind="balance_hormones", status="completed"),
        {"goal_category": "clinical"},
    ),
    "biomarker.updated": ("biomarker_recorded", _testosterone, {"result_kind": "lab"}),
}


def test_every_ga4_route_has_an_end_to_end_case_and_meets_the_published_limits() -> None:
    routing = load_routing(REPO_MAPPINGS / "routing.yaml", local=True)
    routed = sorted(t for t in routing.routes if "ga4" in [s.connector for s in routing.routes_for(t)])
    assert routed == sorted(EVENTS)
    assert routing.integrations["ga4"].consent == "marketing"
    mappings = load_all_mappings(REPO_MAPPINGS)
    for event_type, (name, _, params) in EVENTS.items():
        mapping = mappings[(event_type, "ga4")]
        assert mapping.fields["name"].value == name and len(name) <= 40
        sent = [f for f in mapping.fields if f.startswith("params.")]
        assert sorted(sent) == sorted(["params.event_id", *(f"params.{p}" for p in params)])
        assert len(sent) <= 25
        assert mapping.fields["client_id"].transforms[0].name == "pseudonym"
        assert mapping.fields["user_id"].transforms[0].name == "pseudonym"


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("event_type", sorted(EVENTS))
def test_each_event_reaches_ga4_under_pseudonymous_ids_with_its_summary_only(
    database: str, sandbox: Any, event_type: str
) -> None:
    name, make, params = EVENTS[event_type]
    user_id = add_person()
    without_consent = add_person(marketing=False)
    event_ids = [add_event(event_type, person, make(person)) for person in (user_id, without_consent)]

    EVENT_FLOWS[event_type](event_ids=event_ids)

    [stored] = sandbox.objects("ga4", "events")  # the person without marketing consent: nothing
    pseudonym = person_pseudonym(user_id)
    assert (stored["name"], stored["client_id"], stored["user_id"]) == (name, pseudonym, pseudonym)
    assert stored["params"] == {"event_id": event_ids[0], **params}
    assert sandbox.objects("ga4", "dropped") == []
    assert not [word for word in NEVER_SENT if word in str(sandbox.bodies("ga4"))]


@pytest.fixture()
def ga4_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    copy = routing_copy(tmp_path / "mappings", disable=[n for n in CONNECTORS if n != "ga4"])
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(copy))
    reload_settings()
    yield
    monkeypatch.delenv("ENNU_MAPPINGS_DIR")
    reload_settings()


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_a_hundred_logins_of_four_people_cost_four_requests(
    sqlite_database: str, sandbox: Any, ga4_only: None
) -> None:
    people = [add_person() for _ in range(4)]
    event_ids = [add_event("user.login", people[n % 4], event_id=f"login-{n:03d}") for n in range(100)]

    EVENT_FLOWS["user.login"](event_ids=event_ids)

    assert len(sandbox.objects("ga4", "events")) == 100
    bodies = [b["body"] for b in sandbox.bodies("ga4") if b["path"] == "/ga4/mp/collect"]
    assert sorted(len(b["events"]) for b in bodies) == [25, 25, 25, 25]  # one client, ≤25: the floor
    assert {b["client_id"] for b in bodies} == {person_pseudonym(p) for p in people}
    assert len(sandbox.requests("ga4")) == 4


# --------------------------------------------------------------------------- key events


@pytest.fixture()
def ga4(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ga4Connector]:
    for name in ("GA4_API_SECRET", "GA4_MEASUREMENT_ID", "GA4_BASE_URL", "GA4_KEY_EVENTS"):
        monkeypatch.delenv(name, raising=False)
    connector = Ga4Connector.from_settings(get_settings(), rate_limited=False)
    yield connector
    connector.close()


def test_the_connection_test_marks_goal_completed_a_key_event_once(ga4: Ga4Connector, sandbox: Any) -> None:
    first = ga4.test_connection()
    again = ga4.test_connection()

    assert first.ok and first.detail == "sample event validated; key events goal_completed (1 created)"
    assert again.detail == "sample event validated; key events goal_completed (0 created)"
    [marked] = sandbox.objects("ga4", "key_events")
    assert (marked["eventName"], marked["countingMethod"]) == ("goal_completed", "ONCE_PER_EVENT")
    assert marked["name"].startswith("properties/123456789/keyEvents/")
    posts = [r for r in sandbox.requests("ga4") if r["path"].endswith("/keyEvents") and r["method"] == "POST"]
    assert len(posts) == 1
    from tests.test_ga4 import event

    ga4.push(
        "events",
        "client_id",
        [event(1, name="goal_completed"), event(2, name="goal_created")],
    )
    assert {e["name"]: e["key_event"] for e in sandbox.objects("ga4", "events")} == {
        "goal_completed": True,  # GA4 counts it as a key event: its name is one of the property's
        "goal_created": False,
    }


def test_only_the_missing_key_events_are_created_and_one_made_meanwhile_is_taken_as_marked(
    ga4: Ga4Connector, sandbox: Any
) -> None:
    from connectors.ga4.connector import KEY_EVENTS_PATH
    from connectors.ga4.errors import ADMIN_TABLE

    assert ga4.ensure_key_events() == ["goal_completed"]
    ga4.key_events = ("goal_completed", "sign_up")
    assert ga4.ensure_key_events() == ["sign_up"]
    assert sorted(k["eventName"] for k in sandbox.objects("ga4", "key_events")) == [
        "goal_completed",
        "sign_up",
    ]
    assert ga4.admin is not None
    # Another process created it between our list and our create: ALREADY_EXISTS is read, not retried.
    raced = ga4.admin.http.request(
        "POST",
        KEY_EVENTS_PATH.format(property=ga4.admin.property_id),
        json={"eventName": "sign_up", "countingMethod": "ONCE_PER_EVENT"},
        allow_statuses=ADMIN_TABLE.expect("key event exists"),
    )
    assert raced.status_code == 409 and len(sandbox.objects("ga4", "key_events")) == 2


def test_without_the_admin_api_the_check_says_to_mark_them_by_hand(ga4: Ga4Connector, sandbox: Any) -> None:
    ga4.admin = None

    check = ga4.test_connection()

    assert check.ok and "key events goal_completed: mark them in GA4 Admin" in check.detail
    assert [r["path"] for r in sandbox.requests("ga4")] == ["/ga4/debug/mp/collect"]


def test_key_event_names_are_checked_like_event_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GA4_KEY_EVENTS", "goal_completed, sign_up")
    assert Ga4Settings.load().key_events == ("goal_completed", "sign_up")
    monkeypatch.setenv("GA4_KEY_EVENTS", "none")
    assert Ga4Settings.load().key_events == ()
    for bad, code in (("goal-completed", "NAME_INVALID"), ("session_start", "NAME_RESERVED"), ("a" * 41, "")):
        monkeypatch.setenv("GA4_KEY_EVENTS", f"goal_completed,{bad}")
        with pytest.raises(SettingsError) as refused:
            Ga4Settings.load()
        assert "GA4_KEY_EVENTS" in str(refused.value) and code in str(refused.value)
        assert bad not in str(refused.value)


def test_the_admin_stand_in_refuses_a_key_event_google_would(ga4: Ga4Connector) -> None:
    import requests

    assert ga4.admin is not None
    http = ga4.admin.http  # signed in as the service account (its session's auth fetches the token)
    url = http.url("/v1beta/properties/123456789/keyEvents")
    bad_name = http.session.post(
        url, json={"eventName": "1x", "countingMethod": "ONCE_PER_EVENT"}, timeout=10
    )
    no_method = http.session.post(url, json={"eventName": "sign_up"}, timeout=10)
    first = http.session.post(
        url, json={"eventName": "sign_up", "countingMethod": "ONCE_PER_SESSION"}, timeout=10
    )
    twice = http.session.post(
        url, json={"eventName": "sign_up", "countingMethod": "ONCE_PER_EVENT"}, timeout=10
    )
    other_property = http.session.get(url.replace("123456789", "987"), timeout=10)

    assert (bad_name.status_code, bad_name.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert (no_method.status_code, no_method.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert first.status_code == 200 and first.json()["countingMethod"] == "ONCE_PER_SESSION"
    assert (twice.status_code, twice.json()["error"]["status"]) == (409, "ALREADY_EXISTS")
    assert other_property.status_code == 403
    assert requests.get(url, timeout=10).status_code == 401  # no token
    listed = http.session.get(url, params={"pageSize": 1}, timeout=10).json()
    assert [k["eventName"] for k in listed["keyEvents"]] == ["sign_up"] and "nextPageToken" not in listed


def test_every_mapped_event_passes_the_validation_server(ga4: Ga4Connector) -> None:
    """Each GA4 mapping applied to a synthetic row, as the Measurement Protocol request we would send, gets
    no validation message from /debug/mp/collect (the stand-in words GA4's checks)."""
    import pandas as pd

    from connectors.base import Record
    from connectors.ga4.connector import as_event, request_bodies, wire_problem
    from intake.zapier import sample_value
    from mappings import apply_mapping

    mappings = load_all_mappings(REPO_MAPPINGS)
    for event_type in EVENTS:
        mapping = mappings[(event_type, "ga4")]
        columns = mapping.source_columns | {f"{mapping.record}.id", "event.id", "user.id"}
        row = apply_mapping(mapping, pd.DataFrame([{c: sample_value(c) for c in sorted(columns)}])).iloc[0]
        record = Record(
            str(row["_record_key"]), str(row["_event_id"]), 1, {f: row[f] for f in mapping.fields}
        )
        assert wire_problem(record.fields) is None, event_type
        [(body, _)] = request_bodies([as_event(record)])
        assert ga4.validate(body) == [], event_type
