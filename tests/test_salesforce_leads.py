"""A person who came in as a Salesforce Lead stays one until staff convert it, then is that Contact.

Host events → flows → connector → the stand-in, which refuses updates of a converted Lead
(CANNOT_UPDATE_CONVERTED_LEAD) and converts a Lead as Salesforce's convertLead does (`convert_lead`: a new
Account and Contact; custom fields only where the org maps them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.base import Person
from connectors.salesforce.connector import SalesforceConnector
from connectors.salesforce.leads import NOT_CONVERTED
from devtools.routing import routing_copy
from ennu.db import session_scope
from ennu.models import SyncLog, SyncStatus
from ennu.settings import get_settings, reload_settings
from flows.assessment_completed import assessment_completed
from flows.health_goal_completed import health_goal_completed
from flows.health_goal_created import health_goal_created
from flows.user_registered import user_registered
from tests.factories import add_assessment, add_event, add_goal, add_person, completed_event

pytestmark = pytest.mark.usefixtures("prefect_server")
CONTACT_ROUTE = "    - {connector: salesforce}                    # a Contact"


@pytest.fixture()
def lead_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Salesforce alone, registrations routed to the Lead mapping (a site whose sign-ups are Leads)."""
    copy = routing_copy(tmp_path / "mappings", disable=["hubspot", "mailchimp", "stripe", "ga4", "zapier"])
    routing = copy / "routing.yaml"
    text = routing.read_text()
    assert CONTACT_ROUTE in text
    routing.write_text(
        text.replace(CONTACT_ROUTE, "    - {connector: salesforce, mapping: salesforce_lead}  # a Lead", 1)
    )
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(copy))
    reload_settings()


@pytest.fixture()
def salesforce(sandbox: Any) -> Iterator[SalesforceConnector]:
    connector = SalesforceConnector.from_settings(get_settings(), rate_limited=False)
    yield connector
    connector.close()


def assess(user_id: int, overall: float) -> None:
    assessment_completed(event_ids=[completed_event(user_id, add_assessment(user_id, overall=overall))])


def only(sandbox: Any, kind: str) -> dict[str, Any]:
    [record] = sandbox.objects("salesforce", kind)
    return record


def salesforce_log(user_id: int) -> list[tuple[str, str, str | None]]:
    """(object, status, error) of the person's Salesforce sync-log rows, oldest first."""
    with session_scope() as session:
        rows = session.execute(
            select(SyncLog.object, SyncLog.status, SyncLog.error)
            .where(SyncLog.connector == "salesforce", SyncLog.user_id == user_id)
            .order_by(SyncLog.id)
        ).all()
    return [(o, s, e) for o, s, e in rows]


def test_a_lead_takes_the_persons_updates_until_converted_then_its_contact_does(
    database: str, sandbox: Any, lead_site: None
) -> None:
    user_id = add_person()
    goal_id = add_goal(user_id)
    user_registered(event_ids=[add_event("user.registered", user_id)])

    # Still a Lead: the scores go to the Lead (no Contact beside it), the goal gets no Opportunity yet.
    before = len(sandbox.requests("salesforce"))
    assess(user_id, 6.2)
    lead = only(sandbox, "Lead")
    assert (lead["ENNU_Overall_Score__c"], lead["IsConverted"]) == (6.2, False)
    assert "Birthdate" not in lead  # a Contact field a Lead does not have is never sent to it
    assert sandbox.objects("salesforce", "Contact") == []
    assert len(sandbox.requests("salesforce")) == before + 1  # no look-up: the hub knows them as a Lead
    health_goal_created(event_ids=[add_event("health_goal.created", user_id, goal_id)])
    assert sandbox.objects("salesforce", "Opportunity") == []
    assert salesforce_log(user_id)[-1] == ("Opportunity", SyncStatus.SKIPPED.value, NOT_CONVERTED)

    # Staff convert the Lead; this org does not map ENNU_User_Id__c: the new Contact lacks it.
    converted = sandbox.convert_lead(str(user_id))
    assert "ENNU_User_Id__c" not in only(sandbox, "Contact")

    assess(user_id, 7.9)
    contact = only(sandbox, "Contact")
    assert contact["Id"] == converted["contactId"]
    assert (contact["ENNU_User_Id__c"], contact["ENNU_Overall_Score__c"]) == (str(user_id), 7.9)
    assert only(sandbox, "Lead")["ENNU_Overall_Score__c"] == 6.2  # the converted Lead is left as it was
    assert salesforce_log(user_id)[-1][:2] == ("Contact", SyncStatus.UPDATED.value)

    # From now on a Contact by external id: one collection upsert, no look-up of Leads.
    before = len(sandbox.requests("salesforce"))
    assess(user_id, 8.4)
    [sent] = sandbox.requests("salesforce")[before:]
    assert sent["path"].endswith("/composite/sobjects/Contact/ENNU_User_Id__c")
    assert only(sandbox, "Contact")["ENNU_Overall_Score__c"] == 8.4

    # The goal's next event creates its Opportunity, its contact role the converted Contact.
    health_goal_completed(event_ids=[add_event("health_goal.completed", user_id, goal_id)])
    opportunity = only(sandbox, "Opportunity")
    role = only(sandbox, "OpportunityContactRole")
    assert (role["OpportunityId"], role["ContactId"]) == (opportunity["Id"], converted["contactId"])


def test_a_goal_of_a_converted_lead_links_the_contact_before_the_hub_saw_the_conversion(
    sqlite_database: str, sandbox: Any, lead_site: None
) -> None:
    user_id = add_person()
    goal_id = add_goal(user_id)
    user_registered(event_ids=[add_event("user.registered", user_id)])
    converted = sandbox.convert_lead(str(user_id))

    health_goal_created(event_ids=[add_event("health_goal.created", user_id, goal_id)])

    role = only(sandbox, "OpportunityContactRole")
    assert role["ContactId"] == converted["contactId"]
    assert only(sandbox, "Contact")["ENNU_User_Id__c"] == str(user_id)


def test_an_org_that_maps_the_external_id_on_conversion_keeps_one_contact(
    sqlite_database: str, sandbox: Any, lead_site: None
) -> None:
    user_id = add_person()
    user_registered(event_ids=[add_event("user.registered", user_id)])
    converted = sandbox.convert_lead(str(user_id), mapped_fields=["ENNU_User_Id__c"])
    assert only(sandbox, "Contact")["ENNU_User_Id__c"] == str(user_id)

    assess(user_id, 5.5)

    contact = only(sandbox, "Contact")
    assert (contact["Id"], contact["ENNU_Overall_Score__c"]) == (converted["contactId"], 5.5)


def test_consent_withdrawal_reaches_the_lead_and_then_the_converted_contact(
    sqlite_database: str, sandbox: Any, lead_site: None, salesforce: SalesforceConnector
) -> None:
    user_id = add_person()
    user_registered(event_ids=[add_event("user.registered", user_id)])

    outcome = salesforce.withdraw_consent(Person(user_id), frozenset({"marketing"}))
    assert outcome is not None and outcome.status == SyncStatus.UPDATED
    assert only(sandbox, "Lead")["HasOptedOutOfEmail"] is True
    assert sandbox.objects("salesforce", "Contact") == []

    sandbox.convert_lead(str(user_id))
    outcome = salesforce.withdraw_consent(Person(user_id), frozenset({"communication"}))
    assert outcome is not None and outcome.status == SyncStatus.UPDATED
    contact = only(sandbox, "Contact")
    assert (contact["DoNotCall"], contact["HasOptedOutOfEmail"]) == (True, True)  # the second copied over


def test_erasure_deletes_the_lead_and_the_contact_it_was_converted_to(
    sqlite_database: str, sandbox: Any, lead_site: None, salesforce: SalesforceConnector
) -> None:
    user_id, other = add_person(), add_person()
    user_registered(event_ids=[add_event("user.registered", u) for u in (user_id, other)])
    sandbox.convert_lead(str(user_id))  # its Contact without the external id: only the Lead names it

    erased = salesforce.erase(Person(user_id))

    assert (erased.status, erased.remote_id) == (SyncStatus.ERASED, "Lead,Contact")
    assert sandbox.objects("salesforce", "Contact") == []
    assert [lead["ENNU_User_Id__c"] for lead in sandbox.objects("salesforce", "Lead")] == [str(other)]
