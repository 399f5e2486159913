"""The fault suite's tally reads what each stand-in should hold from the routing table and the mappings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.people import EVENT_TYPES, Person
from bench.tally import Index, expected_for, routed_types, rows_for, visibly_failed
from devtools.routing import routing_copy
from ennu.settings import reload_settings


@pytest.fixture()
def mappings(tmp_path: Path) -> Path:
    """The repository's mappings as the bench's system runs them: the chat channels switched on."""
    return routing_copy(tmp_path / "mappings", enable=("slack", "teams"))


@pytest.fixture()
def follow_ups(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.delenv("ENNU_GOAL_FOLLOW_UP", raising=False)
    reload_settings()


def add_route(mappings: Path, event_type: str, route: str) -> None:
    routing = mappings / "routing.yaml"
    text = routing.read_text()
    head = f"  {event_type}:\n"
    assert head in text
    routing.write_text(text.replace(head, f"{head}    - {route}\n", 1))


def person(user_id: int, event_type: str) -> Person:
    return Person(user_id, f"p{user_id}@example.test", f"+1555000{user_id:04d}", event_type, user_id)


def test_every_route_of_the_bench_events_is_counted_where_it_lands(mappings: Path) -> None:
    routed = routed_types(mappings)
    # Every host event goes to GA4 and (a mapping file is a trigger) to Zapier; the goal's zap follow-up
    # and notice are on by default.
    assert routed["ga4/events"] == set(EVENT_TYPES)
    assert routed["zapier/payloads"] == set(EVENT_TYPES)
    assert routed["slack/messages"] == {"assessment.completed", "biomarker.updated", "health_goal.completed"}
    # The follow-ups write the member, and the assessment's scores upsert the Salesforce Contact.
    assert routed["mailchimp/members"] == {"assessment.completed", "user.registered", "health_goal.completed"}
    assert routed["salesforce/Contact"] == {"assessment.completed", "user.registered"}
    assert routed["fhir/Patient"] == {"assessment.completed", "biomarker.updated"}
    assert routed["stripe/customers"] == {"user.registered"}


def test_a_new_route_changes_what_the_tally_expects(mappings: Path) -> None:
    people = [person(1, "health_goal.completed"), person(2, "user.registered")]
    assert expected_for(people, mappings)["stripe/customers"] == {2}
    (mappings / "health_goal.completed" / "stripe.yaml").write_text(
        (mappings / "user.registered" / "stripe.yaml").read_text()
    )
    add_route(mappings, "health_goal.completed", "{connector: stripe}")
    assert expected_for(people, mappings)["stripe/customers"] == {1, 2}
    assert set(expected_for(people, mappings, only=["stripe"])) == {"stripe/customers"}


def test_a_switched_off_integration_is_not_expected(tmp_path: Path) -> None:
    mappings = routing_copy(tmp_path / "mappings", enable=("slack", "teams"), disable=("ga4",))
    assert "ga4/events" not in expected_for([person(1, "user.registered")], mappings)


def test_a_follow_up_switched_off_is_not_expected(mappings: Path, follow_ups: pytest.MonkeyPatch) -> None:
    follow_ups.setenv("ENNU_GOAL_FOLLOW_UP", "journey")
    reload_settings()
    routed = routed_types(mappings)
    assert "health_goal.completed" not in routed["slack/messages"] | routed["zapier/payloads"]
    assert "health_goal.completed" in routed["mailchimp/members"]


def test_a_route_to_an_object_nothing_counts_is_refused(mappings: Path) -> None:
    add_route(mappings, "user.registered", "{connector: salesforce, mapping: salesforce_lead}")
    with pytest.raises(ValueError, match="salesforce/Lead"):
        routed_types(mappings)


def test_a_send_per_event_is_no_duplicate_one_more_is(mappings: Path) -> None:
    expected = expected_for([person(1, "user.registered")], mappings)

    def duplicated(hits: int, destination: str) -> int:
        seen = {destination: Counter({1: hits}), "stripe/customers": Counter({1: hits})}
        rows = rows_for("d", expected, seen, {}, {}, {}, Counter({1: 20}))
        return next(r.duplicated for r in rows if r.destination == destination)

    assert duplicated(20, "ga4/events") == 0  # 20 events of one person: 20 hits
    assert duplicated(21, "ga4/events") == 1
    assert duplicated(20, "stripe/customers") == 19  # one customer a person, however many events


def test_a_visibly_failed_delivery_is_shown_as_failed_and_never_as_lost(mappings: Path) -> None:
    """A send never sent twice after its worker died is a dead letter with its reason, re-playable: the row
    counts it apart from the lost, and only for people the stand-in does not hold."""
    people = [person(n, "user.registered") for n in (1, 2, 3)]
    expected = expected_for(people, mappings)
    index = Index()
    for n, p in enumerate(people, start=1):
        index.add(p, f"evt-{n}")
    seen = {"zapier/payloads": Counter({1: 1})}
    dead = visibly_failed([("evt-1", "zapier"), ("evt-2", "zapier"), ("evt-9", "zapier")], index)
    [row] = [
        r for r in rows_for("b", expected, seen, {}, {}, {}, None, dead) if r.destination == "zapier/payloads"
    ]
    assert (row.expected, row.delivered, row.failed, row.lost) == (3, 1, 1, 1)
    assert not row.ok  # the third person is neither there nor visibly failed: lost
