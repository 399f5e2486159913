"""Salesforce's objects end to end: Accounts, Leads, Opportunities linked to their person, Contact scores.

Host event → flow → connector → the stand-in, which checks relationship references, create-only fields,
contact roles and the Composite limits as Salesforce documents them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.base import Person, Record
from connectors.salesforce.connector import SalesforceConnector
from devtools.routing import routing_copy
from ennu.models import SyncStatus
from ennu.settings import get_settings, reload_settings
from flows.assessment_completed import assessment_completed
from flows.health_goal_completed import health_goal_completed
from flows.health_goal_created import health_goal_created
from flows.user_registered import user_registered
from tests.factories import add_clinic, add_event, add_goal, add_person, person_with_assessment

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture()
def salesforce_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every other integration off: what the stand-in holds and counts is Salesforce's alone."""
    copy = routing_copy(tmp_path / "mappings", disable=["hubspot", "mailchimp", "stripe", "ga4", "zapier"])
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(copy))
    reload_settings()
    return copy


@pytest.fixture()
def salesforce(sandbox: Any) -> Iterator[SalesforceConnector]:
    connector = SalesforceConnector.from_settings(get_settings(), rate_limited=False)
    yield connector
    connector.close()


def by_external_id(sandbox: Any, kind: str, field: str) -> dict[str, dict[str, Any]]:
    return {str(o[field]): o for o in sandbox.objects("salesforce", kind)}


def api(salesforce: SalesforceConnector, method: str, path: str, body: Any) -> requests.Response:
    """A raw call to the stand-in's API with the connector's session (to see its answers as they are)."""
    token = salesforce._session()  # the test signs its calls with the connector's session
    return requests.request(
        method,
        f"{token.instance_url}/services/data/v62.0{path}",
        json=body,
        headers={"Authorization": f"Bearer {token.value.get_secret_value()}"},
        timeout=10,
    )


def test_registrations_link_contacts_to_their_clinic_account_or_their_own_in_one_request(
    database: str, sandbox: Any, salesforce_only: Path
) -> None:
    clinic = add_clinic("Northside Clinic", domain="northside.example.com")
    members = [add_person(clinic_id=clinic) for _ in range(2)]
    alone = add_person()
    event_ids = [add_event("user.registered", u) for u in (*members, alone)]

    user_registered(event_ids=event_ids)

    accounts = by_external_id(sandbox, "Account", "ENNU_Account_Id__c")
    assert set(accounts) == {f"clinic-{clinic}", f"person-{alone}"}
    assert accounts[f"clinic-{clinic}"]["Name"] == "Northside Clinic"
    assert accounts[f"clinic-{clinic}"]["Website"] == "northside.example.com"
    assert accounts[f"person-{alone}"]["Name"].endswith(" Household")
    contacts = by_external_id(sandbox, "Contact", "ENNU_User_Id__c")
    assert {contacts[str(u)]["AccountId"] for u in members} == {accounts[f"clinic-{clinic}"]["Id"]}
    assert contacts[str(alone)]["AccountId"] == accounts[f"person-{alone}"]["Id"]
    api_calls = [r for r in sandbox.requests("salesforce") if "/oauth2/" not in r["path"]]
    assert [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in api_calls] == [("POST", "composite")]
    [sent] = [b["body"] for b in sandbox.bodies("salesforce") if b["path"].endswith("/composite")]
    contact_body = sent["compositeRequest"][1]["body"]["records"][0]
    # The Contact names its Account by the Account's external id: never an Account field of its own.
    assert contact_body["Account"] == {"ENNU_Account_Id__c": f"clinic-{clinic}"}


def test_under_the_person_model_everyone_has_their_own_account(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESFORCE_ACCOUNT_MODEL", "person")
    connector = SalesforceConnector.from_settings(get_settings(), rate_limited=False)
    fields = {"ENNU_User_Id__c": 7, "LastName": "Lovelace", "Account.ENNU_Account_Id__c": "clinic-1"}
    try:
        [outcome] = connector.push("Contact", "ENNU_User_Id__c", [Record("user:7", "e7", 7, fields)])
    finally:
        connector.close()

    assert outcome.status == SyncStatus.CREATED
    [account] = sandbox.objects("salesforce", "Account")
    assert (account["ENNU_Account_Id__c"], account["Name"]) == ("person-7", "Lovelace Household")


def test_a_goal_opportunity_gets_its_person_as_primary_contact_role_once(
    database: str, sandbox: Any, salesforce_only: Path, salesforce: SalesforceConnector
) -> None:
    user_id = add_person()
    goal_id = add_goal(user_id)
    user_registered(event_ids=[add_event("user.registered", user_id)])

    health_goal_created(event_ids=[add_event("health_goal.created", user_id, goal_id)])
    health_goal_completed(event_ids=[add_event("health_goal.completed", user_id, goal_id)])

    [opportunity] = sandbox.objects("salesforce", "Opportunity")
    [contact] = sandbox.objects("salesforce", "Contact")
    [role] = sandbox.objects("salesforce", "OpportunityContactRole")
    assert (role["OpportunityId"], role["ContactId"]) == (opportunity["Id"], contact["Id"])
    assert (role["Role"], role["IsPrimary"]) == ("Decision Maker", True)
    assert opportunity["StageName"] == "Closed Won"
    assert "ContactId" not in opportunity  # never sent: an upsert that updates could not carry it

    # The engine re-sends a batch whose answer was lost (Salesforce is declared idempotent): no second role.
    again = Record(
        f"health_goal:{goal_id}",
        "resent",
        user_id,
        {
            "ENNU_Goal_Id__c": str(goal_id),
            "StageName": "Closed Won",
            "ContactRole.Contact.ENNU_User_Id__c": str(user_id),
            "ContactRole.Role": "Decision Maker",
        },
    )
    [outcome] = salesforce.push("Opportunity", "ENNU_Goal_Id__c", [again])
    assert (outcome.status, outcome.error) == (SyncStatus.UPDATED, None)
    assert len(sandbox.objects("salesforce", "OpportunityContactRole")) == 1


def test_a_goal_before_its_person_is_linked_by_its_completion(
    sqlite_database: str, sandbox: Any, salesforce_only: Path
) -> None:
    user_id = add_person()
    goal_id = add_goal(user_id)

    health_goal_created(event_ids=[add_event("health_goal.created", user_id, goal_id)])
    assert len(sandbox.objects("salesforce", "Opportunity")) == 1
    assert sandbox.objects("salesforce", "OpportunityContactRole") == []

    user_registered(event_ids=[add_event("user.registered", user_id)])
    health_goal_completed(event_ids=[add_event("health_goal.completed", user_id, goal_id)])

    [role] = sandbox.objects("salesforce", "OpportunityContactRole")
    [contact] = sandbox.objects("salesforce", "Contact")
    assert role["ContactId"] == contact["Id"] and role["IsPrimary"] is True


def test_a_completed_assessment_puts_the_overall_and_category_scores_on_the_contact(
    database: str, sandbox: Any, salesforce_only: Path
) -> None:
    user_id, _, event_id = person_with_assessment()

    assessment_completed(event_ids=[event_id])

    [contact] = sandbox.objects("salesforce", "Contact")
    assert contact["ENNU_User_Id__c"] == str(user_id)
    assert contact["ENNU_Overall_Score__c"] == 7.4
    assert (contact["ENNU_Score_Sleep_Quality__c"], contact["ENNU_Score_Energy__c"]) == (6.5, 8.0)
    assert contact["ENNU_Last_Assessment_Type__c"] == "Sleep"
    assert "ENNU_Score_Mood__c" not in contact  # not scored by this assessment: nothing is sent


def test_a_site_that_routes_registrations_to_the_lead_mapping_gets_leads(
    database: str, sandbox: Any, salesforce_only: Path
) -> None:
    routing = salesforce_only / "routing.yaml"
    text = routing.read_text()
    assert "    - {connector: salesforce}                    # a Contact" in text
    routing.write_text(
        text.replace(
            "    - {connector: salesforce}                    # a Contact",
            "    - {connector: salesforce, mapping: salesforce_lead}  # a Contact",
            1,
        )
    )
    clinic = add_clinic("Lakeside Clinic")
    member, alone = add_person(clinic_id=clinic), add_person()

    user_registered(event_ids=[add_event("user.registered", u) for u in (member, alone)])

    leads = by_external_id(sandbox, "Lead", "ENNU_User_Id__c")
    assert (leads[str(member)]["Company"], leads[str(alone)]["Company"]) == ("Lakeside Clinic", "Individual")
    assert sandbox.objects("salesforce", "Contact") == []
    assert sandbox.objects("salesforce", "Account") == []


def test_erasure_deletes_the_persons_account_lead_and_contact_roles_but_not_the_clinics(
    salesforce: SalesforceConnector, sandbox: Any
) -> None:
    def contact(n: int, clinic: str | None) -> Record:
        fields = {"ENNU_User_Id__c": n, "LastName": f"Person{n}", "Account.ENNU_Account_Id__c": clinic}
        return Record(
            f"user:{n}", f"e{n}", n, {**fields, "Account.Name": "Northside Clinic" if clinic else None}
        )

    salesforce.push(
        "Contact", "ENNU_User_Id__c", [contact(1, None), contact(2, "clinic-9"), contact(3, "clinic-9")]
    )
    salesforce.push(
        "Lead",
        "ENNU_User_Id__c",
        [Record("user:1", "l1", 1, {"ENNU_User_Id__c": 1, "LastName": "P", "Company": "Individual"})],
    )
    goals = [
        Record(
            f"health_goal:{g}",
            f"g{g}",
            n,
            {
                "ENNU_Goal_Id__c": g,
                "Name": "ENNU goal",
                "StageName": "Prospecting",
                "CloseDate": "2027-06-01",
                "ContactRole.Contact.ENNU_User_Id__c": n,
            },
        )
        for g, n in ((11, 1), (12, 2))
    ]
    salesforce.push("Opportunity", "ENNU_Goal_Id__c", goals)
    assert len(sandbox.objects("salesforce", "OpportunityContactRole")) == 2

    erased = salesforce.erase(Person(user_id=1, goal_ids=(11,)))
    erased_member = salesforce.erase(Person(user_id=2, goal_ids=(12,)))

    assert (erased.status, erased.remote_id) == (SyncStatus.ERASED, "Contact,Lead,Opportunity,Account")
    assert (erased_member.status, erased_member.remote_id) == (SyncStatus.ERASED, "Contact,Opportunity")
    assert [c["ENNU_User_Id__c"] for c in sandbox.objects("salesforce", "Contact")] == ["3"]
    assert sandbox.objects("salesforce", "Lead") == [] and sandbox.objects("salesforce", "Opportunity") == []
    assert sandbox.objects("salesforce", "OpportunityContactRole") == []
    # The clinic's Account is the clinic's record, not the person's: it stays.
    assert [a["ENNU_Account_Id__c"] for a in sandbox.objects("salesforce", "Account")] == ["clinic-9"]


# --------------------------------------------------------------------------- the stand-in's documented shapes


def test_opportunity_contact_id_is_accepted_on_create_only(
    salesforce: SalesforceConnector, sandbox: Any
) -> None:
    salesforce.push(
        "Contact", "ENNU_User_Id__c", [Record("user:5", "e5", 5, {"ENNU_User_Id__c": 5, "LastName": "Five"})]
    )
    [contact] = sandbox.objects("salesforce", "Contact")
    opportunity = {
        "attributes": {"type": "Opportunity"},
        "ENNU_Goal_Id__c": "50",
        "Name": "ENNU goal",
        "StageName": "Prospecting",
        "CloseDate": "2027-01-31",
        "ContactId": contact["Id"],
    }
    body = {"allOrNone": False, "records": [opportunity]}

    created = api(salesforce, "PATCH", "/composite/sobjects/Opportunity/ENNU_Goal_Id__c", body).json()
    updated = api(salesforce, "PATCH", "/composite/sobjects/Opportunity/ENNU_Goal_Id__c", body).json()

    assert created[0]["success"] is True and created[0]["created"] is True
    [role] = sandbox.objects("salesforce", "OpportunityContactRole")
    assert (role["ContactId"], role["IsPrimary"]) == (contact["Id"], True)
    assert updated == [
        {
            "success": False,
            "errors": [
                {
                    "statusCode": "INVALID_FIELD_FOR_INSERT_UPDATE",
                    "message": updated[0]["errors"][0]["message"],
                    "fields": ["ContactId"],
                }
            ],
        }
    ]


def test_a_reference_to_an_unknown_external_id_fails_that_record_only(
    salesforce: SalesforceConnector, sandbox: Any
) -> None:
    records = [
        {
            "attributes": {"type": "Contact"},
            "ENNU_User_Id__c": "1",
            "LastName": "One",
            "Account": {"ENNU_Account_Id__c": "clinic-404"},
        },
        {"attributes": {"type": "Contact"}, "ENNU_User_Id__c": "2", "LastName": "Two"},
    ]
    results = api(
        salesforce,
        "PATCH",
        "/composite/sobjects/Contact/ENNU_User_Id__c",
        {"allOrNone": False, "records": records},
    ).json()

    assert results[0]["success"] is False and results[0]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert results[1]["success"] is True
    bad_shape = [{**records[1], "Account": {"Name": "not an external id"}}]
    refused = api(salesforce, "PATCH", "/composite/sobjects/Contact/ENNU_User_Id__c", {"records": bad_shape})
    assert refused.status_code == 400
    assert set(refused.json()[0]) == {"message", "errorCode", "fields"}


def test_composite_keeps_its_limits_and_a_collection_its_200(
    salesforce: SalesforceConnector, sandbox: Any
) -> None:
    def subrequest(n: int, count: int) -> dict[str, Any]:
        records = [
            {"attributes": {"type": "Account"}, "ENNU_Account_Id__c": f"a{n}-{i}", "Name": "A"}
            for i in range(count)
        ]
        return {
            "method": "PATCH",
            "url": "/services/data/v62.0/composite/sobjects/Account/ENNU_Account_Id__c",
            "referenceId": f"part{n}",
            "body": {"allOrNone": False, "records": records},
        }

    six = api(salesforce, "POST", "/composite", {"compositeRequest": [subrequest(n, 1) for n in range(6)]})
    over = api(salesforce, "POST", "/composite", {"compositeRequest": [subrequest(0, 201)]}).json()

    assert six.status_code == 400 and six.json()[0]["errorCode"] == "LIMIT_EXCEEDED"
    [answer] = over["compositeResponse"]
    assert (answer["httpStatusCode"], answer["body"][0]["errorCode"]) == (400, "EXCEEDED_ID_LIMIT")
    assert sandbox.objects("salesforce", "Account") == []
