"""HubSpot against its stand-in: configured deal pipeline and stages, v4 associations, ENNU's property
definitions (created once, remembered), recently modified contacts through search, GDPR delete."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.base import Person, Record
from connectors.hubspot import HubSpotConnector
from connectors.hubspot.properties import property_definitions
from connectors.hubspot.search import parse_hubspot_time
from ennu.db import session_scope
from ennu.models import SyncLog, SyncStatus
from ennu.settings import get_settings, reload_settings
from flows.health_goal_created import health_goal_created
from flows.user_registered import user_registered
from mappings import load_all_mappings
from sandbox.hubspot import SEARCH_CAP_ENV, STRICT_ENV
from tests.engine_support import wait_for
from tests.factories import add_event, add_goal, add_person

REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
AUTH = {"Authorization": "Bearer sandbox-hubspot-token"}


@pytest.fixture()
def configured_stages(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HUBSPOT_DEAL_PIPELINE", "ennu-goals")
    monkeypatch.setenv("HUBSPOT_DEAL_STAGE_OPEN", "goal-open-17")
    monkeypatch.setenv("HUBSPOT_DEAL_STAGE_WON", "goal-won-18")
    reload_settings()
    yield
    monkeypatch.undo()
    reload_settings()


@pytest.fixture()
def strict_portal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in refuses undefined properties, as a real portal does."""
    monkeypatch.setenv(STRICT_ENV, "1")


def connector(**options: Any) -> HubSpotConnector:
    made = HubSpotConnector.from_settings(get_settings(), rate_limited=False)
    for name, value in options.items():
        setattr(made, name, value)
    return made


def contact(n: int, **extra: Any) -> Record:
    fields = {"email": f"person{n}@example.com", "firstname": "Ada", **extra}
    return Record(f"user:{n}", f"evt-{n}", n, fields)


def deal(goal: int, stage: str, email: str | None) -> Record:
    """A deal record with the fields the health goal mappings produce."""
    fields = {
        "ennu_goal_id": goal,
        "dealname": "ENNU goal: lose weight",
        "dealstage": stage,
        "closedate": 1767225600000,
        "associations.contacts.email": email,
    }
    return Record(f"health_goal:{goal}", f"evt-g{goal}", 1, fields)


def paths(sandbox: Any) -> list[str]:
    return [f"{r['method']} {r['path'].removeprefix('/hubspot')}" for r in sandbox.requests("hubspot")]


# ------------------------------------------------------------------------------------------ deals


def test_deal_records_have_the_fields_of_the_goal_mappings() -> None:
    every = load_all_mappings(REPO_MAPPINGS)
    for event in ("health_goal.created", "health_goal.completed"):
        mapping = every[(event, "hubspot")]
        assert set(mapping.fields) == set(deal(1, "open", "a@example.com").fields)
        assert "pipeline" not in mapping.fields  # the connector puts the configured one on the wire
    assert every[("health_goal.created", "hubspot")].fields["dealstage"].value == "open"
    assert every[("health_goal.completed", "hubspot")].fields["dealstage"].value == "won"


def test_deal_opens_then_wins_with_configured_ids_and_is_associated(
    sandbox: Any, configured_stages: None
) -> None:
    hubspot = connector()
    [person] = hubspot.push("contacts", "email", [contact(1)])
    before = len(sandbox.requests("hubspot"))

    [opened] = hubspot.push("deals", "ennu_goal_id", [deal(7, "open", "person1@example.com")])

    assert opened.status == SyncStatus.CREATED and opened.error is None
    assert paths(sandbox)[before:] == [
        "POST /crm/v3/objects/deals/batch/upsert",
        "POST /crm/v3/objects/contacts/batch/read",
        "POST /crm/v4/associations/deals/contacts/batch/associate/default",
    ]
    [stored] = sandbox.objects("hubspot", "deals")
    assert stored["properties"]["pipeline"] == "ennu-goals"
    assert stored["properties"]["dealstage"] == "goal-open-17"
    assert not any(name.startswith("associations") for name in stored["properties"])
    linked = requests.get(
        f"{hubspot.http.base_url}/crm/v4/objects/deals/{opened.remote_id}/associations/contacts",
        headers=AUTH,
        timeout=5,
    ).json()["results"]
    assert linked == [
        {
            "toObjectId": int(str(person.remote_id)),
            "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None}],
        }
    ]

    [won] = hubspot.push("deals", "ennu_goal_id", [deal(7, "won", "person1@example.com")])

    assert won.status == SyncStatus.UPDATED and won.remote_id == opened.remote_id
    [stored] = sandbox.objects("hubspot", "deals")
    assert stored["properties"]["dealstage"] == "goal-won-18"


def test_a_hundred_deals_cost_three_requests(sandbox: Any) -> None:
    hubspot = connector()
    for start in range(0, 100, 50):
        hubspot.push("contacts", "email", [contact(n) for n in range(start, start + 50)])
    before = len(sandbox.requests("hubspot"))

    outcomes = hubspot.push(
        "deals", "ennu_goal_id", [deal(n, "open", f"person{n}@example.com") for n in range(100)]
    )

    assert [o.status for o in outcomes] == [SyncStatus.CREATED] * 100
    assert all(o.error is None for o in outcomes)
    assert len(sandbox.requests("hubspot")) - before == 3
    assert len(sandbox.objects("hubspot", "associations")) == 200  # both directions


def test_deals_read_their_contacts_once_and_again_when_hubspot_refuses_a_link(sandbox: Any) -> None:
    """The contacts' ids are remembered by the connector; a contact deleted and created again in HubSpot
    (a new id) makes the next link fail once, and the connector reads that contact again and links."""
    hubspot = connector()
    [person] = hubspot.push("contacts", "email", [contact(1)])
    hubspot.push("deals", "ennu_goal_id", [deal(1, "open", "person1@example.com")])
    start = len(sandbox.requests("hubspot"))
    hubspot.push("deals", "ennu_goal_id", [deal(2, "open", "person1@example.com")])
    link = "POST /crm/v4/associations/deals/contacts/batch/associate/default"
    assert paths(sandbox)[start:] == ["POST /crm/v3/objects/deals/batch/upsert", link]

    requests.post(
        f"{hubspot.http.base_url}/crm/v3/objects/contacts/batch/archive",
        json={"inputs": [{"id": person.remote_id}]},
        headers={"Authorization": "Bearer sandbox-hubspot-token"},
        timeout=5,
    ).raise_for_status()
    [again] = connector().push("contacts", "email", [contact(1)])  # another process creates it again
    start = len(sandbox.requests("hubspot"))
    [outcome] = hubspot.push("deals", "ennu_goal_id", [deal(3, "open", "person1@example.com")])
    assert outcome.error is None
    read = "POST /crm/v3/objects/contacts/batch/read"
    assert paths(sandbox)[start:] == ["POST /crm/v3/objects/deals/batch/upsert", link, read, link]
    linked = {
        (a["fromObjectId"], a["toObjectId"])
        for a in sandbox.objects("hubspot", "associations")
        if a["fromObjectType"] == "deals"
    }
    assert linked == {(outcome.remote_id, again.remote_id)}


def test_a_deal_without_its_contact_is_upserted_and_says_it_is_not_associated(sandbox: Any) -> None:
    hubspot = connector()
    hubspot.push("contacts", "email", [contact(1)])
    outcomes = hubspot.push(
        "deals",
        "ennu_goal_id",
        [
            deal(1, "open", "person1@example.com"),
            deal(2, "open", "nobody@example.com"),
            deal(3, "open", None),
        ],
    )
    assert [o.status for o in outcomes] == [SyncStatus.CREATED] * 3
    assert outcomes[0].error is None
    assert outcomes[1].error == "not associated: no contacts with that email"
    assert "nobody" not in str(outcomes[1])  # the reason names no value
    assert outcomes[2].error is None  # nothing to associate with
    assert len(sandbox.objects("hubspot", "deals")) == 3


def test_an_unknown_logical_stage_is_rejected_without_a_request(sandbox: Any) -> None:
    [outcome] = connector().push("deals", "ennu_goal_id", [deal(1, "appointmentscheduled", None)])
    assert outcome.status == SyncStatus.REJECTED and "open, won" in (outcome.error or "")
    assert sandbox.requests("hubspot") == []


# ------------------------------------------------------------------------------------- properties


def test_definitions_come_from_the_mapping_files() -> None:
    definitions = property_definitions(REPO_MAPPINGS)
    contacts = {d["name"]: d for d in definitions["contacts"]}
    deals = {d["name"]: d for d in definitions["deals"]}
    assert contacts["ennu_user_id"]["hasUniqueValue"] is True  # the inbound match key
    assert deals["ennu_goal_id"]["hasUniqueValue"] is True  # the deals' upsert key
    assert contacts["ennu_overall_score"]["type"] == "number"
    assert contacts["ennu_score_sleep_quality"]["type"] == "number"  # one per score category
    companies = {d["name"]: d for d in definitions["companies"]}
    assert companies["ennu_company_id"]["hasUniqueValue"] is True  # the clinic companies' association key
    assert not {"name", "domain", "companies.name"} & (set(companies) | set(contacts))
    assert contacts["ennu_last_assessment_date"]["type"] == "date"
    assert contacts["ennu_last_assessment_type"]["type"] == "enumeration"
    assert {o["value"] for o in contacts["ennu_last_assessment_type"]["options"]} >= {"Sleep", "Hormone"}
    assert all(d["groupName"] == "ennu" for d in [*contacts.values(), *deals.values()])
    assert not {"email", "firstname", "dealstage", "pipeline"} & {*contacts, *deals}  # HubSpot's own


def test_properties_are_created_once_and_remembered_across_instances(
    sqlite_database: str, sandbox: Any, strict_portal: None
) -> None:
    first = connector()
    created = first.ensure_properties()

    wanted = property_definitions(REPO_MAPPINGS)
    assert {k: sorted(v) for k, v in created.items()} == {
        k: sorted(d["name"] for d in v) for k, v in wanted.items()
    }
    assert paths(sandbox) == [
        "GET /crm/v3/properties/companies",
        "POST /crm/v3/properties/companies/groups",
        "POST /crm/v3/properties/companies/batch/create",
        "GET /crm/v3/properties/contacts",
        "POST /crm/v3/properties/contacts/groups",
        "POST /crm/v3/properties/contacts/batch/create",
        "GET /crm/v3/properties/deals",
        "POST /crm/v3/properties/deals/groups",
        "POST /crm/v3/properties/deals/batch/create",
    ]
    unique = {
        p["name"]
        for p in requests.get(
            f"{first.http.base_url}/crm/v3/properties/contacts", headers=AUTH, timeout=5
        ).json()["results"]
        if p.get("hasUniqueValue")
    }
    assert "ennu_user_id" in unique

    assert first.ensure_properties() == {}  # the same instance: no request
    assert connector().ensure_properties() == {}  # another instance (process): remembered, no request
    assert len(sandbox.requests("hubspot")) == 9 + 1  # the read of the test above

    [outcome] = first.push("contacts", "email", [contact(1, ennu_overall_score=7.5, ennu_user_id=1)])
    assert outcome.status == SyncStatus.CREATED


def test_a_missing_property_is_created_and_the_batch_retried_once(
    sqlite_database: str, sandbox: Any, strict_portal: None
) -> None:
    hubspot = connector()
    outcomes = hubspot.push("contacts", "email", [contact(1, ennu_overall_score=7.5), contact(2)])

    assert [o.status for o in outcomes] == [SyncStatus.CREATED] * 2
    sent = paths(sandbox)
    assert sent[0] == sent[-1] == "POST /crm/v3/objects/contacts/batch/upsert"
    assert sandbox.requests("hubspot")[0]["status"] == 400
    assert "POST /crm/v3/properties/contacts/batch/create" in sent
    assert len(sent) == 2 + 9


def test_pushes_that_meet_the_missing_properties_at_once_create_them_once(
    sqlite_database: str, sandbox: Any, strict_portal: None
) -> None:
    hubspot = connector()
    # Each upsert is answered late, so all four are at the portal before the first 400 comes back.
    sandbox.fail("hubspot", mode="slow", delay=1.5, count=4)
    with concurrent.futures.ThreadPoolExecutor(4) as pushes:
        batches = [[contact(n, ennu_overall_score=7.5)] for n in range(4)]
        done = list(pushes.map(lambda batch: hubspot.push("contacts", "email", batch), batches))

    assert [o.status for outcomes in done for o in outcomes] == [SyncStatus.CREATED] * 4
    upserts = [r for r in sandbox.requests("hubspot") if r["path"].endswith("/batch/upsert")]
    assert [r["status"] for r in upserts].count(400) == 4 and len(upserts) == 8  # each retried once
    assert paths(sandbox).count("GET /crm/v3/properties/contacts") == 1  # the portal read once, not 4 times


def test_a_strict_portal_refuses_an_undefined_property_in_hubspots_shape(
    sandbox: Any, strict_portal: None
) -> None:
    base = connector().http.base_url
    answer = requests.post(
        f"{base}/crm/v3/objects/contacts/batch/upsert",
        json={"inputs": [{"id": "a@example.com", "idProperty": "email", "properties": {"shoe_size": "9"}}]},
        headers=AUTH,
        timeout=5,
    )
    assert answer.status_code == 400
    body = answer.json()
    assert body["category"] == "VALIDATION_ERROR" and "PROPERTY_DOESNT_EXIST" in body["message"]
    assert body["errors"] == [
        {
            "message": 'Property "shoe_size" does not exist',
            "code": "PROPERTY_DOESNT_EXIST",
            "context": {"propertyName": ["shoe_size"]},
        }
    ]
    assert sandbox.objects("hubspot", "contacts") == []


@pytest.mark.usefixtures("prefect_server")
def test_on_a_strict_portal_the_pipeline_creates_our_properties_once_and_associates_the_deal(
    sqlite_database: str, sandbox: Any, strict_portal: None
) -> None:
    user_id = add_person(email="goal.owner@example.com")
    user_registered(event_ids=[add_event("user.registered", user_id)])
    goal_id = add_goal(user_id)
    health_goal_created(event_ids=[add_event("health_goal.created", user_id, goal_id)])

    [person] = sandbox.objects("hubspot", "contacts")
    [goal] = sandbox.objects("hubspot", "deals")
    assert person["properties"]["ennu_user_id"] == str(user_id)
    assert (goal["properties"]["pipeline"], goal["properties"]["dealstage"]) == (
        "default",
        "appointmentscheduled",
    )
    links = {(a["fromObjectId"], a["toObjectId"]) for a in sandbox.objects("hubspot", "associations")}
    assert links == {(goal["id"], person["id"]), (person["id"], goal["id"])}
    sent = paths(sandbox)
    assert sent.count("POST /crm/v3/properties/contacts/batch/create") == 1
    assert sent.count("POST /crm/v3/properties/deals/batch/create") == 1
    assert [r["status"] for r in sandbox.requests("hubspot")].count(400) == 1  # the first write only
    with session_scope() as session:
        rows = session.query(SyncLog).filter(SyncLog.connector == "hubspot").order_by(SyncLog.id).all()
        assert [(r.object, r.status, r.error) for r in rows] == [
            ("contacts", "created", None),
            ("deals", "created", None),
        ]


# --------------------------------------------------------------------------------- fetch modified


def test_fetch_modified_follows_pages_and_restarts_at_the_search_cap(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SEARCH_CAP_ENV, "4")
    hubspot = connector(search_page_limit=2, search_result_cap=4)
    since = datetime.now(UTC) - timedelta(seconds=1)
    for n in range(9):
        hubspot.push("contacts", "email", [contact(n)])
    before = len(sandbox.requests("hubspot"))

    found = hubspot.fetch_modified(since, ["email", "lifecyclestage"])

    assert sorted(f["properties"]["email"] for f in found) == sorted(
        f"person{n}@example.com" for n in range(9)
    )
    assert len({f["id"] for f in found}) == 9
    stamps = [parse_hubspot_time(f["properties"]["lastmodifieddate"]) for f in found]
    assert stamps == sorted(stamps)
    assert all(set(f) == {"id", "properties", "updatedAt"} for f in found)
    assert "lifecyclestage" in found[0]["properties"]
    searches = [b["body"] for b in sandbox.bodies("hubspot") if b["path"].endswith("/search")]
    assert len(searches) == len(sandbox.requests("hubspot")) - before
    operators = [s["filterGroups"][0]["filters"][0]["operator"] for s in searches]
    assert operators[0] == "GT" and "GTE" in operators  # the cap was met and the query restarted
    assert all(int(s.get("after", "0")) < 4 for s in searches)  # never paged past the cap
    assert all(
        s["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}] for s in searches
    )


def test_a_change_made_at_hubspot_is_fetched_with_its_new_values(sandbox: Any) -> None:
    hubspot = connector()
    [first, second] = hubspot.push("contacts", "email", [contact(1), contact(2)])
    stored = {c["id"]: c for c in sandbox.objects("hubspot", "contacts")}
    since = max(parse_hubspot_time(c["properties"]["lastmodifieddate"]) for c in stored.values())
    # The stand-in stamps with this process's clock in millisecond steps, as HubSpot: the change is later.
    wait_for(lambda: datetime.now(UTC) >= since + timedelta(milliseconds=1), "the clock past the last write")
    changed = requests.patch(
        f"{hubspot.http.base_url}/crm/v3/objects/contacts/person2@example.com",
        params={"idProperty": "email"},
        json={"properties": {"lifecyclestage": "customer", "hubspot_owner_id": "5150"}},
        headers=AUTH,
        timeout=5,
    )
    assert changed.status_code == 200

    [found] = hubspot.fetch_modified(since, ["lifecyclestage", "hubspot_owner_id"])
    assert found["id"] == second.remote_id
    assert found["properties"]["lifecyclestage"] == "customer"
    assert found["properties"]["hubspot_owner_id"] == "5150"
    assert parse_hubspot_time(found["updatedAt"]) > since

    [change] = hubspot.fetch_changes("contacts", since, ["lifecyclestage"])
    assert change.remote_id == second.remote_id and change.modified_at > since
    assert change.values["lifecyclestage"] == "customer"
    assert first.remote_id != second.remote_id


def test_search_filters_sorts_and_caps_like_hubspot(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hubspot = connector()
    hubspot.push(
        "contacts", "email", [contact(n, firstname=name) for n, name in enumerate(["Ada", "Bo", "Cy"])]
    )
    url = f"{hubspot.http.base_url}/crm/v3/objects/contacts/search"

    def search(**body: Any) -> requests.Response:
        return requests.post(url, json=body, headers=AUTH, timeout=5)

    equal = search(
        filterGroups=[{"filters": [{"propertyName": "firstname", "operator": "EQ", "value": "bo"}]}]
    )
    assert [r["properties"]["email"] for r in equal.json()["results"]] == ["person1@example.com"]
    either = search(
        filterGroups=[
            {"filters": [{"propertyName": "firstname", "operator": "EQ", "value": "Ada"}]},
            {"filters": [{"propertyName": "firstname", "operator": "GTE", "value": "c"}]},
        ],
        sorts=[{"propertyName": "firstname", "direction": "DESCENDING"}],
        properties=["firstname"],
    ).json()
    assert [r["properties"]["firstname"] for r in either["results"]] == ["Cy", "Ada"] and either["total"] == 2
    paged = search(limit=2, sorts=[{"propertyName": "firstname", "direction": "ASCENDING"}]).json()
    assert paged["paging"]["next"]["after"] == "2" and len(paged["results"]) == 2
    assert search(limit=201).status_code == 400
    assert search(filterGroups=[{"filters": [{"propertyName": "x", "operator": "LIKE"}]}]).status_code == 400
    monkeypatch.setenv(SEARCH_CAP_ENV, "2")
    beyond = search(limit=2, after="2")
    assert beyond.status_code == 400 and beyond.json()["category"] == "VALIDATION_ERROR"


def test_associating_unknown_ids_answers_errors_per_input(sandbox: Any) -> None:
    hubspot = connector()
    [person] = hubspot.push("contacts", "email", [contact(1)])
    [goal] = hubspot.push("deals", "ennu_goal_id", [deal(1, "open", None)])
    answer = requests.post(
        f"{hubspot.http.base_url}/crm/v4/associations/deals/contacts/batch/associate/default",
        json={
            "inputs": [
                {"from": {"id": goal.remote_id}, "to": {"id": person.remote_id}},
                {"from": {"id": "999999"}, "to": {"id": person.remote_id}},
            ]
        },
        headers=AUTH,
        timeout=5,
    )
    assert answer.status_code == 207
    body = answer.json()
    assert [r["to"]["id"] for r in body["results"]] == [person.remote_id]
    assert body["errors"][0]["category"] == "VALIDATION_ERROR"
    assert body["errors"][0]["context"]["fromObjectId"] == ["999999"]
    unknown_type = requests.post(
        f"{hubspot.http.base_url}/crm/v4/associations/deals/widgets/batch/associate/default",
        json={"inputs": [{"from": {"id": "1"}, "to": {"id": "2"}}]},
        headers=AUTH,
        timeout=5,
    )
    assert unknown_type.status_code == 400


# ------------------------------------------------------------------------------------------- GDPR


def test_gdpr_delete_removes_the_contact_and_its_associations(sandbox: Any) -> None:
    hubspot = connector()
    hubspot.push("contacts", "email", [contact(1)])
    hubspot.push("deals", "ennu_goal_id", [deal(1, "open", "person1@example.com")])
    assert len(sandbox.objects("hubspot", "associations")) == 2

    assert hubspot.erase(Person(user_id=1, email=" Person1@Example.com ")).status == SyncStatus.ERASED
    assert sandbox.objects("hubspot", "contacts") == []
    assert sandbox.objects("hubspot", "associations") == []
    assert len(sandbox.objects("hubspot", "deals")) == 1

    again = hubspot.erase(Person(user_id=1, email="person1@example.com"))
    assert again.status == SyncStatus.UNCHANGED and again.error == "not found"
    assert hubspot.erase(Person(user_id=2)).status == SyncStatus.SKIPPED
