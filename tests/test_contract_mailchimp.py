"""Contract: our Mailchimp requests match what mailchimp-marketing (the official SDK) sends.

Same operation, both against the capturing endpoint on loopback: method, path, query, Basic auth with the
API key as password, content type and JSON body (field order and the SDK's User-Agent aside).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import mailchimp_marketing
import pytest

from connectors.base import Person, Record
from connectors.mailchimp.connector import (
    GOAL_FOLLOWUPS,
    JOURNEY_MEMBERS,
    MailchimpConnector,
    subscriber_hash,
)
from connectors.mailchimp.journey import JourneyStep
from connectors.mailchimp.merge_fields import MergeField
from connectors.mailchimp.segments import SegmentSpec, tag_condition
from connectors.mailchimp.tag_state import PersonFacts
from ennu.settings import reload_settings
from tests.capture import Captured, CapturingEndpoint

API_KEY = "0123456789abcdef0123456789abcdef-us21"
LIST_ID = "a1b2c3d4e5"
EMAIL = "ada@example.com"
HASH = subscriber_hash(EMAIL)
SCORE = MergeField("SCORE", "ENNU overall score", "number")
JOURNEY = JourneyStep(11, 22)
MEMBER = {
    "email_address": EMAIL,
    "status": "subscribed",
    "merge_fields": {"FNAME": "Ada", "SCORE": 7.5},
    "tags": ["goal:lose-weight"],
}
BASE = "/3.0"


class Remembered:
    def __init__(self) -> None:
        self.ensured: set[str] = set()

    def is_ensured(self, wanted: str) -> bool:
        return wanted in self.ensured

    def remember(self, wanted: str) -> None:
        self.ensured.add(wanted)


def record() -> Record:
    fields = {
        "email_address": EMAIL,
        "status_if_new": "subscribed",
        "merge_fields.FNAME": "Ada",
        "merge_fields.SCORE": 7.5,
        "tags": "goal:lose-weight",
    }
    return Record("user:42", "evt-1", 42, fields)


def basic_password(request: Captured) -> str:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded).decode().partition(":")[2]


def json_or_none(body: bytes) -> Any:
    """The JSON a request carries; the SDK sends `null` for a body-less POST, we send nothing."""
    return json.loads(body) if body else None


def assert_same_request(ours: Captured, sdk: Captured) -> None:
    assert (ours.method, ours.path, ours.query) == (sdk.method, sdk.path, sdk.query)
    assert basic_password(ours) == basic_password(sdk) == API_KEY
    assert json_or_none(ours.body) == json_or_none(sdk.body)
    if ours.body:
        assert ours.headers["content-type"] == sdk.headers["content-type"] == "application/json"


@pytest.fixture()
def pair(
    endpoint: CapturingEndpoint, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[MailchimpConnector, Any]]:
    monkeypatch.setenv("MAILCHIMP_API_KEY", API_KEY)
    monkeypatch.setenv("MAILCHIMP_BASE_URL", f"{endpoint.url}{BASE}")
    monkeypatch.setenv("MAILCHIMP_LIST_ID", LIST_ID)
    settings = reload_settings()
    configured = MailchimpConnector.from_settings(settings, rate_limited=False)
    connector = MailchimpConnector(
        configured.http, configured.list_id, merge_fields=(SCORE,), memory=Remembered(), journey=JOURNEY
    )
    sdk = mailchimp_marketing.Client()
    sdk.set_config({"api_key": API_KEY, "server": "us21"})
    sdk.api_client.host = f"{endpoint.url}{BASE}"
    endpoint.answer("POST", f"{BASE}/lists/{LIST_ID}", 200, {
        "new_members": [{"id": HASH, "email_address": EMAIL}], "updated_members": [], "errors": [],
    })  # fmt: skip
    endpoint.answer("GET", f"{BASE}/lists/{LIST_ID}/merge-fields", 200, {"merge_fields": []})
    endpoint.answer("POST", f"{BASE}/lists/{LIST_ID}/merge-fields", 200, {"tag": "SCORE", "merge_id": 6})
    endpoint.answer("POST", f"{BASE}{JOURNEY.path}", 200, {})
    endpoint.answer("POST", f"{BASE}/lists/{LIST_ID}/members/{HASH}/events", 200, {})
    endpoint.answer("GET", f"{BASE}/lists/{LIST_ID}/segments", 200, {"segments": [], "total_items": 0})
    endpoint.answer("POST", f"{BASE}/lists/{LIST_ID}/segments", 200, {"id": 5})
    endpoint.answer("POST", f"{BASE}/lists/{LIST_ID}/members/{HASH}/actions/delete-permanent", 200, {})
    endpoint.answer("DELETE", f"{BASE}/lists/{LIST_ID}/members/{HASH}", 200, {})
    endpoint.answer("GET", f"{BASE}/ping", 200, {"health_status": "Everything's Chimpy!"})
    yield connector, sdk
    connector.close()
    monkeypatch.undo()
    reload_settings()


def test_batch_subscribe_with_tags_matches_lists_batch_list_members(
    pair: tuple[MailchimpConnector, Any], endpoint: CapturingEndpoint
) -> None:
    connector, sdk = pair
    connector.subscribe("email_address", [record()])
    [ours] = endpoint.take()
    sdk.lists.batch_list_members(LIST_ID, {"members": [MEMBER], "update_existing": True})
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs)


def test_merge_field_check_and_create_match_the_sdk(
    pair: tuple[MailchimpConnector, Any], endpoint: CapturingEndpoint
) -> None:
    connector, sdk = pair
    assert connector.merge_fields.ensure() == ["SCORE"]
    ours = endpoint.take()
    sdk.lists.get_list_merge_fields(LIST_ID, count=1000)
    sdk.lists.add_list_merge_field(LIST_ID, {"tag": "SCORE", "name": "ENNU overall score", "type": "number"})
    theirs = endpoint.take()
    assert len(ours) == len(theirs) == 2
    for mine, sdks in zip(ours, theirs, strict=True):
        assert_same_request(mine, sdks)


def test_journey_trigger_matches_customer_journeys_trigger(
    pair: tuple[MailchimpConnector, Any], endpoint: CapturingEndpoint
) -> None:
    connector, sdk = pair
    connector.merge_fields.done = True  # this test compares the push's own requests
    connector.push(JOURNEY_MEMBERS, "email_address", [record()])
    batch, ours = endpoint.take()
    assert batch.path == f"{BASE}/lists/{LIST_ID}"
    sdk.customerJourneys.trigger(JOURNEY.journey_id, JOURNEY.step_id, {"email_address": EMAIL})
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs)


def test_erase_archive_and_ping_match_the_sdk(
    pair: tuple[MailchimpConnector, Any], endpoint: CapturingEndpoint
) -> None:
    connector, sdk = pair
    person = Person(42, email=EMAIL)
    connector.erase(person)
    connector.archive(person)
    connector.test_connection()
    ours = endpoint.take()
    sdk.lists.delete_list_member_permanent(LIST_ID, HASH)
    sdk.lists.delete_list_member(LIST_ID, HASH)
    sdk.ping.get()
    theirs = endpoint.take()
    assert [r.method for r in ours] == ["POST", "DELETE", "GET"]
    for mine, sdks in zip(ours, theirs, strict=True):
        assert_same_request(mine, sdks)


class CompletedGoal:
    """The host's facts of person 42: one completed weight-loss goal."""

    def of(self, user_ids: object) -> dict[int, PersonFacts]:
        return {42: PersonFacts(goals=(("lose_weight", "completed"),))}


def test_inactive_tags_and_the_member_event_match_the_sdk(
    pair: tuple[MailchimpConnector, Any], endpoint: CapturingEndpoint
) -> None:
    connector, sdk = pair
    connector.merge_fields.done = True  # this test compares the push's own requests
    connector.facts = CompletedGoal()
    tag = {"id": 5, "name": "goal:lose-weight", "type": "static"}
    endpoint.answer("GET", f"{BASE}/lists/{LIST_ID}/segments", 200, {"segments": [tag], "total_items": 1})
    endpoint.answer("POST", f"{BASE}/lists/{LIST_ID}/segments/5", 200, {
        "members_added": [], "members_removed": [{"id": HASH, "email_address": EMAIL}], "errors": [],
        "total_added": 0, "total_removed": 1, "error_count": 0,
    })  # fmt: skip
    goal = Record(
        "health_goal:7", "evt-7", 42, {"email_address": EMAIL, "properties.goal_kind": "lose_weight"}
    )
    connector.push(GOAL_FOLLOWUPS, "email_address", [goal])
    batch, look_up, removal, event = endpoint.take()
    assert json_or_none(batch.body)["members"][0]["tags"] == ["goal-completed:lose-weight"]
    # The tag that no longer holds is taken off by its static segment, many members a request.
    sdk.lists.list_segments(LIST_ID, count=1000, offset=0)
    sdk.lists.batch_segment_members({"members_to_remove": [EMAIL]}, LIST_ID, 5)
    sdk.lists.create_list_member_event(
        LIST_ID,
        HASH,
        {"name": "goal_completed", "properties": {"goal_kind": "lose_weight", "ennu_event_id": "evt-7"}},
    )
    sdk_look_up, sdk_removal, sdk_event = endpoint.take()
    assert_same_request(look_up, sdk_look_up)
    assert_same_request(removal, sdk_removal)
    assert_same_request(event, sdk_event)


def test_segment_look_up_and_creation_match_the_sdk(
    pair: tuple[MailchimpConnector, Any], endpoint: CapturingEndpoint
) -> None:
    connector, sdk = pair
    connector.segments.wanted = (SegmentSpec("ENNU goal: lose-weight", "goal:lose-weight"),)
    connector.segments.done = False
    assert connector.segments.ensure() == ["ENNU goal: lose-weight"]
    ours = endpoint.take()
    sdk.lists.list_segments(LIST_ID, count=1000, offset=0)
    sdk.lists.create_segment(LIST_ID, {"name": "goal:lose-weight", "static_segment": []})
    sdk.lists.create_segment(LIST_ID, {"name": "ENNU goal: lose-weight", "options": tag_condition(5)})
    theirs = endpoint.take()
    assert len(ours) == len(theirs) == 3
    for mine, sdks in zip(ours, theirs, strict=True):
        assert_same_request(mine, sdks)
