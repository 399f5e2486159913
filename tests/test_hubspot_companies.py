"""HubSpot companies: a person's clinic is a company upserted by `ennu_company_id`, their contact is linked
to it (v4 default association) on registration and re-linked when they move clinic; erasure removes the
contact and its links, never the clinic's company."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from sqlalchemy import update

from connectors.base import Person, Record
from connectors.hubspot import HubSpotConnector
from connectors.hubspot.targets import KnownTargets, fingerprint
from ennu.db import session_scope
from ennu.models import User
from ennu.settings import get_settings
from flows.user_clinic_changed import user_clinic_changed
from flows.user_registered import user_registered
from tests.factories import add_clinic, add_event, add_person

AUTH = {"Authorization": "Bearer sandbox-hubspot-token"}


def paths(sandbox: Any, since: int = 0) -> list[str]:
    return [
        f"{r['method']} {r['path'].removeprefix('/hubspot')}" for r in sandbox.requests("hubspot")[since:]
    ]


def company_by_id(sandbox: Any) -> dict[str, dict[str, Any]]:
    """Our clinic companies by `ennu_company_id`."""
    return {
        c["properties"]["ennu_company_id"]: c
        for c in sandbox.objects("hubspot", "companies")
        if c["properties"].get("ennu_company_id")
    }


def contact_links(sandbox: Any) -> set[tuple[str, str]]:
    """(contact id, company id) of every contact→company association the stand-in holds."""
    return {
        (a["fromObjectId"], a["toObjectId"])
        for a in sandbox.objects("hubspot", "associations")
        if (a["fromObjectType"], a["toObjectType"]) == ("contacts", "companies")
    }


def move(user_id: int, clinic_id: int | None) -> None:
    with session_scope() as session:
        session.execute(update(User).where(User.id == user_id).values(clinic_id=clinic_id))


@pytest.mark.usefixtures("prefect_server")
def test_registration_links_the_contact_to_its_clinic_company_and_a_move_relinks_it(
    database: str, sandbox: Any
) -> None:
    north = add_clinic("Northside Clinic", domain="Northside.Example.com")
    south = add_clinic("Southside Clinic", domain=None)
    ada = add_person(email="ada@example.com", clinic_id=north)
    bo = add_person(email="bo@example.com", clinic_id=north)
    cy = add_person(email="cy@example.com")  # no clinic: no company, no link

    user_registered(event_ids=[add_event("user.registered", u) for u in (ada, bo, cy)])

    companies = company_by_id(sandbox)
    assert set(companies) == {str(north)}  # one company for two people of one clinic
    assert companies[str(north)]["properties"]["name"] == "Northside Clinic"
    assert companies[str(north)]["properties"]["domain"] == "northside.example.com"
    contacts = {c["properties"]["email"]: c for c in sandbox.objects("hubspot", "contacts")}
    assert not any(
        k.startswith(("associations", "companies")) for k in contacts["ada@example.com"]["properties"]
    )
    north_id = companies[str(north)]["id"]
    assert contact_links(sandbox) == {
        (contacts["ada@example.com"]["id"], north_id),
        (contacts["bo@example.com"]["id"], north_id),
    }
    # The company idProperty had to exist first: the portal was given it, the batch retried once.
    sent = paths(sandbox)
    assert "POST /crm/v3/properties/companies/batch/create" in sent
    assert sent.count("POST /crm/v4/associations/contacts/companies/batch/associate/default") == 1

    # Ada moves to Southside; Bo leaves every clinic, and someone at the clinic has linked Bo to a company
    # that is not one of ours (created by us, then its id cleared, as a HubSpot user may).
    hubspot = HubSpotConnector.from_settings(get_settings(), rate_limited=False)
    try:
        base = hubspot.http.base_url
    finally:
        hubspot.close()
    employer = requests.post(
        f"{base}/crm/v3/objects/companies/batch/upsert",
        json={"inputs": [{"id": "x-1", "idProperty": "ennu_company_id", "properties": {"name": "Employer"}}]},
        headers=AUTH,
        timeout=5,
    ).json()["results"][0]["id"]
    requests.patch(
        f"{base}/crm/v3/objects/companies/{employer}",
        json={"properties": {"ennu_company_id": ""}},
        headers=AUTH,
        timeout=5,
    ).raise_for_status()
    requests.post(
        f"{base}/crm/v4/associations/contacts/companies/batch/associate/default",
        json={"inputs": [{"from": {"id": contacts["bo@example.com"]["id"]}, "to": {"id": employer}}]},
        headers=AUTH,
        timeout=5,
    ).raise_for_status()
    move(ada, south)
    move(bo, None)
    before = len(sandbox.requests("hubspot"))

    user_clinic_changed(event_ids=[add_event("user.clinic_changed", u) for u in (ada, bo)])

    south_id = company_by_id(sandbox)[str(south)]["id"]
    assert contact_links(sandbox) == {
        (contacts["ada@example.com"]["id"], south_id),
        (contacts["bo@example.com"]["id"], employer),  # not ours: kept
    }
    assert paths(sandbox, before) == [
        "POST /crm/v3/objects/contacts/batch/upsert",
        "POST /crm/v3/objects/companies/batch/upsert",
        "POST /crm/v4/associations/contacts/companies/batch/associate/default",
        "POST /crm/v4/associations/contacts/companies/batch/read",
        "POST /crm/v3/objects/companies/batch/read",
        "POST /crm/v4/associations/contacts/companies/batch/archive",
    ]
    assert len(sandbox.objects("hubspot", "companies")) == 3  # north stays: a clinic is not a person


def test_erasure_removes_the_contacts_company_links_and_keeps_the_company(
    sqlite_database: str, sandbox: Any
) -> None:
    hubspot = HubSpotConnector.from_settings(get_settings(), rate_limited=False)
    try:
        fields = {
            "email": "dee@example.com",
            "associations.companies.ennu_company_id": 41.0,  # a join with misses makes ids floats
            "companies.name": "Eastside Clinic",
        }
        [outcome] = hubspot.push("contacts", "email", [Record("user:9", "evt-9", 9, fields)])
        assert outcome.status.value == "created" and outcome.error is None
        [company] = sandbox.objects("hubspot", "companies")
        assert company["properties"]["ennu_company_id"] == "41"
        assert contact_links(sandbox) == {(outcome.remote_id, company["id"])}

        assert hubspot.erase(Person(user_id=9, email="dee@example.com")).status.value == "erased"
    finally:
        hubspot.close()
    assert sandbox.objects("hubspot", "associations") == []
    assert [c["id"] for c in sandbox.objects("hubspot", "companies")] == [company["id"]]


def test_a_clinic_company_is_upserted_once_until_it_changes_or_is_deleted_in_hubspot(
    sqlite_database: str, sandbox: Any
) -> None:
    """Later batches of a clinic's people link to the company this connector upserted, with no company
    request; a renamed clinic is upserted again; a company deleted in HubSpot is created again and linked."""
    hubspot = HubSpotConnector.from_settings(get_settings(), rate_limited=False)

    def register(n: int, clinic: str = "Eastside Clinic") -> Any:
        fields = {
            "email": f"p{n}@example.com",
            "associations.companies.ennu_company_id": 41,
            "companies.name": clinic,
        }
        [outcome] = hubspot.push("contacts", "email", [Record(f"user:{n}", f"evt-{n}", n, fields)])
        assert outcome.status.value == "created" and outcome.error is None, outcome
        return outcome.remote_id

    upsert = "POST /crm/v3/objects/companies/batch/upsert"
    link = "POST /crm/v4/associations/contacts/companies/batch/associate/default"
    try:
        first = register(1)
        [company] = sandbox.objects("hubspot", "companies")
        before = len(sandbox.requests("hubspot"))
        second = register(2)
        assert paths(sandbox, before) == ["POST /crm/v3/objects/contacts/batch/upsert", link]

        before = len(sandbox.requests("hubspot"))
        third = register(3, clinic="Eastside Clinic & Lab")
        assert paths(sandbox, before).count(upsert) == 1
        [renamed] = sandbox.objects("hubspot", "companies")
        assert renamed["id"] == company["id"] and renamed["properties"]["name"] == "Eastside Clinic & Lab"
        assert contact_links(sandbox) == {(contact, company["id"]) for contact in (first, second, third)}

        requests.post(
            f"{hubspot.http.base_url}/crm/v3/objects/companies/batch/archive",
            json={"inputs": [{"id": company["id"]}]},
            headers=AUTH,
            timeout=5,
        ).raise_for_status()
        before = len(sandbox.requests("hubspot"))
        fourth = register(4, clinic="Eastside Clinic & Lab")
        assert paths(sandbox, before) == ["POST /crm/v3/objects/contacts/batch/upsert", link, upsert, link]
    finally:
        hubspot.close()
    [again] = sandbox.objects("hubspot", "companies")
    assert again["id"] != company["id"] and again["properties"]["ennu_company_id"] == "41"
    assert contact_links(sandbox) == {(fourth, again["id"])}  # the others' links went with the company


def test_known_targets_keep_no_key_nor_value_and_forget_the_least_recently_used() -> None:
    known = KnownTargets(limit=2)
    sent = fingerprint({"ennu_company_id": "41", "name": "Eastside Clinic"})
    known.remember(("contacts", "email", "ada@example.com"), "101", fingerprint(None))
    known.remember(("companies", "ennu_company_id", "41"), "201", sent)
    assert known.get(("contacts", "email", "ada@example.com"), fingerprint(None)) == "101"
    assert known.get(("companies", "ennu_company_id", "41"), fingerprint({"name": "Westside"})) is None
    assert "ada@example.com" not in repr(known._known) and "Eastside" not in repr(known._known)

    known.remember(("companies", "ennu_company_id", "42"), "202", sent)  # the company was used least lately
    assert len(known) == 2 and known.get(("companies", "ennu_company_id", "41"), sent) is None
    known.forget([("contacts", "email", "ada@example.com")])
    assert known.get(("contacts", "email", "ada@example.com"), fingerprint(None)) is None
