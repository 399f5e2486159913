"""Tags that no longer hold, taken off by tag at the stand-in: one static-segment request per tag and 500."""

from __future__ import annotations

from typing import Any

import requests

from connectors.base import Outcome, Record
from connectors.mailchimp.connector import MEMBERS, MailchimpConnector
from connectors.mailchimp.tag_removal import NOT_REMOVED, SEGMENT_LIMIT, refused_reason
from connectors.mailchimp.tag_state import PersonFacts
from ennu.models import SyncStatus
from ennu.settings import get_settings

LIST = "/mailchimp/3.0/lists/sandbox-list"
AUTH = ("ennu", "sandbox-key-us1")
OUTSIDER = "not.a.member@example.com"
NOT_IN_AUDIENCE = "tags: Email addresses are not members of this audience."
BEFORE = PersonFacts(
    goals=(("lose_weight", "active"),),
    latest_band={"sleep": "high"},
    bands_held={"sleep": frozenset({"high"})},
)
AFTER = PersonFacts(
    goals=(("lose_weight", "completed"),),
    latest_band={"sleep": "low"},
    bands_held={"sleep": frozenset({"high", "low"})},
)


class SameFacts:
    """Every person has the same goals and assessments."""

    def __init__(self, facts: PersonFacts) -> None:
        self.facts = facts

    def of(self, user_ids: Any) -> dict[int, PersonFacts]:
        return {u: self.facts for u in user_ids}


def connector(facts: PersonFacts | None = None) -> MailchimpConnector:
    configured = MailchimpConnector.from_settings(get_settings(), rate_limited=False)
    return MailchimpConnector(configured.http, configured.list_id, facts=SameFacts(facts) if facts else None)


def email(n: int) -> str:
    return f"person{n}@example.com"


def people(count: int) -> list[Record]:
    return [
        Record(f"user:{n}", f"evt-{n}", n, {"email_address": email(n), "status_if_new": "subscribed"})
        for n in range(1, count + 1)
    ]


def push_all(mailchimp: MailchimpConnector, records: list[Record]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for start in range(0, len(records), 500):  # the engine's batches: 500 members each
        outcomes += mailchimp.push(MEMBERS, "email_address", records[start : start + 500])
    return outcomes


def tag_ids() -> dict[str, int]:
    listed = requests.get(
        f"{get_settings().sandbox_url}{LIST}/segments", params={"count": 1000}, auth=AUTH, timeout=5
    ).json()
    return {s["name"]: s["id"] for s in listed["segments"] if s["type"] == "static"}


def segment_requests(sandbox: Any) -> list[dict[str, Any]]:
    ids = {f"{LIST}/segments/{i}" for i in tag_ids().values()}
    return [b for b in sandbox.bodies("mailchimp") if b["path"] in ids]


def test_a_thousand_people_with_history_cost_two_requests_per_tag_that_no_longer_holds(sandbox: Any) -> None:
    records = people(1000)
    push_all(connector(BEFORE), records)
    assert {"goal:lose-weight", "assessment:sleep:high"} <= set(tag_ids())
    before = len(sandbox.requests("mailchimp"))

    outcomes = push_all(connector(AFTER), records)

    assert {o.status for o in outcomes} == {SyncStatus.UPDATED}
    tags = {m["email_address"]: sorted(m["tags"]) for m in sandbox.objects("mailchimp", "members")}
    assert tags == {
        email(n): ["assessment:sleep", "assessment:sleep:low", "goal-completed:lose-weight"]
        for n in range(1, 1001)
    }
    sent = [r["path"].removeprefix(LIST) for r in sandbox.requests("mailchimp")[before:]]
    removals = [p for p in sent if p.startswith("/segments/")]
    # Two tags no longer hold for all 1,000: each is taken off 500 members a request (the vendor's
    # floor), never one request per member; the one look-up of the tags' ids is the connector's.
    assert len(removals) == 2 * 2
    assert sent.count("") == 2 and sent.count("/segments") == 1 and len(sent) == 2 + 1 + 4
    assert all(len(b["body"]["members_to_remove"]) == 500 for b in segment_requests(sandbox))


def test_a_first_sync_sends_no_removal_and_a_tag_never_created_costs_nothing(sandbox: Any) -> None:
    # The new members do not carry `goal:lose-weight` or the sleep band `high` (the batch answer lists
    # their tags): no request takes them off, and no look-up of ids.
    outcomes = push_all(connector(AFTER), people(3))
    assert [o.status for o in outcomes] == [SyncStatus.CREATED] * 3
    sent = [r["path"].removeprefix(LIST) for r in sandbox.requests("mailchimp")]
    assert sent == [""]
    # A tag the audience never had is on nobody: skipped without a request (the look-up finds no id).
    mailchimp = connector()
    never = [(Outcome("user:1", SyncStatus.UPDATED), email(1), ("goal:build-muscle:75pct",))]
    assert mailchimp.tags.remove(never) == [never[0][0]]
    assert [r["path"].removeprefix(LIST) for r in sandbox.requests("mailchimp")] == ["", "/segments"]


def test_refused_addresses_fail_that_person_and_vendor_trouble_defers_the_rest(sandbox: Any) -> None:
    mailchimp = connector(BEFORE)
    push_all(mailchimp, people(2))
    written = Outcome("user:1", SyncStatus.UPDATED)
    outsider = Outcome("user:9", SyncStatus.UPDATED)
    refused = Outcome("user:3", SyncStatus.FAILED, error="ERROR_GENERIC")
    pending = [
        (written, email(1), ("goal:lose-weight",)),
        (outsider, OUTSIDER, ("goal:lose-weight",)),
        (refused, email(3), ("goal:lose-weight",)),  # not written: nothing sent for it
        (Outcome("user:2", SyncStatus.UPDATED), email(2), ()),
    ]
    after = mailchimp.tags.remove(pending)
    assert [(o.status, o.error) for o in after] == [
        (SyncStatus.UPDATED, None),
        (SyncStatus.FAILED, NOT_IN_AUDIENCE),
        (SyncStatus.FAILED, "ERROR_GENERIC"),
        (SyncStatus.UPDATED, None),
    ]
    [body] = [b["body"] for b in segment_requests(sandbox)]
    assert body == {"members_to_remove": [email(1), OUTSIDER]}
    tags = {m["email_address"]: m["tags"] for m in sandbox.objects("mailchimp", "members")}
    assert "goal:lose-weight" not in tags[email(1)] and "goal:lose-weight" in tags[email(2)]

    http = mailchimp.http
    before = len(sandbox.requests("mailchimp"))
    sandbox.fail("mailchimp", "status", status=503, count=1 + http.retries)  # outlasts the client's retries
    two_tags = [
        (Outcome("user:2", SyncStatus.UPDATED), email(2), ("goal:lose-weight", "assessment:sleep:high"))
    ]
    [deferred] = mailchimp.tags.remove(two_tags)
    assert deferred.status == SyncStatus.DEFERRED and deferred.error == "tags: http 503 Service Unavailable"
    # The first tag's request was sent again by the client; the second was not sent after the 503s.
    assert len(sandbox.requests("mailchimp")) == before + 1 + http.retries


def test_more_than_500_members_of_one_tag_go_in_requests_of_500(sandbox: Any) -> None:
    mailchimp = connector(BEFORE)
    push_all(mailchimp, people(1))
    pending = [
        (Outcome(f"user:{n}", SyncStatus.UPDATED), email(n), ("goal:lose-weight",))
        for n in range(1, SEGMENT_LIMIT + 2)
    ]
    after = mailchimp.tags.remove(pending)
    assert after[0].status == SyncStatus.UPDATED  # the one member
    assert {(o.status, o.error) for o in after[1:]} == {(SyncStatus.FAILED, NOT_IN_AUDIENCE)}
    sizes = [len(b["body"]["members_to_remove"]) for b in segment_requests(sandbox)]
    assert sizes == [500, 1]


def test_a_refusal_phrase_that_could_quote_an_address_is_not_repeated() -> None:
    assert refused_reason("Email addresses are not members of this audience.") == NOT_IN_AUDIENCE
    assert refused_reason(f"{OUTSIDER} is not subscribed") == NOT_REMOVED
    assert refused_reason(None) == NOT_REMOVED


def test_the_stand_in_batch_segment_members_as_mailchimp_documents_it(sandbox: Any) -> None:
    push_all(connector(BEFORE), people(2))
    ids = tag_ids()
    base = f"{get_settings().sandbox_url}{LIST}/segments"

    def post(segment_id: int, body: Any) -> requests.Response:
        return requests.post(f"{base}/{segment_id}", json=body, auth=AUTH, timeout=5)

    goal = ids["goal:lose-weight"]
    answer = post(goal, {"members_to_remove": [email(1), OUTSIDER, email(1)]}).json()
    assert [m["email_address"] for m in answer["members_removed"]] == [email(1)]
    assert answer["errors"] == [
        {"email_addresses": [OUTSIDER], "error": "Email addresses are not members of this audience."}
    ]
    assert (answer["total_removed"], answer["total_added"], answer["error_count"]) == (1, 0, 1)
    added = post(goal, {"members_to_add": [email(1), email(2)]}).json()  # person 2 has it already
    assert [m["email_address"] for m in added["members_added"]] == [email(1)]
    assert added["members_removed"] == [] and added["total_added"] == 1
    tags = {m["email_address"]: m["tags"] for m in sandbox.objects("mailchimp", "members")}
    assert "goal:lose-weight" in tags[email(1)]

    assert post(999_999, {"members_to_remove": [email(1)]}).status_code == 404
    assert post(goal, {"members_to_remove": [email(1)] * 501}).status_code == 400
    assert post(goal, {"members_to_remove": "person1@example.com"}).status_code == 400
    condition = {
        "condition_type": "StaticSegment",
        "field": "static_segment",
        "op": "static_is",
        "value": goal,
    }
    saved = requests.post(
        base, json={"name": "saved", "options": {"conditions": [condition]}}, auth=AUTH, timeout=5
    ).json()
    assert post(saved["id"], {"members_to_remove": [email(1)]}).status_code == 400  # a saved segment
