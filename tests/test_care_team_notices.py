"""Care-team notices end to end: a completed assessment and a completed goal reach the Slack and Teams
stand-ins as the kind of thing, a band and a link, never a name, e-mail, score or the goal's own words;
the goal's notice is the `notice` follow-up of ENNU_GOAL_FOLLOW_UP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy import select

from connectors.registry import CONNECTORS
from devtools.routing import routing_copy
from ennu.db import session_scope
from ennu.models import SyncLog, User
from ennu.settings import LOCAL_HOST_APP_URL, Settings, reload_settings
from flows.assessment_completed import assessment_completed
from flows.health_goal_completed import health_goal_completed
from mappings.lint import routing_problems
from tests.factories import add_assessment, add_event, add_goal, add_person, completed_event

FLOW = pytest.mark.usefixtures("prefect_server")  # the flow tests; the setting and lint ones are fast
CHANNELS = ("slack", "teams")
HOST_LINK = f"{LOCAL_HOST_APP_URL}/wp-admin/user-edit.php?user_id="


def person(first_name: str) -> tuple[int, list[str]]:
    """A person and what of them must never appear in a notice: names and e-mail."""
    user_id = add_person(first_name=first_name, email=f"{first_name.lower()}.canary@example.com")
    with session_scope() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user_id, [user.first_name, user.last_name, user.email]


def received(sandbox: Any, channel: str) -> list[str]:
    """What the channel's stand-in received, one JSON text per message, in order."""
    return [json.dumps(b["body"]) for b in sandbox.bodies(channel) if b["method"] == "POST"]


def delivered(connector: str) -> list[tuple[str, str | None]]:
    with session_scope() as session:
        query = select(SyncLog.status, SyncLog.error).where(SyncLog.connector == connector)
        return sorted((status, error) for status, error in session.execute(query.order_by(SyncLog.id)))


@FLOW
def test_completed_assessments_reach_both_channels_as_type_band_and_link_only(
    database: str, sandbox: Any
) -> None:
    # Slack allows one message a second per webhook: the stand-in refuses more (429), the notices keep to it.
    sandbox.set_rate("slack", per_second=1.0, retry_after=1)
    people = []
    for name, overall, band in (("Quenby", 2.3, "low"), ("Rozalind", 5.6, "medium"), ("Sefton", 8.7, "high")):
        user_id, private = person(name)
        assessment_id = add_assessment(user_id, overall=overall, kind="hormone")
        people.append((user_id, [*private, str(overall)], band, completed_event(user_id, assessment_id)))

    assessment_completed(event_ids=[p[3] for p in people])

    # One message per channel for the batch (a digest: Slack allows one message a second per webhook, and
    # the stand-in, told so, would answer a faster second one 429); each person a section of it.
    assert [r["status"] for r in sandbox.requests("slack")] == [200]
    assert [r["status"] for r in sandbox.requests("teams")] == [202]  # Workflows' answer
    for channel in CHANNELS:
        (text,) = received(sandbox, channel)
        assert text.count("Hormone") == 3 and "Assessment completed" in text
        for user_id, private, _, _ in people:
            assert f"{HOST_LINK}{user_id}" in text
            # The PHI canary: no name, e-mail or score (overall or per category) in what the channel got.
            for value in [*private, "6.5", "8.0"]:
                assert value not in text, (channel, value)
        assert delivered(channel) == [("created", None)] * 3
    (message,) = sandbox.objects("slack", "messages")
    shown = [
        {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in b["fields"]}
        for b in message["blocks"][2:]
    ]
    assert [(s["*Band*"], s["*Link*"]) for s in shown] == [
        (band, f"{HOST_LINK}{u}") for u, _, band, _ in people
    ]
    (card,) = sandbox.objects("teams", "messages")
    attachment = card["body"]["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["content"]["type"] == "AdaptiveCard" and attachment["content"]["version"] == "1.2"
    fact_sets = [b for b in attachment["content"]["body"] if b["type"] == "FactSet"]
    assert [{f["title"]: f["value"] for f in fs["facts"]} for fs in fact_sets] == [
        {"Assessment": "Hormone", "Band": band, "Link": f"{HOST_LINK}{u}"} for u, _, band, _ in people
    ]  # the notice key is never shown

    assessment_completed(event_ids=[p[3] for p in people])  # again: no second notice
    assert [len(received(sandbox, c)) for c in CHANNELS] == [1, 1]


@FLOW
def test_completed_goal_notice_names_the_kind_never_the_target(database: str, sandbox: Any) -> None:
    user_id, private = person("Tamsin")
    goal_id = add_goal(user_id, kind="improve_sleep", status="completed")

    health_goal_completed(event_ids=[add_event("health_goal.completed", user_id, goal_id)])

    for channel in CHANNELS:
        (text,) = received(sandbox, channel)
        assert "Health goal completed" in text and "Improve sleep" in text
        assert f"{HOST_LINK}{user_id}" in text
        for value in [*private, "Lose 5 kg by June", "5 kg"]:  # the target is the person's own words
            assert value not in text, (channel, value)
        assert delivered(channel) == [("created", None)]


@pytest.fixture()
def follow_ups(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Completed goals start no notice unless their kind says so (reduce_stress: only the notice)."""
    monkeypatch.setenv("ENNU_GOAL_FOLLOW_UP", "journey,zap")
    monkeypatch.setenv("ENNU_GOAL_FOLLOW_UP_BY_KIND", '{"reduce_stress": "notice"}')
    reload_settings()
    yield
    monkeypatch.undo()
    reload_settings()


@FLOW
def test_the_follow_up_setting_decides_which_completed_goals_notify(
    sqlite_database: str, sandbox: Any, follow_ups: None
) -> None:
    user_id = add_person()
    quiet = add_goal(user_id, kind="lose_weight", status="completed")
    noticed = add_goal(user_id, kind="reduce_stress", status="completed")
    events = [add_event("health_goal.completed", user_id, g) for g in (quiet, noticed)]

    health_goal_completed(event_ids=events)

    for channel in CHANNELS:
        (text,) = received(sandbox, channel)
        assert "Reduce stress" in text
        # The other goal's delivery is settled as not asked for, with the filter that left it out.
        assert delivered(channel) == [("created", None), ("skipped", "not selected by goal_follow_up_notice")]
    # The other routes of the event are not follow-ups: both goals' deals are won.
    assert {d["properties"]["dealstage"] for d in sandbox.objects("hubspot", "deals")} == {"closedwon"}
    assert len(sandbox.objects("hubspot", "deals")) == 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ENNU_GOAL_FOLLOW_UP", "notice,fax"), ("ENNU_GOAL_FOLLOW_UP_BY_KIND", '{"lose_weight": "sms"}')],
)
def test_an_unknown_follow_up_stops_the_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert variable in str(refused.value) and "known: notice, journey, zap" in str(refused.value)


def test_a_goal_filter_on_a_route_of_another_resource_is_refused_by_the_lint(tmp_path: Path) -> None:
    copy = routing_copy(tmp_path / "mappings")
    routing = copy / "routing.yaml"
    table = yaml.safe_load(routing.read_text())
    table["routes"]["assessment.completed"].append({"connector": "teams", "where": "goal_follow_up_notice"})
    routing.write_text(yaml.safe_dump(table))
    problems = [p for p in routing_problems(copy, CONNECTORS) if "goal_follow_up_notice" in p]
    assert problems == [
        f"{routing}: routes.assessment.completed: filter where: 'goal_follow_up_notice' reads health_goal "
        "rows; assessment.completed events carry assessment"
    ]
