"""Slack and Teams notices: Block Kit and Adaptive Card payloads, vendor error strings, no personal data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from connectors.base import Record, UnsupportedObject
from connectors.errors import Action
from connectors.http import AuthError, PermanentError
from connectors.notices import DIGEST_LIMIT, NoticeConnector
from connectors.slack import SlackConnector
from connectors.slack.connector import blocks
from connectors.slack.errors import TABLE as SLACK_TABLE
from connectors.teams import TeamsConnector
from connectors.teams.connector import adaptive_card, message_card
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


def test_slack_posts_a_batch_as_one_block_kit_message_with_a_section_per_record(
    slack: SlackConnector, sandbox: Any
) -> None:
    outcomes = slack.push("messages", "id", [notice(1), notice(2)])
    assert [o.status for o in outcomes] == [SyncStatus.CREATED, SyncStatus.CREATED]
    (message,) = sandbox.objects("slack", "messages")
    assert message["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Assessment completed"},
    }
    assert [b["fields"] for b in message["blocks"][2:]] == [
        [{"type": "mrkdwn", "text": "*user*\nuser:1"}],
        [{"type": "mrkdwn", "text": "*user*\nuser:2"}],
    ]
    assert slack.test_connection().ok


def test_more_records_than_a_digest_holds_go_as_several_messages(teams: TeamsConnector, sandbox: Any) -> None:
    records = [notice(n) for n in range(1, DIGEST_LIMIT + 3)]
    outcomes = teams.push("messages", "id", records)
    assert [o.record_key for o in outcomes] == [r.record_key for r in records]
    assert {o.status for o in outcomes} == {SyncStatus.CREATED}
    cards = [m["body"]["attachments"][0]["content"] for m in sandbox.objects("teams", "messages")]
    assert [sum(b["type"] == "FactSet" for b in card["body"]) for card in cards] == [DIGEST_LIMIT, 2]


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


# The Adaptive Card schema (adaptivecards.io) as Teams renders it: versions 1.2 to 1.5, the element
# properties our cards use, and Teams' message size limit of about 28 KB.
CARD_VERSIONS = ("1.2", "1.3", "1.4", "1.5")
TEXT_BLOCK = {"type", "text", "weight", "size", "wrap"}
WEIGHTS = {"Default", "Lighter", "Bolder"}
SIZES = {"Default", "Small", "Medium", "Large", "ExtraLarge"}
TEAMS_MESSAGE_BYTES = 28_000


def assert_adaptive_card_message(payload: dict[str, Any]) -> None:
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["type"] == "AdaptiveCard" and card["version"] in CARD_VERSIONS
    assert card["body"]
    for element in card["body"]:
        if element["type"] == "TextBlock":
            assert set(element) <= TEXT_BLOCK and isinstance(element["text"], str) and element["text"]
            assert element.get("weight", "Default") in WEIGHTS and element.get("size", "Default") in SIZES
        else:
            assert element["type"] == "FactSet" and set(element) == {"type", "facts"}
            assert all(set(f) == {"title", "value"} for f in element["facts"])
            assert all(isinstance(f["title"], str) and isinstance(f["value"], str) for f in element["facts"])
    assert len(json.dumps(payload).encode()) < TEAMS_MESSAGE_BYTES


def test_adaptive_cards_follow_the_card_schema_and_teams_size_limit() -> None:
    assert_adaptive_card_message(adaptive_card("Assessment completed", "A sleep assessment.", {"user": 3}))
    huge = adaptive_card("t" * 1000, "x" * 100_000, {f"k{i}": "v" * 2000 for i in range(100)})
    assert_adaptive_card_message(huge)


def test_legacy_message_cards_carry_type_context_and_a_summary() -> None:
    for card in (message_card("Delivery failures", "3 records failed."), message_card("", "x" * 50_000)):
        assert card["@type"] == "MessageCard"
        assert card["@context"] in ("https://schema.org/extensions", "http://schema.org/extensions")
        assert card["summary"] or card["text"]
        assert len(json.dumps(card).encode()) < TEAMS_MESSAGE_BYTES


def test_teams_refuses_a_card_version_it_cannot_render(teams: TeamsConnector, sandbox: Any) -> None:
    payload = adaptive_card("Title", "Text")
    payload["attachments"][0]["content"]["version"] = "2.0"
    with pytest.raises(PermanentError) as refused:
        teams.http.request("POST", "", json=payload)
    assert (refused.value.status, refused.value.code) == (400, "InvalidRequestContent")
    assert sandbox.objects("teams", "messages") == []


def test_teams_refused_signature_defers_the_batch_instead_of_failing_the_message(
    teams: TeamsConnector, sandbox: Any
) -> None:
    sandbox.fail("teams", "status", status=401, count=1)
    with pytest.raises(AuthError) as refused:
        teams.push("messages", "id", [notice(1), notice(2)])
    assert refused.value.status == 401  # the push task defers every record of the batch for an operator
    assert len(sandbox.requests("teams")) == 1 and sandbox.objects("teams", "messages") == []


def test_a_refused_message_fails_its_records_and_a_refused_webhook_raises_for_the_batch(
    sandbox: Any,
) -> None:
    class Channel(SlackConnector):
        answers: list[Exception | None]

        def notify_many(self, title: str, text: str, fact_sets: Sequence[dict[str, Any]]) -> None:
            answer = self.answers.pop(0)
            if answer is not None:
                raise answer

    channel = Channel.from_settings(get_settings(), rate_limited=False)
    other = Record("user:9", "evt-9", 9, {**notice(9).fields, "title": "Health goal completed"})
    channel.answers = [PermanentError("slack", 400, "invalid_blocks"), None]
    outcomes = channel.push("messages", "id", [notice(1), other, notice(3)])
    assert [(o.status, o.error) for o in outcomes] == [
        (SyncStatus.FAILED, "invalid_blocks"),  # one message: notices 1 and 3
        (SyncStatus.CREATED, None),  # its own message: another title
        (SyncStatus.FAILED, "invalid_blocks"),
    ]
    channel.answers = [AuthError("slack", 403, "invalid_token")]
    with pytest.raises(AuthError):
        channel.push("messages", "id", [notice(1), notice(2)])


def test_slacks_table_reads_its_plain_text_codes() -> None:
    assert SLACK_TABLE.action(403, "invalid_token") is Action.AUTH  # the URL's token refused
    assert SLACK_TABLE.action(403, "action_prohibited") is Action.BATCH  # the channel's rules
    assert SLACK_TABLE.action(410, "channel_is_archived") is Action.BATCH
    assert SLACK_TABLE.action(429, "rate_limited") is Action.RATE_LIMITED
    assert SLACK_TABLE.action(503) is Action.RETRY


@pytest.mark.parametrize("connector", [SlackConnector, TeamsConnector])
def test_channels_write_messages_only_and_their_credential_is_the_webhook_url(
    connector: type[NoticeConnector], sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = f"{connector.name.upper()}_WEBHOOK_URL"
    assert list(connector.settings_class.secrets) == [variable]
    assert connector.batch_sizes == {"messages": DIGEST_LIMIT}
    monkeypatch.delenv(variable, raising=False)
    assert not connector.has_credentials()
    monkeypatch.setenv(variable, "https://example.invalid/hook")
    assert connector.has_credentials()
    monkeypatch.delenv(variable)
    channel = connector.from_settings(get_settings(), rate_limited=False)
    with pytest.raises(UnsupportedObject):
        channel.push("channels", "id", [notice(1)])
    assert sandbox.requests(connector.name) == []
