"""Slack and Teams notices: Block Kit and Adaptive Card payloads, vendor error strings, no personal data."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import Record
from connectors.slack import SlackConnector, blocks
from connectors.teams import TeamsConnector, adaptive_card, message_card
from ennu.models import SyncStatus
from ennu.settings import get_settings


def notice(n: int) -> Record:
    return Record(
        f"user:{n}",
        f"evt-{n}",
        n,
        {
            "id": f"user:{n}",
            "title": "Assessment completed",
            "text": "A sleep assessment was completed.",
            "user": f"user:{n}",
        },
    )


@pytest.fixture()
def slack(sandbox: Any) -> SlackConnector:
    return SlackConnector.from_settings(get_settings(), rate_limited=False)


@pytest.fixture()
def teams(sandbox: Any) -> TeamsConnector:
    return TeamsConnector.from_settings(get_settings(), rate_limited=False)


def test_slack_posts_one_block_kit_message_per_record(slack: SlackConnector, sandbox: Any) -> None:
    outcomes = slack.push("messages", "id", [notice(1), notice(2)])
    assert [o.status for o in outcomes] == [SyncStatus.CREATED, SyncStatus.CREATED]
    messages = sandbox.objects("slack", "messages")
    assert len(messages) == 2
    assert messages[0]["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Assessment completed"},
    }
    assert slack.test_connection().ok


def test_slack_plain_text_errors_become_outcome_codes(sandbox: Any) -> None:
    connector = SlackConnector.from_settings(get_settings(), rate_limited=False)
    connector.http.base_url += "archived"
    outcome = connector.push("messages", "id", [notice(1)])[0]
    assert (outcome.status, outcome.error) == (SyncStatus.FAILED, "channel_is_archived")


def test_teams_posts_an_adaptive_card(teams: TeamsConnector, sandbox: Any) -> None:
    assert teams.push("messages", "id", [notice(3)])[0].status == SyncStatus.CREATED
    card = sandbox.objects("teams", "messages")[0]["body"]["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["version"] == "1.2"


def test_payload_shapes_follow_the_published_limits() -> None:
    shaped = blocks("t" * 200, "x" * 5000, {f"k{i}": i for i in range(15)})
    assert len(shaped[0]["text"]["text"]) <= 150 and len(shaped[1]["text"]["text"]) <= 3000
    assert len(shaped[2]["fields"]) <= 10
    card = adaptive_card("Title", "Text", {"a": 1})["attachments"][0]["content"]
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert {b["type"] for b in card["body"]} == {"TextBlock", "FactSet"}
    assert message_card("T", "x")["@type"] == "MessageCard"
