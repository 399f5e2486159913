"""Contract: what `health_goal.progressed` sends, built from its mapping files, matches hubspot-api-client's
deal batch upsert and simple-salesforce's sObject Collections upsert of the Opportunity."""

from __future__ import annotations

from datetime import date

import pandas as pd
from hubspot import HubSpot

from connectors.base import Record
from connectors.hubspot import HubSpotConnector
from connectors.hubspot.settings import HubSpotSettings
from ennu.models import SyncStatus
from ennu.settings import get_settings
from mappings import apply_mapping, load_all_mappings
from tasks.push import to_records
from tests.capture import CapturingEndpoint
from tests.test_contract_hubspot import CONTACT, DEAL, assert_same_request, batch, pair  # noqa: F401
from tests.test_contract_salesforce import (  # noqa: F401
    API_VERSION,
    CapturingServer,
    assert_same_operation,
    capture,
    ours,
    sdk,
)


def progress_records(connector: str) -> list[Record]:
    """Two active goals at 60 % and 20 % as extract reads them, mapped by the repository's mapping file."""
    mapping = load_all_mappings(get_settings().mappings_dir)[("health_goal.progressed", connector)]
    frame = pd.DataFrame(
        {
            "event.id": ["evt-7", "evt-8"],
            "user.id": [1, 2],
            "user.email": ["ada@example.com", "grace@example.com"],
            "health_goal.id": [7, 8],
            "health_goal.kind": ["improve_sleep", "lose_weight"],
            "health_goal.status": ["active", "active"],
            "health_goal.progress_percent": [60, 20],
            "health_goal.due_date": [date(2027, 6, 1), None],
            "user.salesforce_lead": [False, False],
        }
    )
    return to_records(apply_mapping(mapping, frame))


def test_deal_progress_upsert_matches_the_sdk(
    endpoint: CapturingEndpoint,
    pair: tuple[HubSpotConnector, HubSpot],  # noqa: F811
) -> None:
    connector, client = pair
    endpoint.answer("POST", "/crm/v3/objects/deals/batch/upsert", 200, batch({**DEAL, "new": False}))
    endpoint.answer("POST", "/crm/v3/objects/contacts/batch/read", 200, batch(CONTACT))
    endpoint.answer("POST", "/crm/v4/associations/deals/contacts/batch/associate/default", 200, batch())

    [outcome, _] = connector.push("deals", "ennu_goal_id", progress_records("hubspot"))
    assert outcome.status == SyncStatus.UPDATED
    our_upsert = endpoint.take()[0]

    settings = HubSpotSettings.load()
    stage = {"dealstage": settings.deal_stage_open, "pipeline": settings.deal_pipeline}
    client.crm.deals.batch_api.upsert(
        {
            "inputs": [
                {
                    "idProperty": "ennu_goal_id",
                    "id": "7",
                    "properties": {
                        "ennu_goal_id": 7,
                        "dealname": "ENNU goal: improve sleep",
                        "ennu_goal_progress": 60.0,
                        **stage,
                    },
                },
                {
                    "idProperty": "ennu_goal_id",
                    "id": "8",
                    "properties": {
                        "ennu_goal_id": 8,
                        "dealname": "ENNU goal: lose weight",
                        "ennu_goal_progress": 20.0,
                        **stage,
                    },
                },
            ]
        }
    )
    [sdk_upsert] = endpoint.take()
    assert_same_request(our_upsert, sdk_upsert)


def test_opportunity_stage_and_probability_upsert_matches_the_sdk(capture: CapturingServer) -> None:  # noqa: F811
    documented = {
        "allOrNone": False,
        "records": [
            {
                "attributes": {"type": "Opportunity"},
                "ENNU_Goal_Id__c": "7",
                "Name": "ENNU goal: improve sleep",
                "StageName": "Value Proposition",
                "Probability": 60.0,
                "CloseDate": "2027-06-01",
            },
            {
                "attributes": {"type": "Opportunity"},
                "ENNU_Goal_Id__c": "8",
                "Name": "ENNU goal: lose weight",
                "StageName": "Prospecting",
                "Probability": 20.0,
            },
        ],
    }
    sdk(capture).restful("composite/sobjects/Opportunity/ENNU_Goal_Id__c", method="PATCH", json=documented)
    ours(capture).push("Opportunity", "ENNU_Goal_Id__c", progress_records("salesforce"))

    sdk_sent, ours_sent = capture.api()
    assert_same_operation(ours_sent, sdk_sent)
    assert ours_sent.path == f"/services/data/v{API_VERSION}/composite/sobjects/Opportunity/ENNU_Goal_Id__c"
