"""HTTP requests per 1,000 records, counted at the sandbox (vendor batch floors)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.hubspot import HubSpotConnector
from connectors.mailchimp import MailchimpConnector
from connectors.registry import CONNECTORS
from devtools.routing import routing_copy
from ennu.db import session_scope
from ennu.models import HealthGoal
from ennu.settings import get_settings, reload_settings
from flows.assessment_completed import assessment_completed
from flows.health_goal_completed import health_goal_completed
from flows.health_goal_created import health_goal_created
from flows.user_registered import user_registered
from tests.factories import (
    add_assessment,
    add_clinic,
    add_event,
    add_goal,
    add_person,
    completed_event,
    person_with_assessment,
)

pytestmark = pytest.mark.usefixtures("prefect_server")
REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


@pytest.fixture()
def crm_and_marketing_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The routing table with only HubSpot and Mailchimp on: this test counts their requests alone."""
    copy = tmp_path / "mappings"
    shutil.copytree(REPO_MAPPINGS, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    routing = copy / "routing.yaml"
    text = routing.read_text()
    for name in ("ga4", "zapier", "epic_fhir"):
        text = text.replace(f"  {name}: {{enabled: true", f"  {name}: {{enabled: false")
    routing.write_text(text)
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(copy))
    reload_settings()


def test_records_cost_hubspots_and_mailchimps_batch_floor_and_an_event_each(
    sqlite_database: str, sandbox: Any, crm_and_marketing_only: None
) -> None:
    # 200 people (two HubSpot batches of 100, one Mailchimp batch of 500): the floor per record is the
    # same at 1,000 (10 and 2), where Mailchimp's 1,000 one-by-one event requests made this test 7 minutes.
    event_ids = [person_with_assessment()[2] for _ in range(200)]
    # Mailchimp's merge fields and segments are a per-deployment cost (created once, remembered or found
    # by name): not counted per record.
    setup = MailchimpConnector.from_settings(get_settings(), rate_limited=False)
    setup.merge_fields.ensure()
    setup.segments.ensure()
    mailchimp_setup = len(sandbox.requests("mailchimp"))

    assessment_completed(event_ids=event_ids)

    assert len(sandbox.objects("hubspot", "contacts")) == 200
    assert len(sandbox.objects("mailchimp", "members")) == 200
    assert len(sandbox.requests("hubspot")) <= 2
    sent = sandbox.requests("mailchimp")[mailchimp_setup:]
    # The members and their tags: the batch floor. The follow-up event is one request per member (the API
    # takes one contact a call); a first assessment leaves no tag to set inactive: no tags request.
    assert len([r for r in sent if r["path"] == "/mailchimp/3.0/lists/sandbox-list"]) == 1
    assert len([r for r in sent if r["path"].endswith("/events")]) == 200
    # The pipeline's own connector looks the segments up by name once (a per-process cost, never per batch).
    assert len([r for r in sent if r["path"].endswith("/segments")]) == 1
    assert len(sent) <= 1 + 200 + 1
    assert (
        sandbox.requests("ga4") == [] and sandbox.requests("zapier") == [] and sandbox.requests("fhir") == []
    )


def _only(connector: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every other integration off: the sandbox then counts `connector`'s requests alone."""
    copy = routing_copy(tmp_path / "mappings", disable=[n for n in CONNECTORS if n != connector])
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(copy))
    reload_settings()


@pytest.fixture()
def salesforce_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _only("salesforce", tmp_path, monkeypatch)


@pytest.fixture()
def hubspot_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _only("hubspot", tmp_path, monkeypatch)


@pytest.fixture()
def mailchimp_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _only("mailchimp", tmp_path, monkeypatch)


@pytest.fixture()
def ga4_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _only("ga4", tmp_path, monkeypatch)


def test_contacts_cost_one_salesforce_collection_request_per_200_and_one_token(
    sqlite_database: str, sandbox: Any, salesforce_only: None
) -> None:
    """The floor is 200 records a request (sObject Collections): 5 requests per 1,000 records, their Accounts
    included (each batch's Accounts and Contacts are one Composite request). 400 people: two full requests,
    the floor per record of 1,000 at less than half the test's time.

    The OAuth token is a per-connector cost, not a per-record one: it is fetched once and reused by every
    later batch (until Salesforce expires the session), so it is counted apart and must not recur.
    """
    clinics = [add_clinic(f"Clinic {n}", domain=f"clinic{n}.example.com") for n in range(10)]
    # Nine people in ten have a clinic; the tenth gets an Account of their own.
    people = [add_person(clinic_id=None if n % 10 == 9 else clinics[n // 40]) for n in range(400)]
    event_ids = [add_event("user.registered", user_id) for user_id in people]

    user_registered(event_ids=event_ids)

    assert len(sandbox.objects("salesforce", "Contact")) == 400
    assert len(sandbox.objects("salesforce", "Account")) == 10 + 40
    assert sum(1 for r in sandbox.requests("salesforce") if r["path"].endswith("/composite")) <= 2
    assert sandbox.request_count("salesforce", "/services/oauth2/token") == 1
    assert len(sandbox.requests("salesforce")) <= 2 + 1

    more = [add_event("user.registered", add_person()) for _ in range(200)]
    user_registered(event_ids=more)  # the next run reuses the session: one more request, no token

    assert len(sandbox.objects("salesforce", "Contact")) == 600
    assert sandbox.request_count("salesforce", "/services/oauth2/token") == 1
    assert len(sandbox.requests("salesforce")) <= 3 + 1


def test_goals_cost_two_salesforce_requests_per_200_created_and_one_per_200_completed(
    sqlite_database: str, sandbox: Any, salesforce_only: None
) -> None:
    """A goal's Opportunity and its contact role: the upsert and the roles' look-up (one Composite request),
    then the missing roles' create: 2 requests per 200 goals; once linked, a completion costs 1 per 200.
    (400 goals: two full batches, the floor per goal of 1,000 at less than half the test's time.)"""
    people = [add_person() for _ in range(400)]
    user_registered(event_ids=[add_event("user.registered", user_id) for user_id in people])
    goals = [(user_id, add_goal(user_id)) for user_id in people]
    registered = len(sandbox.requests("salesforce"))

    health_goal_created(event_ids=[add_event("health_goal.created", u, g) for u, g in goals])
    created = len(sandbox.requests("salesforce"))
    health_goal_completed(event_ids=[add_event("health_goal.completed", u, g) for u, g in goals])

    assert len(sandbox.objects("salesforce", "Opportunity")) == 400
    assert len(sandbox.objects("salesforce", "OpportunityContactRole")) == 400
    assert created - registered <= 4
    assert len(sandbox.requests("salesforce")) - created <= 2


def test_a_lead_sites_later_contact_records_cost_the_collection_floor_without_a_look_up(
    sqlite_database: str, sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where registrations are Leads, the people's later Contact records (scores) go to their Lead: the
    hub knows them as Leads (its sync log), so no SOQL look-up is made: 200 records a request, as Contacts.
    (400 people: the floor per record is that of 1,000, at less than half the test's time.)"""
    copy = routing_copy(tmp_path / "mappings", disable=[n for n in CONNECTORS if n != "salesforce"])
    routing = copy / "routing.yaml"
    contact_route = "    - {connector: salesforce}                    # a Contact"
    assert contact_route in routing.read_text()
    routing.write_text(
        routing.read_text().replace(
            contact_route, "    - {connector: salesforce, mapping: salesforce_lead}  #", 1
        )
    )
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(copy))
    reload_settings()
    people = [add_person() for _ in range(400)]
    user_registered(event_ids=[add_event("user.registered", user_id) for user_id in people])
    registered = len(sandbox.requests("salesforce"))

    assessment_completed(event_ids=[completed_event(u, add_assessment(u)) for u in people])

    leads = sandbox.objects("salesforce", "Lead")
    assert len(leads) == 400 and all(lead["ENNU_Overall_Score__c"] == 7.4 for lead in leads)
    assert sandbox.objects("salesforce", "Contact") == []
    sent = sandbox.requests("salesforce")[registered:]
    assert [r["path"] for r in sent] == [
        "/salesforce/services/data/v62.0/composite/sobjects/Lead/ENNU_User_Id__c"
    ] * 2


def test_events_of_a_person_cost_one_ga4_request_per_25(
    sqlite_database: str, sandbox: Any, ga4_only: None
) -> None:
    """The floor is 25 events a request, and a Measurement Protocol request carries one client id.

    So the floor holds when a person's events travel together: 16 people with 25 completed assessments
    each, 400 events in 16 requests (40 per 1,000). (1,000 different people cost 1,000 requests whatever
    the batching: one client id each.)
    """
    event_ids = []
    for _ in range(16):
        user_id = add_person()
        for n in range(25):
            assessment_id = add_assessment(user_id)
            # Ids sort by person, so a person's events are extracted, mapped and batched together.
            event_ids.append(completed_event(user_id, assessment_id, event_id=f"ga4-{user_id:05d}-{n:02d}"))

    assessment_completed(event_ids=event_ids)

    assert len(sandbox.objects("ga4", "events")) == 400
    assert len(sandbox.requests("ga4")) <= 16
    assert {r["path"] for r in sandbox.requests("ga4")} == {"/ga4/mp/collect"}


def test_registrations_at_five_clinics_cost_one_hubspot_request_per_100_of_each_kind(
    sqlite_database: str, sandbox: Any, hubspot_only: None
) -> None:
    """The floor is 100 inputs a request for each of the three writes a registration with a clinic makes:
    the contacts, their clinics' companies (a batch's distinct clinics in one upsert) and the v4 links.
    (400 registrations, four full batches: 10 requests of each kind per 1,000.)

    ENNU's property definitions are a per-portal cost (created once, remembered): not counted per record.
    """
    clinics = [add_clinic(f"Clinic {n}", domain=f"clinic{n}.example.com") for n in range(5)]
    event_ids = [add_event("user.registered", add_person(clinic_id=clinics[n % 5])) for n in range(400)]
    hubspot = HubSpotConnector.from_settings(get_settings(), rate_limited=False)
    try:
        hubspot.ensure_properties()
    finally:
        hubspot.close()
    setup = len(sandbox.requests("hubspot"))

    user_registered(event_ids=event_ids)

    assert len(sandbox.objects("hubspot", "contacts")) == 400
    assert len(sandbox.objects("hubspot", "companies")) == 5
    links = [a for a in sandbox.objects("hubspot", "associations") if a["fromObjectType"] == "contacts"]
    assert len(links) == 400
    assert sandbox.request_count("hubspot", "/crm/v3/objects/contacts/batch/upsert") <= 4
    assert sandbox.request_count("hubspot", "/crm/v3/objects/companies/batch/upsert") <= 4
    assert sandbox.request_count("hubspot", "/batch/associate/default") <= 4
    assert len(sandbox.requests("hubspot")) - setup <= 12


def test_people_with_tag_history_cost_one_mailchimp_request_per_tag_that_no_longer_holds(
    sqlite_database: str, sandbox: Any, mailchimp_only: None
) -> None:
    """300 people whose goals close: `goal:<kind>` and the progress tag they reached no longer hold for any
    of them. Each such tag is taken off 500 members a request (its static segment's batch write), so the
    tags cost at most 2 requests per 1,000 people for each tag, never one per person (the per-member
    tags call cost 300 here). The completion's member event, which starts the journeys, is one request per
    person by Mailchimp's API: counted apart."""
    people = [add_person() for _ in range(300)]
    kinds = ("lose_weight", "improve_sleep")
    goals = [
        (user_id, add_goal(user_id, kind=kinds[n % 2], progress=50 if n % 2 == 0 else None))
        for n, user_id in enumerate(people)
    ]
    setup = MailchimpConnector.from_settings(get_settings(), rate_limited=False)
    setup.merge_fields.ensure()
    setup.segments.ensure()
    health_goal_created(event_ids=[add_event("health_goal.created", u, g) for u, g in goals])
    tagged = {m["email_address"]: m["tags"] for m in sandbox.objects("mailchimp", "members")}
    assert sum("goal:lose-weight:50pct" in tags for tags in tagged.values()) == 150
    with session_scope() as session:
        for _, goal_id in goals:
            goal = session.get(HealthGoal, goal_id)
            assert goal is not None
            goal.status = "completed"
            goal.completed_at = datetime(2026, 11, 20, tzinfo=UTC)
    before = len(sandbox.requests("mailchimp"))

    health_goal_completed(event_ids=[add_event("health_goal.completed", u, g) for u, g in goals])

    members = sandbox.objects("mailchimp", "members")
    assert sorted({tag for m in members for tag in m["tags"]}) == [
        "goal-completed:improve-sleep",
        "goal-completed:lose-weight",
    ]
    sent = [
        r["path"].removeprefix("/mailchimp/3.0/lists/sandbox-list") for r in sandbox.requests("mailchimp")
    ]
    sent = sent[before:]
    removals = [p for p in sent if p.startswith("/segments/")]
    # goal:lose-weight, goal:improve-sleep and goal:lose-weight:50pct: one request each for 300 people.
    # (The 25 and 75 % tags no longer hold either, but nobody ever had them: no request.)
    assert len(removals) == 3
    assert len([p for p in sent if p.endswith("/events")]) == 300
    assert sent.count("") == 1  # the batch subscribe
    assert sent.count("/segments") <= 1  # the tags' ids: looked up once by the run's connector
    assert len(sent) <= 1 + 1 + 3 + 300
