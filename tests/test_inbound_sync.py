"""The inbound sync: CRM-side changes reach the host's users once, and our own writes never echo."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.variables import Variable
from sqlalchemy import select

from connectors.base import Record
from connectors.hubspot import HubSpotConnector
from connectors.salesforce import SalesforceConnector
from ennu.db import session_scope
from ennu.models import SyncLog, User
from ennu.settings import get_settings
from flows.inbound_sync import inbound_sync, watermark_variable
from flows.user_registered import user_registered
from mappings.inbound import inbound_mappings
from mappings.loader import MappingError
from tests.factories import add_event, add_person

pytestmark = pytest.mark.usefixtures("prefect_server")

NEW_OWNER = "0055g00000NEWOWN"


def host_user(user_id: int) -> User:
    with session_scope() as session:
        user = session.get(User, user_id)
        assert user is not None
        session.expunge(user)
        return user


def received_rows(connector: str) -> list[SyncLog]:
    with session_scope() as session:
        rows = session.execute(
            select(SyncLog).where(SyncLog.connector == connector, SyncLog.status == "received")
        ).scalars()
        return [r for r in rows if not session.expunge(r)]


def salesforce_user_edits(user_id: int, **fields: Any) -> None:
    """What a person at the clinic does in Salesforce: an update through the REST API, not through us."""
    connector = SalesforceConnector.from_settings(get_settings(), rate_limited=False)
    try:
        record = Record(f"user:{user_id}", None, user_id, {"ENNU_User_Id__c": str(user_id), **fields})
        assert connector.upsert_one("Contact", "ENNU_User_Id__c", record).status == "updated"
    finally:
        connector.close()


def summary_of(rows: list[dict[str, Any]], integration: str) -> dict[str, Any]:
    return next(r for r in rows if r["integration"] == integration)


def test_salesforce_owner_and_opt_outs_reach_the_host_and_our_writes_do_not_echo(
    database: str, sandbox: Any
) -> None:
    Variable.unset(watermark_variable("salesforce"))
    user_id = add_person(marketing=True, communication=True)
    user_registered(event_ids=[add_event("user.registered", user_id, event_id="reg-1")])

    # First run: the new Contact is owned by the API user; that is Salesforce's state and the host mirrors it.
    first = summary_of(inbound_sync(integrations=["salesforce"]), "salesforce")
    assert (first["fetched"], first["applied"], first["unmatched"]) == (1, 1, 0)
    assert host_user(user_id).salesforce_owner_id == "0055g00000ENNUAPI"
    assert Variable.get(watermark_variable("salesforce")) == first["watermark"]

    # Our own write bumps SystemModstamp; it is read back but changes nothing and writes no row.
    with session_scope() as session:
        session.get(User, user_id).first_name = "Adah"  # type: ignore[union-attr]
    user_registered(event_ids=[add_event("user.registered", user_id, event_id="reg-2")])
    echo = summary_of(inbound_sync(integrations=["salesforce"]), "salesforce")
    assert (echo["fetched"], echo["applied"], echo["unchanged"]) == (1, 0, 1)
    assert len(received_rows("salesforce")) == 1

    # A person at the clinic reassigns the Contact and ticks Email Opt Out and Do Not Call.
    salesforce_user_edits(user_id, OwnerId=NEW_OWNER, HasOptedOutOfEmail=True, DoNotCall=True)
    changed = summary_of(inbound_sync(integrations=["salesforce"]), "salesforce")
    assert (changed["applied"], changed["unmatched"]) == (1, 0)
    user = host_user(user_id)
    assert (user.salesforce_owner_id, user.marketing_consent, user.communication_consent) == (
        NEW_OWNER,
        False,
        False,
    )
    rows = received_rows("salesforce")
    assert len(rows) == 2 and rows[-1].record_key == f"user:{user_id}" and rows[-1].object == "Contact"
    assert datetime.fromisoformat(changed["watermark"]) > datetime.fromisoformat(first["watermark"])

    # Clearing the opt-out at Salesforce never grants consent back; and the inbound change is never pushed.
    salesforce_user_edits(user_id, HasOptedOutOfEmail=False, DoNotCall=False)
    inbound_sync(integrations=["salesforce"])
    assert host_user(user_id).marketing_consent is False
    before = sandbox.request_count("salesforce", "/composite/sobjects")
    user_registered(event_ids=[add_event("user.registered", user_id, event_id="reg-3")])
    assert sandbox.request_count("salesforce", "/composite/sobjects") == before  # nothing new to send


def test_hubspot_lifecycle_owner_and_opt_out_reach_the_host_once(database: str, sandbox: Any) -> None:
    Variable.unset(watermark_variable("hubspot"))
    user_id = add_person(marketing=True)
    user_registered(event_ids=[add_event("user.registered", user_id, event_id="hs-reg-1")])
    (contact,) = sandbox.objects("hubspot", "contacts")

    # A person at the clinic works the contact in HubSpot (the CRM v3 single-object update).
    hubspot = HubSpotConnector.from_settings(get_settings(), rate_limited=False)
    try:
        changes = {"lifecyclestage": "customer", "hubspot_owner_id": "31415", "hs_email_optout": "true"}
        hubspot.http.request(
            "PATCH", f"/crm/v3/objects/contacts/{contact['id']}", json={"properties": changes}
        )
    finally:
        hubspot.close()
    run = summary_of(inbound_sync(integrations=["hubspot"]), "hubspot")
    assert (run["fetched"], run["applied"], run["unmatched"]) == (1, 1, 0)
    user = host_user(user_id)
    assert (user.lifecycle_stage, user.hubspot_owner_id, user.marketing_consent) == (
        "customer",
        "31415",
        False,
    )
    # The opt-out reaches the marketing list too: the member is unsubscribed and archived at Mailchimp.
    archived = [
        r for r in sandbox.requests("mailchimp") if r["method"] == "DELETE" and "/members/" in r["path"]
    ]
    assert len(archived) == 1 and archived[0]["status"] == 204
    assert run["marketing_withdrawn"] == 1

    # Our own next write to the contact comes back as a change, and changes nothing.
    with session_scope() as session:
        session.get(User, user_id).first_name = "Adah"  # type: ignore[union-attr]
    user_registered(event_ids=[add_event("user.registered", user_id, event_id="hs-reg-2")])
    echo = summary_of(inbound_sync(integrations=["hubspot"]), "hubspot")
    assert (echo["applied"], echo["unchanged"]) == (0, 1)
    assert len(received_rows("hubspot")) == 1


def test_a_change_for_someone_we_do_not_know_is_counted_not_applied(
    sqlite_database: str, sandbox: Any
) -> None:
    Variable.unset(watermark_variable("salesforce"))
    user_id = add_person()
    user_registered(event_ids=[add_event("user.registered", user_id, event_id="reg-x")])
    with session_scope() as session:
        session.delete(session.get(User, user_id))
    run = summary_of(inbound_sync(integrations=["salesforce"]), "salesforce")
    assert (run["fetched"], run["applied"], run["unmatched"]) == (1, 0, 1)


def test_an_inbound_field_written_outbound_is_refused_as_an_echo(tmp_path: Path) -> None:
    root = Path(get_settings().mappings_dir)
    for path in root.glob("*/*.yaml"):
        target = tmp_path / path.parent.name / path.name
        target.parent.mkdir(exist_ok=True)
        target.write_text(path.read_text())
    login = tmp_path / "user.login" / "hubspot.yaml"
    owner = 'fields:\n  hubspot_owner_id:\n    value: "1"\n'
    login.write_text(login.read_text().replace("fields:\n", owner, 1))
    with pytest.raises(MappingError, match=r"hubspot_owner_id.*written by user\.login/hubspot"):
        inbound_mappings(tmp_path)
