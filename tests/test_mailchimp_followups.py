"""Mailchimp tags that follow the host's state, segments created once, and follow-up member events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from connectors.base import Record
from connectors.mailchimp.connector import (
    GOAL_FOLLOWUPS,
    MEMBERS,
    EventNames,
    MailchimpConnector,
    subscriber_hash,
)
from connectors.mailchimp.segments import wanted_segments
from connectors.mailchimp.settings import MailchimpSettings
from connectors.mailchimp.tag_state import PersonFacts, TagState, tag_state
from connectors.settings import SettingsError
from ennu.db import session_scope
from ennu.models import Assessment, HealthGoal, SyncStatus
from ennu.settings import get_settings, reload_settings
from flows.assessment_completed import assessment_completed
from flows.erase_user import erase_user
from flows.health_goal_completed import health_goal_completed
from flows.health_goal_created import health_goal_created
from flows.health_goal_progressed import health_goal_progressed
from tasks.host_tags import HostTagFacts
from tests.factories import add_assessment, add_event, add_goal, add_person, completed_event

LIST = "/mailchimp/3.0/lists/sandbox-list"


def member_of(sandbox: Any, user_email: str) -> dict[str, Any]:
    (found,) = [m for m in sandbox.objects("mailchimp", "members") if m["email_address"] == user_email]
    return found


def email_of(user_id: int) -> str:
    from ennu.models import User

    with session_scope() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.email


def complete_goal(goal_id: int) -> None:
    with session_scope() as session:
        goal = session.get(HealthGoal, goal_id)
        assert goal is not None
        goal.status = "completed"
        goal.completed_at = datetime(2026, 11, 20, tzinfo=UTC)


def assessed(user_id: int, overall: float, day: int, kind: str = "sleep") -> int:
    assessment_id = add_assessment(user_id, overall=overall, kind=kind)
    with session_scope() as session:
        row = session.get(Assessment, assessment_id)
        assert row is not None
        row.completed_at = datetime(2026, 11, day, 9, 20, tzinfo=UTC)
    return assessment_id


def events_of(sandbox: Any, email: str) -> list[tuple[str, dict[str, str]]]:
    """A member's events: name and properties, the host event's id (`ennu_event_id`) checked apart."""
    member_id = subscriber_hash(email)
    return [
        (e["name"], {k: v for k, v in e["properties"].items() if k != "ennu_event_id"})
        for e in sandbox.objects("mailchimp", "events")
        if e["member_id"] == member_id
    ]


def removed_tags(sandbox: Any, email: str) -> list[str]:
    """The tags requests took off this member: one static-segment request per tag names many members."""
    names = {f"{LIST}/segments/{t['id']}": t["name"] for t in sandbox.objects("mailchimp", "tags")}
    return [
        names[b["path"]]
        for b in sandbox.bodies("mailchimp")
        if b["path"] in names and email in b["body"].get("members_to_remove", [])
    ]


# --------------------------------------------------------------------------- the tag scheme


def test_tags_hold_while_the_host_state_does_and_only_a_possible_tag_is_sent_inactive() -> None:
    assert tag_state(PersonFacts()) == TagState()
    assert tag_state(PersonFacts(goals=(("lose_weight", "active"),))) == TagState(("goal:lose-weight",), ())
    completed = tag_state(PersonFacts(goals=(("lose_weight", "completed"),)))
    assert completed == TagState(("goal-completed:lose-weight",), ("goal:lose-weight",))
    # A second, open goal of the kind keeps `goal:`; the completion stays.
    both = tag_state(PersonFacts(goals=(("lose_weight", "active"), ("lose_weight", "completed"))))
    assert both == TagState(("goal:lose-weight", "goal-completed:lose-weight"), ())
    first = PersonFacts(latest_band={"sleep": "high"}, bands_held={"sleep": frozenset({"high"})})
    assert tag_state(first) == TagState(("assessment:sleep", "assessment:sleep:high"), ())
    superseded = PersonFacts(latest_band={"sleep": "low"}, bands_held={"sleep": frozenset({"high", "low"})})
    assert tag_state(superseded) == TagState(
        ("assessment:sleep", "assessment:sleep:low"), ("assessment:sleep:high",)
    )
    # Progress: the highest quarter an open goal reached; the earlier one, or all once it closed, inactive.
    halfway = PersonFacts(
        goals=(("lose_weight", "active"),),
        progress={"lose_weight": 60},
        progressed=frozenset({"lose_weight"}),
    )
    assert tag_state(halfway) == TagState(
        ("goal:lose-weight", "goal:lose-weight:50pct"), ("goal:lose-weight:25pct", "goal:lose-weight:75pct")
    )
    done = PersonFacts(goals=(("lose_weight", "completed"),), progressed=frozenset({"lose_weight"}))
    assert tag_state(done).inactive == (
        "goal:lose-weight",
        "goal:lose-weight:25pct",
        "goal:lose-weight:50pct",
        "goal:lose-weight:75pct",
    )
    # Kinds and types the scheme does not know make no tag (free text is never a tag name).
    assert (
        tag_state(PersonFacts(goals=(("run a marathon", "active"),), latest_band={"x": "low"})) == TagState()
    )


def test_segments_cover_every_goal_kind_and_assessment_type() -> None:
    names = {s.name: s.tag for s in wanted_segments()}
    assert names["ENNU goal: lose-weight"] == "goal:lose-weight"
    assert names["ENNU goal completed: reduce-stress"] == "goal-completed:reduce-stress"
    assert names["ENNU assessment: health-optimization"] == "assessment:health-optimization"
    assert len(names) == 6 + 6 + 7


# --------------------------------------------------------------------------- end to end, both databases


@pytest.mark.usefixtures("prefect_server")
def test_a_completed_goal_moves_its_tags_and_starts_the_follow_up(database: str, sandbox: Any) -> None:
    user_id = add_person()
    email = email_of(user_id)
    goal_id = add_goal(user_id)
    created = add_event("health_goal.created", user_id, goal_id)
    health_goal_created(event_ids=[created])
    assert member_of(sandbox, email)["tags"] == ["goal:lose-weight"]
    assert removed_tags(sandbox, email) == []  # nothing held before: no tags request

    complete_goal(goal_id)
    completion = add_event("health_goal.completed", user_id, goal_id)
    health_goal_completed(event_ids=[completion])

    assert member_of(sandbox, email)["tags"] == ["goal-completed:lose-weight"]
    assert removed_tags(sandbox, email) == ["goal:lose-weight"]
    assert events_of(sandbox, email) == [("goal_completed", {"goal_kind": "lose_weight"})]
    assert [e["properties"]["ennu_event_id"] for e in sandbox.objects("mailchimp", "events")] == [completion]

    # An older event arriving late (its own id, sent even though unchanged) cannot bring the tag back:
    # the tags are the host's state at push time, not the event's.
    late = add_event("health_goal.created", user_id, goal_id, event_id=f"late-created-{goal_id}")
    health_goal_created(event_ids=[late], force=True)
    assert member_of(sandbox, email)["tags"] == ["goal-completed:lose-weight"]

    segments = {s["name"]: s for s in sandbox.objects("mailchimp", "segments")}
    assert len(segments) == len(wanted_segments())  # the later runs found them: none created twice
    completed = segments["ENNU goal completed: lose-weight"]["id"]
    done = requests.get(
        f"{get_settings().sandbox_url}{LIST}/segments/{completed}/members",
        auth=("ennu", "sandbox-key-us1"),
        timeout=5,
    ).json()
    assert [m["email_address"] for m in done["members"]] == [email]


def progress(goal_id: int, percent: int) -> None:
    with session_scope() as session:
        goal = session.get(HealthGoal, goal_id)
        assert goal is not None
        goal.progress_percent = percent


@pytest.mark.usefixtures("prefect_server")
def test_goal_progress_moves_the_quarter_tag_and_a_completion_clears_it(database: str, sandbox: Any) -> None:
    user_id = add_person()
    email = email_of(user_id)
    goal_id = add_goal(user_id)
    progress(goal_id, 30)
    health_goal_progressed(event_ids=[add_event("health_goal.progressed", user_id, goal_id)])
    assert member_of(sandbox, email)["tags"] == ["goal:lose-weight", "goal:lose-weight:25pct"]
    progress(goal_id, 80)
    health_goal_progressed(event_ids=[add_event("health_goal.progressed", user_id, goal_id, event_id="p-80")])
    assert member_of(sandbox, email)["tags"] == ["goal:lose-weight", "goal:lose-weight:75pct"]
    complete_goal(goal_id)
    health_goal_completed(event_ids=[add_event("health_goal.completed", user_id, goal_id)])
    assert member_of(sandbox, email)["tags"] == ["goal-completed:lose-weight"]
    # No value leaves: the quarter is the tag; no progress field reaches the stand-in.
    assert all("progress" not in str(b["body"]) for b in sandbox.bodies("mailchimp"))


@pytest.mark.usefixtures("prefect_server")
def test_a_completed_goal_without_the_journey_follow_up_moves_its_tags_and_sends_no_event(
    sqlite_database: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENNU_GOAL_FOLLOW_UP", "notice,zap")
    reload_settings()
    user_id = add_person()
    email = email_of(user_id)
    goal_id = add_goal(user_id)
    complete_goal(goal_id)
    health_goal_completed(event_ids=[add_event("health_goal.completed", user_id, goal_id)])
    assert member_of(sandbox, email)["tags"] == ["goal-completed:lose-weight"]
    assert events_of(sandbox, email) == []


@pytest.mark.usefixtures("prefect_server")
def test_a_newer_assessment_supersedes_the_band_and_each_sends_its_follow_up(
    database: str, sandbox: Any
) -> None:
    user_id = add_person()
    email = email_of(user_id)
    first = assessed(user_id, 8.2, day=1)
    first_event = completed_event(user_id, first)
    assessment_completed(event_ids=[first_event])
    assert sorted(member_of(sandbox, email)["tags"]) == ["assessment:sleep", "assessment:sleep:high"]

    second = assessed(user_id, 3.1, day=15)
    assessment_completed(event_ids=[completed_event(user_id, second)])

    assert sorted(member_of(sandbox, email)["tags"]) == ["assessment:sleep", "assessment:sleep:low"]
    assert removed_tags(sandbox, email) == ["assessment:sleep:high"]
    assert events_of(sandbox, email) == [
        ("assessment_completed", {"assessment_type": "sleep", "score_band": "high"}),
        ("assessment_completed", {"assessment_type": "sleep", "score_band": "low"}),
    ]
    # The first assessment's event again, late and forced: the latest assessment still decides.
    assessment_completed(event_ids=[first_event], force=True)
    assert sorted(member_of(sandbox, email)["tags"]) == ["assessment:sleep", "assessment:sleep:low"]
    events = sandbox.objects("mailchimp", "events")
    assert all(set(e["properties"]) <= {"assessment_type", "score_band", "ennu_event_id"} for e in events)
    # No score anywhere in what an event carries (its time may hold any digits).
    assert not any(v in ("3.1", "8.2") for e in events for v in e["properties"].values())


@pytest.mark.usefixtures("prefect_server")
def test_without_the_marketing_flag_a_completed_goal_sends_mailchimp_nothing(
    sqlite_database: str, sandbox: Any
) -> None:
    user_id = add_person(marketing=False)
    goal_id = add_goal(user_id, status="completed")
    health_goal_completed(event_ids=[add_event("health_goal.completed", user_id, goal_id)])
    assert sandbox.requests("mailchimp") == []


@pytest.mark.usefixtures("prefect_server")
def test_erasure_removes_the_member_with_its_tags_and_events(sqlite_database: str, sandbox: Any) -> None:
    user_id = add_person()
    email = email_of(user_id)
    goal_id = add_goal(user_id, status="completed")
    health_goal_completed(event_ids=[add_event("health_goal.completed", user_id, goal_id)])
    assert events_of(sandbox, email) and member_of(sandbox, email)["tags"]

    erase_user(event_ids=[add_event("user.deletion_requested", user_id)])

    assert sandbox.objects("mailchimp", "members") == []
    assert sandbox.objects("mailchimp", "events") == []


# --------------------------------------------------------------------------- the connector at the stand-in


def followup(n: int, **properties: str) -> Record:
    fields: dict[str, Any] = {"email_address": f"person{n}@example.com", "status_if_new": "subscribed"}
    fields.update({f"properties.{k}": v for k, v in properties.items()})
    return Record(f"health_goal:{n}", f"evt-{n}", n, fields)


class Facts:
    def __init__(self, facts: dict[int, PersonFacts]) -> None:
        self.facts = facts

    def of(self, user_ids: Any) -> dict[int, PersonFacts]:
        return {u: self.facts[u] for u in user_ids if u in self.facts}


def connector(**kwargs: Any) -> MailchimpConnector:
    configured = MailchimpConnector.from_settings(get_settings(), rate_limited=False)
    return MailchimpConnector(configured.http, configured.list_id, **kwargs)


def test_segments_are_created_once_and_found_by_name_by_every_later_instance(sandbox: Any) -> None:
    assert len(connector(segments=wanted_segments()).segments.ensure()) == 19
    paths = [r["path"] for r in sandbox.requests("mailchimp")]
    assert paths.count(f"{LIST}/segments") == 1 + 19 + 19  # one look-up, each tag, each segment
    assert connector(segments=wanted_segments()).segments.ensure() == []  # a new process, a restart
    assert [r["method"] for r in sandbox.requests("mailchimp")][-1] == "GET"
    assert len([s for s in sandbox.objects("mailchimp", "segments")]) == 19
    # Tags applied later to members make them match the segment, with no write to the segment.
    facts = Facts({1: PersonFacts(goals=(("build_muscle", "active"),))})
    connector(facts=facts).push(MEMBERS, "email_address", [followup(1)])
    listed = requests.get(
        f"{get_settings().sandbox_url}{LIST}/segments",
        params={"count": 1000},
        auth=("ennu", "sandbox-key-us1"),
        timeout=5,
    ).json()["segments"]
    counts = {s["name"]: s["member_count"] for s in listed if s["type"] == "saved"}
    assert counts["ENNU goal: build-muscle"] == 1 and counts["ENNU goal: lose-weight"] == 0


def test_member_events_are_sent_for_written_members_and_refusals_fail_that_person(sandbox: Any) -> None:
    facts = Facts({1: PersonFacts(goals=(("lose_weight", "completed"),))})
    records = [
        followup(1, goal_kind="lose_weight"),
        Record("health_goal:2", "e2", 2, {"email_address": "bad"}),
    ]
    outcomes = connector(facts=facts).push(GOAL_FOLLOWUPS, "email_address", records)
    assert [o.status for o in outcomes] == [SyncStatus.CREATED, SyncStatus.FAILED]
    sent = [r["path"].removeprefix(LIST) for r in sandbox.requests("mailchimp")]
    hashed = subscriber_hash("person1@example.com")
    # `goal:lose-weight` no longer holds, but the new member does not carry it: no request takes it off.
    assert sent == ["", f"/members/{hashed}/events"]
    refused = connector(events=EventNames(goal_completed="x")).push(
        GOAL_FOLLOWUPS, "email_address", [followup(3)]
    )
    assert refused[0].status == SyncStatus.FAILED and refused[0].error == "event: http 400 Invalid Resource"


def test_the_stand_in_enforces_mailchimps_event_tag_and_segment_bodies(sandbox: Any) -> None:
    connector().push(MEMBERS, "email_address", [followup(1)])
    base = f"{get_settings().sandbox_url}{LIST}"
    auth = ("ennu", "sandbox-key-us1")
    member = f"{base}/members/{subscriber_hash('person1@example.com')}"

    def post(path: str, body: Any) -> int:
        return requests.post(path, json=body, auth=auth, timeout=5).status_code

    assert post(f"{member}/events", {"name": "a"}) == 400  # 2-30 characters
    assert post(f"{member}/events", {"name": "x" * 31}) == 400
    assert post(f"{member}/events", {"name": "has space"}) == 400
    assert post(f"{member}/events", {"name": "ok_name", "properties": {"n": 1}}) == 400  # strings only
    assert post(f"{member}/events", {"name": "assessment-completed", "properties": {"t": "sleep"}}) == 204
    assert post(f"{base}/members/{'0' * 32}/events", {"name": "ok_name"}) == 404
    assert post(f"{member}/tags", {"tags": [{"name": "goal:x", "status": "gone"}]}) == 400
    assert post(f"{member}/tags", {"tags": [{"name": "goal:x", "status": "inactive"}]}) == 204
    assert post(f"{base}/segments", {"name": "both", "static_segment": [], "options": {}}) == 400
    condition = {
        "condition_type": "StaticSegment",
        "field": "static_segment",
        "op": "static_is",
        "value": 999,
    }
    assert post(f"{base}/segments", {"name": "no tag", "options": {"conditions": [condition]}}) == 400
    assert post(f"{base}/segments", {"name": "goal:x", "static_segment": []}) == 200
    assert post(f"{base}/segments", {"name": "goal:x", "static_segment": []}) == 400  # the tag exists


def test_event_names_are_settings_checked_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCHIMP_ASSESSMENT_EVENT", "assessment done!")
    with pytest.raises(SettingsError, match="MAILCHIMP_ASSESSMENT_EVENT") as refused:
        MailchimpSettings.load()
    assert "done!" not in str(refused.value)
    monkeypatch.setenv("MAILCHIMP_ASSESSMENT_EVENT", "sleep-follow-up")
    assert MailchimpSettings.load().assessment_event == "sleep-follow-up"


def test_host_facts_carry_kinds_statuses_and_bands_only(sqlite_database: str) -> None:
    user_id = add_person()
    add_goal(user_id, kind="improve_sleep", status="completed")
    assessed(user_id, 5.0, day=3, kind="hormone")
    assessed(user_id, 9.0, day=9, kind="hormone")
    (facts,) = HostTagFacts().of([user_id, 999_999]).values()
    assert facts == PersonFacts(
        goals=(("improve_sleep", "completed"),),
        latest_band={"hormone": "high"},
        bands_held={"hormone": frozenset({"medium", "high"})},
    )
