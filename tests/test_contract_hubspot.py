"""Contract: our HubSpot requests match what hubspot-api-client sends for the same operations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.associations.v4 import (
    BatchInputPublicAssociationMultiArchive,
    BatchInputPublicDefaultAssociationMultiPost,
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicAssociationMultiArchive,
    PublicDefaultAssociationMultiPost,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.associations.v4.models import PublicObjectId
from hubspot.crm.companies import (
    BatchInputSimplePublicObjectBatchInputUpsert as CompanyUpserts,
)
from hubspot.crm.companies import (
    BatchReadInputSimplePublicObjectId as CompanyReads,
)
from hubspot.crm.companies import (
    SimplePublicObjectBatchInputUpsert as CompanyUpsert,
)
from hubspot.crm.companies import (
    SimplePublicObjectId as CompanyId,
)
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicGdprDeleteInput,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
)
from hubspot.crm.deals import Filter as DealFilter
from hubspot.crm.deals import FilterGroup as DealFilterGroup
from hubspot.crm.deals import PublicObjectSearchRequest as DealSearchRequest
from hubspot.crm.properties import BatchInputPropertyCreate, PropertyCreate, PropertyGroupCreate

from connectors.base import Person, Record
from connectors.hubspot import HubSpotConnector
from connectors.hubspot.properties import GROUP, ensure_definitions
from connectors.hubspot.settings import HubSpotSettings
from ennu.models import SyncStatus
from ennu.settings import get_settings, reload_settings
from tests.capture import Captured, CapturingEndpoint

TOKEN = "pat-na1-contract-0000"
SINCE = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
CONTACT = {
    "id": "501",
    "properties": {"email": "ada@example.com", "firstname": "Ada", "ennu_overall_score": "7.5"},
    "createdAt": "2026-05-01T12:00:00.000Z",
    "updatedAt": "2026-05-01T12:00:00.000Z",
    "archived": False,
}
DEAL = {**CONTACT, "id": "901", "properties": {"ennu_goal_id": "7", "dealname": "ENNU goal"}}
SCORE = {
    "name": "ennu_overall_score",
    "label": "ENNU overall score",
    "groupName": "ennu",
    "type": "number",
    "fieldType": "number",
}
USER_ID = {
    "name": "ennu_user_id",
    "label": "ENNU user id",
    "groupName": "ennu",
    "type": "string",
    "fieldType": "text",
    "hasUniqueValue": True,
}


def batch(*results: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "COMPLETE",
        "results": list(results),
        "startedAt": "2026-05-01T12:00:00.000Z",
        "completedAt": "2026-05-01T12:00:00.100Z",
    }


def assert_same_request(ours: Captured, sdk: Captured) -> None:
    """Method, path, query, bearer token, content type and JSON body agree (key order aside)."""
    assert (ours.method, ours.path, ours.query) == (sdk.method, sdk.path, sdk.query)
    assert ours.headers["authorization"] == sdk.headers["authorization"] == f"Bearer {TOKEN}"
    if sdk.body or ours.body:
        assert ours.headers["content-type"].split(";")[0] == sdk.headers["content-type"].split(";")[0]
        assert ours.headers["content-type"].startswith("application/json")
        assert json.loads(ours.body) == json.loads(sdk.body)


@pytest.fixture()
def pair(
    endpoint: CapturingEndpoint, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HubSpotConnector, HubSpot]]:
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("HUBSPOT_BASE_URL", endpoint.url)
    reload_settings()
    connector = HubSpotConnector.from_settings(get_settings(), rate_limited=False)
    sdk = HubSpot(access_token=TOKEN, host=endpoint.url)
    yield connector, sdk
    connector.close()
    monkeypatch.undo()
    reload_settings()


def test_contact_batch_upsert_matches_the_sdk(
    endpoint: CapturingEndpoint, pair: tuple[HubSpotConnector, HubSpot]
) -> None:
    connector, sdk = pair
    endpoint.answer("POST", "/crm/v3/objects/contacts/batch/upsert", 200, batch({**CONTACT, "new": True}))
    fields = {"email": "ada@example.com", "firstname": "Ada", "ennu_overall_score": 7.5, "phone": None}

    [outcome] = connector.push("contacts", "email", [Record("user:1", "evt-1", 1, fields)])
    assert outcome.status == SyncStatus.CREATED and outcome.remote_id == "501"
    [ours] = endpoint.take()

    properties = {"email": "ada@example.com", "firstname": "Ada", "ennu_overall_score": 7.5}
    sdk.crm.contacts.batch_api.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(
                    id_property="email", id="ada@example.com", properties=properties
                )
            ]
        )
    )
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs)


def test_deal_upsert_batch_read_and_v4_association_match_the_sdk(
    endpoint: CapturingEndpoint, pair: tuple[HubSpotConnector, HubSpot]
) -> None:
    connector, sdk = pair
    endpoint.answer("POST", "/crm/v3/objects/deals/batch/upsert", 200, batch({**DEAL, "new": True}))
    endpoint.answer("POST", "/crm/v3/objects/contacts/batch/read", 200, batch(CONTACT))
    association = {
        "from": {"id": "901"},
        "to": {"id": "501"},
        "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3},
    }
    endpoint.answer(
        "POST", "/crm/v4/associations/deals/contacts/batch/associate/default", 200, batch(association)
    )
    fields = {
        "ennu_goal_id": 7,
        "dealname": "ENNU goal",
        "dealstage": "open",
        "associations.contacts.email": "ada@example.com",
    }

    [outcome] = connector.push("deals", "ennu_goal_id", [Record("health_goal:7", "evt-7", 1, fields)])
    assert outcome.status == SyncStatus.CREATED and outcome.error is None
    our_upsert, our_read, our_association = endpoint.take()

    settings = HubSpotSettings.load()
    sdk.crm.deals.batch_api.upsert(
        {
            "inputs": [
                {
                    "idProperty": "ennu_goal_id",
                    "id": "7",
                    "properties": {
                        "ennu_goal_id": 7,
                        "dealname": "ENNU goal",
                        "dealstage": settings.deal_stage_open,
                        "pipeline": settings.deal_pipeline,
                    },
                }
            ]
        }
    )
    sdk.crm.contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            id_property="email",
            inputs=[SimplePublicObjectId(id="ada@example.com")],
            properties=["email"],
            properties_with_history=[],
        )
    )
    sdk.crm.associations.v4.batch_api.create_default(
        "deals",
        "contacts",
        BatchInputPublicDefaultAssociationMultiPost(
            inputs=[
                PublicDefaultAssociationMultiPost(_from=PublicObjectId(id="901"), to=PublicObjectId(id="501"))
            ]
        ),
    )
    sdk_upsert, sdk_read, sdk_association = endpoint.take()
    assert_same_request(our_upsert, sdk_upsert)
    assert_same_request(our_read, sdk_read)
    assert_same_request(our_association, sdk_association)


def test_property_read_group_and_batch_create_match_the_sdk(
    endpoint: CapturingEndpoint, pair: tuple[HubSpotConnector, HubSpot]
) -> None:
    connector, sdk = pair
    endpoint.answer("GET", "/crm/v3/properties/contacts", 200, {"results": []})
    endpoint.answer("POST", "/crm/v3/properties/contacts/groups", 201, {**GROUP, "archived": False})
    endpoint.answer("POST", "/crm/v3/properties/contacts/batch/create", 201, batch(SCORE, USER_ID))

    created = ensure_definitions(connector.http, {"contacts": [SCORE, USER_ID]})
    assert created == {"contacts": ["ennu_overall_score", "ennu_user_id"]}
    our_read, our_group, our_create = endpoint.take()

    sdk.crm.properties.core_api.get_all("contacts")
    sdk.crm.properties.groups_api.create(
        "contacts", PropertyGroupCreate(name="ennu", label="ENNU", display_order=-1)
    )
    sdk.crm.properties.batch_api.create(
        "contacts",
        BatchInputPropertyCreate(
            inputs=[
                PropertyCreate(
                    name="ennu_overall_score",
                    label="ENNU overall score",
                    group_name="ennu",
                    type="number",
                    field_type="number",
                ),
                PropertyCreate(
                    name="ennu_user_id",
                    label="ENNU user id",
                    group_name="ennu",
                    type="string",
                    field_type="text",
                    has_unique_value=True,
                ),
            ]
        ),
    )
    sdk_read, sdk_group, sdk_create = endpoint.take()
    assert_same_request(our_read, sdk_read)
    assert_same_request(our_group, sdk_group)
    assert_same_request(our_create, sdk_create)


def test_search_of_modified_contacts_matches_the_sdk(
    endpoint: CapturingEndpoint, pair: tuple[HubSpotConnector, HubSpot]
) -> None:
    connector, sdk = pair
    found = {
        **CONTACT,
        "properties": {"lifecyclestage": "lead", "lastmodifieddate": "2026-05-01T12:00:01.000Z"},
    }
    endpoint.answer("POST", "/crm/v3/objects/contacts/search", 200, {"total": 1, "results": [found]})

    [change] = connector.fetch_modified(SINCE, ["lifecyclestage"])
    assert change == {"id": "501", "properties": found["properties"], "updatedAt": CONTACT["updatedAt"]}
    [ours] = endpoint.take()

    sdk.crm.contacts.search_api.do_search(
        PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(
                    filters=[
                        Filter(
                            property_name="lastmodifieddate",
                            operator="GT",
                            value=str(int(SINCE.timestamp() * 1000)),
                        )
                    ]
                )
            ],
            sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],  # type: ignore[list-item]
            properties=["lifecyclestage", "lastmodifieddate"],
            limit=200,
        )
    )
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs)


def test_search_of_modified_deals_matches_the_sdk(
    endpoint: CapturingEndpoint, pair: tuple[HubSpotConnector, HubSpot]
) -> None:
    connector, sdk = pair
    modified = "2026-05-01T12:00:02.000Z"
    found = {
        "id": "9001",
        "properties": {"ennu_goal_id": "12", "dealstage": "closedlost", "hs_lastmodifieddate": modified},
        "createdAt": "2026-05-01T12:00:00.000Z",
        "updatedAt": modified,
        "archived": False,
    }
    endpoint.answer("POST", "/crm/v3/objects/deals/search", 200, {"total": 1, "results": [found]})

    [change] = connector.fetch_changes("deals", SINCE, ["ennu_goal_id", "dealstage"])
    assert (change.remote_id, change.values["dealstage"]) == ("9001", "closedlost")
    assert change.modified_at == datetime(2026, 5, 1, 12, 0, 2, tzinfo=UTC)
    [ours] = endpoint.take()

    sdk.crm.deals.search_api.do_search(
        DealSearchRequest(
            filter_groups=[
                DealFilterGroup(
                    filters=[
                        DealFilter(
                            property_name="hs_lastmodifieddate",
                            operator="GT",
                            value=str(int(SINCE.timestamp() * 1000)),
                        )
                    ]
                )
            ],
            sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],  # type: ignore[list-item]
            properties=["ennu_goal_id", "dealstage", "hs_lastmodifieddate"],
            limit=200,
        )
    )
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs)


def test_gdpr_delete_matches_the_sdk(
    endpoint: CapturingEndpoint, pair: tuple[HubSpotConnector, HubSpot]
) -> None:
    connector, sdk = pair
    endpoint.answer("POST", "/crm/v3/objects/contacts/gdpr-delete", 204, {})

    assert connector.erase(Person(user_id=1, email="Ada@Example.com")).status == SyncStatus.ERASED
    [ours] = endpoint.take()

    sdk.crm.contacts.basic_api.purge(PublicGdprDeleteInput(object_id="ada@example.com", id_property="email"))
    [theirs] = endpoint.take()
    assert_same_request(ours, theirs)


def test_clinic_company_upsert_and_the_v4_link_read_and_archive_match_the_sdk(
    endpoint: CapturingEndpoint, pair: tuple[HubSpotConnector, HubSpot]
) -> None:
    """A contact that moved clinic: upserted (not new), its clinic company upserted by ennu_company_id,
    linked; its links read, the other one checked for being ours, and archived."""
    connector, sdk = pair
    clinic = {**CONTACT, "id": "301", "properties": {"ennu_company_id": "3", "name": "Northside Clinic"}}
    earlier = {**CONTACT, "id": "302", "properties": {"ennu_company_id": "2"}}
    endpoint.answer("POST", "/crm/v3/objects/contacts/batch/upsert", 200, batch({**CONTACT, "new": False}))
    endpoint.answer("POST", "/crm/v3/objects/companies/batch/upsert", 200, batch({**clinic, "new": True}))
    link = {"from": {"id": "501"}, "to": {"id": "301"}}
    endpoint.answer(
        "POST", "/crm/v4/associations/contacts/companies/batch/associate/default", 200, batch(link)
    )
    linked = {
        "from": {"id": "501"},
        "to": [
            {"toObjectId": 301, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 279}]},
            {"toObjectId": 302, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 279}]},
        ],
    }
    endpoint.answer("POST", "/crm/v4/associations/contacts/companies/batch/read", 200, batch(linked))
    endpoint.answer("POST", "/crm/v3/objects/companies/batch/read", 200, batch(earlier))
    endpoint.answer("POST", "/crm/v4/associations/contacts/companies/batch/archive", 204, {})
    fields = {
        "email": "ada@example.com",
        "associations.companies.ennu_company_id": "3",
        "companies.name": "Northside Clinic",
        "companies.domain": None,
    }

    [outcome] = connector.push("contacts", "email", [Record("user:1", "evt-1", 1, fields)])
    assert outcome.status == SyncStatus.UPDATED and outcome.error is None
    ours = endpoint.take()
    assert len(ours) == 6

    sdk.crm.contacts.batch_api.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(
                    id_property="email", id="ada@example.com", properties={"email": "ada@example.com"}
                )
            ]
        )
    )
    sdk.crm.companies.batch_api.upsert(
        CompanyUpserts(
            inputs=[
                CompanyUpsert(
                    id_property="ennu_company_id",
                    id="3",
                    properties={"name": "Northside Clinic", "ennu_company_id": "3"},
                )
            ]
        )
    )
    sdk.crm.associations.v4.batch_api.create_default(
        "contacts",
        "companies",
        BatchInputPublicDefaultAssociationMultiPost(
            inputs=[
                PublicDefaultAssociationMultiPost(_from=PublicObjectId(id="501"), to=PublicObjectId(id="301"))
            ]
        ),
    )
    sdk.crm.associations.v4.batch_api.get_page(
        "contacts",
        "companies",
        BatchInputPublicFetchAssociationsBatchRequest(inputs=[PublicFetchAssociationsBatchRequest(id="501")]),
    )
    sdk.crm.companies.batch_api.read(
        CompanyReads(inputs=[CompanyId(id="302")], properties=["ennu_company_id"], properties_with_history=[])
    )
    sdk.crm.associations.v4.batch_api.archive(
        "contacts",
        "companies",
        BatchInputPublicAssociationMultiArchive(
            inputs=[
                PublicAssociationMultiArchive(_from=PublicObjectId(id="501"), to=[PublicObjectId(id="302")])
            ]
        ),
    )
    theirs = endpoint.take()
    for our_request, sdk_request in zip(ours, theirs, strict=True):
        assert_same_request(our_request, sdk_request)
