"""Mailchimp against its sandbox stand-in: merge fields ensured once, tags, journeys, archive, erase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.base import Outcome, Person, Record
from connectors.errors import Action
from connectors.mailchimp import CONNECTOR
from connectors.mailchimp.connector import (
    ASSESSMENT_FOLLOWUPS,
    GOAL_FOLLOWUPS,
    JOURNEY_MEMBERS,
    MEMBERS,
    MailchimpConnector,
)
from connectors.mailchimp.errors import TABLE
from connectors.mailchimp.journey import JourneyStep, trigger_journey
from connectors.mailchimp.merge_fields import DatabaseMemory, MergeField, merge_fields_from_mappings
from connectors.mailchimp.settings import MailchimpSettings
from connectors.registry import CONNECTORS
from connectors.settings import SettingsError
from ennu.models import SyncStatus
from ennu.settings import Settings, get_settings

REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
SANDBOX_JOURNEY = JourneyStep(1001, 2001)
SCORE = MergeField("SCORE", "ENNU overall score", "number")


class RememberedInMemory:
    """The ensured-definitions memory of one test: a set shared by the connectors built with it."""

    def __init__(self) -> None:
        self.ensured: set[str] = set()

    def is_ensured(self, wanted: str) -> bool:
        return wanted in self.ensured

    def remember(self, wanted: str) -> None:
        self.ensured.add(wanted)


def member(n: int, email: str | None = None, tag: str = "goal:lose-weight", **merge: Any) -> Record:
    fields: dict[str, Any] = {
        "email_address": email or f"person{n}@example.com",
        "status_if_new": "subscribed",
        "tags": tag,
    }
    fields.update({f"merge_fields.{k}": v for k, v in merge.items()})
    return Record(f"user:{n}", f"evt-{n}", n, fields)


def connector(
    memory: RememberedInMemory | None = None,
    merge_fields: tuple[MergeField, ...] = (),
    journey: JourneyStep | None = None,
) -> MailchimpConnector:
    """The configured connector's HTTP client (sandbox URL and key), with this test's merge fields."""
    configured = MailchimpConnector.from_settings(get_settings(), rate_limited=False)
    return MailchimpConnector(
        configured.http,
        configured.list_id,
        merge_fields=merge_fields,
        memory=memory or RememberedInMemory(),
        journey=journey,
    )


def paths(sandbox: Any) -> list[str]:
    sent = sandbox.requests("mailchimp")
    return [f"{r['method']} {r['path'].removeprefix('/mailchimp/3.0')}" for r in sent]


def test_merge_fields_come_from_the_mailchimp_mappings() -> None:
    wanted = {f.tag: f for f in merge_fields_from_mappings(REPO_MAPPINGS)}
    assert set(wanted) == {"FNAME", "LNAME", "PHONE", "SCORE"}
    assert wanted["SCORE"] == SCORE
    assert wanted["PHONE"].type == "phone" and wanted["FNAME"].type == "text"


def test_missing_merge_fields_are_created_once_and_remembered(sandbox: Any) -> None:
    memory = RememberedInMemory()
    first = connector(memory, (MergeField("FNAME", "First", "text"), SCORE))
    assert [o.status for o in first.push(MEMBERS, "email_address", [member(1, SCORE=7.5)])] == [
        SyncStatus.CREATED
    ]
    assert paths(sandbox) == [
        "GET /lists/sandbox-list/merge-fields",
        "POST /lists/sandbox-list/merge-fields",  # SCORE only: FNAME is one of the audience's defaults
        "POST /lists/sandbox-list",
    ]
    assert sandbox.requests("mailchimp")[0]["query"] == "count=1000"
    first.push(MEMBERS, "email_address", [member(2, SCORE=3)])
    # Another process (a new connector) with the same memory: no merge-field request at all.
    connector(memory, (MergeField("FNAME", "First", "text"), SCORE)).push(
        MEMBERS, "email_address", [member(3)]
    )
    assert len(sandbox.requests("mailchimp")) == 3 + 1 + 1
    score = [f for f in sandbox.objects("mailchimp", "merge_fields") if f["tag"] == "SCORE"]
    assert [(f["name"], f["type"]) for f in score] == [("ENNU overall score", "number")]


def test_the_database_remembers_ensured_merge_fields_across_instances(
    sqlite_database: str, sandbox: Any
) -> None:
    def build() -> MailchimpConnector:
        return MailchimpConnector(
            connector().http, "sandbox-list", merge_fields=(SCORE,), memory=DatabaseMemory("mailchimp")
        )

    assert build().merge_fields.ensure() == ["SCORE"]
    assert build().merge_fields.ensure() == []
    assert len(sandbox.requests("mailchimp")) == 2  # one GET and one POST, by the first instance only
    assert build().merge_fields.ensure(force=True) == []  # checked again at the vendor: present
    assert len(sandbox.requests("mailchimp")) == 3


def test_a_merge_field_deleted_at_mailchimp_is_created_again_and_the_members_resent(sandbox: Any) -> None:
    memory = RememberedInMemory()
    remembered = connector(memory, (SCORE,))
    memory.remember(remembered.merge_fields.fingerprint)  # ensured earlier; the audience lost SCORE since
    outcomes = remembered.push(MEMBERS, "email_address", [member(1, SCORE=7.5), member(2)])
    assert [o.status for o in outcomes] == [SyncStatus.CREATED, SyncStatus.CREATED]
    assert paths(sandbox) == [
        "POST /lists/sandbox-list",  # person 1 refused for SCORE, person 2 created
        "GET /lists/sandbox-list/merge-fields",
        "POST /lists/sandbox-list/merge-fields",
        "POST /lists/sandbox-list",  # person 1 alone, once more
    ]
    assert {m["merge_fields"].get("SCORE") for m in sandbox.objects("mailchimp", "members")} == {7.5, None}


def test_an_unknown_merge_field_is_refused_per_member_and_on_the_member_put(sandbox: Any) -> None:
    outcomes = connector().push(MEMBERS, "email_address", [member(1, SCORE=7.5), member(2)])
    assert [(o.status, o.error) for o in outcomes] == [
        (SyncStatus.FAILED, "ERROR_GENERIC"),
        (SyncStatus.CREATED, None),
    ]
    http = connector().http
    put = http.session.put(
        http.url(f"/lists/sandbox-list/members/{outcomes[1].remote_id}"),
        json={"email_address": "person2@example.com", "merge_fields": {"NOPE": "x"}},
        timeout=5,
    )
    assert put.status_code == 400 and put.headers["content-type"].startswith("application/problem+json")
    body = put.json()
    assert body["detail"] == "Your merge fields were invalid." and body["errors"][0]["field"] == "NOPE"
    assert set(body) >= {"type", "title", "status", "detail", "instance"}


def test_tags_reach_new_and_existing_members_in_the_batch_request_alone(sandbox: Any) -> None:
    mailchimp = connector()
    mailchimp.push(MEMBERS, "email_address", [member(1, tag="ennu:registered")])
    again = mailchimp.push(MEMBERS, "email_address", [member(1, tag="goal:lose-weight"), member(2)])
    assert [o.status for o in again] == [SyncStatus.UPDATED, SyncStatus.CREATED]
    assert len(sandbox.requests("mailchimp")) == 2  # one batch subscribe each, no tag request
    tags = {m["email_address"]: m["tags"] for m in sandbox.objects("mailchimp", "members")}
    assert tags == {
        "person1@example.com": ["ennu:registered", "goal:lose-weight"],  # added, never replaced
        "person2@example.com": ["goal:lose-weight"],
    }


def test_journey_members_trigger_the_step_for_each_subscribed_member_only(sandbox: Any) -> None:
    mailchimp = connector(journey=SANDBOX_JOURNEY)
    outcomes = mailchimp.push(
        JOURNEY_MEMBERS, "email_address", [member(1), member(2, "not-an-email"), member(3)]
    )
    assert [o.status for o in outcomes] == [SyncStatus.CREATED, SyncStatus.FAILED, SyncStatus.CREATED]
    trigger = "POST /customer-journeys/journeys/1001/steps/2001/actions/trigger"
    assert paths(sandbox) == ["POST /lists/sandbox-list", trigger, trigger]
    triggered = {t["member_id"] for t in sandbox.objects("mailchimp", "journey_triggers")}
    assert triggered == {outcomes[0].remote_id, outcomes[2].remote_id}
    # `members` never triggers, and neither does `journey_members` without a configured step.
    connector(journey=SANDBOX_JOURNEY).push(MEMBERS, "email_address", [member(4)])
    connector().push(JOURNEY_MEMBERS, "email_address", [member(5)])
    assert len(sandbox.objects("mailchimp", "journey_triggers")) == 2
    assert len(sandbox.requests("mailchimp")) == 3 + 1 + 1


def test_journey_refusals_fail_the_person_and_vendor_trouble_defers_the_rest(sandbox: Any) -> None:
    unknown = connector(journey=JourneyStep(1001, 9999)).push(JOURNEY_MEMBERS, "email_address", [member(1)])
    assert [(o.status, o.error) for o in unknown] == [
        (SyncStatus.FAILED, "journey: http 404 Resource Not Found")
    ]
    http = connector().http
    outsider = Outcome("user:9", SyncStatus.CREATED)
    [refused] = trigger_journey(http, SANDBOX_JOURNEY, [(outsider, "not.a.member@example.com")])
    assert (refused.status, refused.error) == (SyncStatus.FAILED, "journey: http 400 Invalid Resource")

    connector().push(MEMBERS, "email_address", [member(2), member(3)])
    before = len(sandbox.requests("mailchimp"))
    sandbox.fail("mailchimp", "status", status=503, count=1 + http.retries)  # outlasts the client's retries
    two = [(Outcome("user:2", SyncStatus.UPDATED), "person2@example.com")]
    two.append((Outcome("user:3", SyncStatus.UPDATED), "person3@example.com"))
    deferred = trigger_journey(http, SANDBOX_JOURNEY, two)
    assert [o.status for o in deferred] == [SyncStatus.DEFERRED, SyncStatus.DEFERRED]
    # The first person's trigger was sent again by the client; the second was not sent after the 503s.
    assert len(sandbox.requests("mailchimp")) == before + 1 + http.retries


def test_archive_keeps_the_address_re_addable_and_erase_forgets_it(sandbox: Any) -> None:
    mailchimp = connector()
    person = Person(1, email="Person1@Example.com")
    mailchimp.push(MEMBERS, "email_address", [member(1)])
    assert mailchimp.archive(person).status == SyncStatus.UPDATED
    assert sandbox.objects("mailchimp", "members")[0]["status"] == "archived"
    assert paths(sandbox)[-1].startswith("DELETE /lists/sandbox-list/members/")
    assert mailchimp.push(MEMBERS, "email_address", [member(1)])[0].status == SyncStatus.UPDATED
    assert sandbox.objects("mailchimp", "members")[0]["status"] == "subscribed"

    assert mailchimp.erase(person).status == SyncStatus.ERASED
    assert paths(sandbox)[-1].endswith("/actions/delete-permanent")
    assert mailchimp.archive(person).status == SyncStatus.UNCHANGED
    refused = mailchimp.push(MEMBERS, "email_address", [member(1)])[0]
    assert refused.status == SyncStatus.FAILED  # a permanently deleted address cannot be re-imported
    assert mailchimp.archive(Person(2)).status == SyncStatus.SKIPPED


def test_sandbox_merge_field_definitions_are_validated(sandbox: Any) -> None:
    http = connector().http
    url = http.url("/lists/sandbox-list/merge-fields")
    listed = http.session.get(url, params={"count": 1000}, timeout=5).json()
    assert [f["tag"] for f in listed["merge_fields"]] == ["FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY"]
    assert http.session.post(url, json={"name": "x", "type": "colour"}, timeout=5).status_code == 400
    duplicate = http.session.post(url, json={"tag": "FNAME", "name": "x", "type": "text"}, timeout=5)
    assert duplicate.status_code == 400 and "already exists" in duplicate.json()["detail"]
    generated = http.session.post(url, json={"name": "Clinic", "type": "text"}, timeout=5).json()
    assert generated["tag"] == "MMERGE6"
    unauthorised = requests.get(url, auth=("any", "wrong-key"), timeout=5)
    assert unauthorised.status_code == 401


def test_the_package_is_the_registered_connector_with_its_objects_as_data(sandbox: Any) -> None:
    assert CONNECTORS["mailchimp"] is CONNECTOR is MailchimpConnector
    assert MailchimpConnector.batch_sizes == {
        MEMBERS: 500,
        JOURNEY_MEMBERS: 500,
        ASSESSMENT_FOLLOWUPS: 500,
        GOAL_FOLLOWUPS: 500,
    }
    assert MailchimpConnector.object_spec(JOURNEY_MEMBERS).upsert_keys == ("email_address",)
    with pytest.raises(ValueError, match="has no object 'campaigns'"):
        connector().push("campaigns", "email_address", [member(1)])
    assert sandbox.requests("mailchimp") == []


def test_settings_are_mailchimps_own_and_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not [name for name in Settings.model_fields if name.startswith("mailchimp")]
    monkeypatch.setenv("MAILCHIMP_LIST_ID", "")  # empty is unset
    monkeypatch.setenv("MAILCHIMP_JOURNEY_ID", "1001")
    monkeypatch.setenv("MAILCHIMP_JOURNEY_STEP_ID", "2001")
    own = MailchimpSettings.load()
    assert (own.list_id, own.journey_id, own.journey_step_id) == ("sandbox-list", 1001, 2001)
    assert MailchimpConnector.from_settings(get_settings(), rate_limited=False).journey == SANDBOX_JOURNEY
    for name, value in (("MAILCHIMP_RATE_LIMIT", "many"), ("MAILCHIMP_JOURNEY_STEP_ID", "step-two")):
        with monkeypatch.context() as scoped:
            scoped.setenv(name, value)
            with pytest.raises(SettingsError, match=name) as refused:
                MailchimpSettings.load()
            assert value not in str(refused.value)


def test_the_error_table_says_what_mailchimp_answers_mean() -> None:
    assert TABLE.action(429) is Action.RATE_LIMITED  # "Too Many Requests": over 10 connections at once
    assert TABLE.action(401) is Action.AUTH  # "API Key Invalid"
    assert TABLE.action(400) is Action.BATCH  # "Invalid Resource", unless the call reads it itself
    assert TABLE.action(503) is Action.RETRY
    assert TABLE.expect("gone") == {404} and TABLE.expect("journey") == {400, 404}


def test_too_many_connections_is_sent_again_by_the_client_and_the_batch_goes_through(sandbox: Any) -> None:
    sandbox.fail("mailchimp", "status", status=429, count=1)
    outcomes = connector().push(MEMBERS, "email_address", [member(1)])
    assert [o.status for o in outcomes] == [SyncStatus.CREATED]
    assert [r["status"] for r in sandbox.requests("mailchimp")] == [429, 200]
