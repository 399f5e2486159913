"""Contract: what goes to a person's Lead, and to the Contact their Lead was converted to, is on the wire what
simple-salesforce sends for the same operations (Composite, the SOQL query, sObject Collections update)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import tests.test_contract_salesforce as contract
from connectors.base import Record
from connectors.salesforce.leads import LEAD_FLAG
from ennu.models import SyncStatus
from tests.test_contract_salesforce import (  # noqa: F401
    API_VERSION,
    Captured,
    CapturingServer,
    assert_same_operation,
    capture,
    ours,
    sdk,
)

PREFIX = f"/services/data/v{API_VERSION}"
CONTACT_ID = "0035g00000CONVRT1AAA"
CANNED = contract.canned  # Salesforce's other answers, as the contract module gives them
LEADS_SOQL = (
    "SELECT ENNU_User_Id__c, IsConverted, ConvertedContactId FROM Lead WHERE ENNU_User_Id__c IN ('42')"
)


def saved(records: list[Any], prefix: str) -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}5g00000CONTR{n}AAA", "success": True, "errors": [], "created": False}
        for n, _ in enumerate(records, 1)
    ]


def converted_org(method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    """Salesforce where person 42's Lead was converted: its update refused, the look-up names the Contact."""
    if path.endswith("/composite/sobjects/Lead/ENNU_User_Id__c"):
        refused = {"statusCode": "CANNOT_UPDATE_CONVERTED_LEAD", "message": "cannot reference converted lead"}
        return 200, [{"success": False, "errors": [{**refused, "fields": []}]}]
    if path.rstrip("/").endswith("/query"):
        row = {
            "attributes": {"type": "Lead", "url": f"{PREFIX}/sobjects/Lead/00Q5g00000CONTR1AAA"},
            "ENNU_User_Id__c": "42",
            "IsConverted": True,
            "ConvertedContactId": CONTACT_ID,
        }
        return 200, {"totalSize": 1, "done": True, "records": [row]}
    if method == "PATCH" and path.endswith("/composite/sobjects"):
        return 200, [{"id": CONTACT_ID, "success": True, "errors": []}]
    if path.endswith("/composite"):
        answers = [
            {
                "body": saved(sub["body"]["records"], "003" if "Contact" in sub["url"] else "00Q"),
                "httpHeaders": {},
                "httpStatusCode": 200,
                "referenceId": sub["referenceId"],
            }
            for sub in json.loads(body)["compositeRequest"]
        ]
        return 200, {"compositeResponse": answers}
    return CANNED(method, path, body)


@pytest.fixture()
def converted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contract, "canned", converted_org)


def scores(n: int, *, lead: bool) -> Record:
    fields = {
        "ENNU_User_Id__c": n,
        LEAD_FLAG: lead,
        "LastName": "Hopper",
        "Birthdate": "1980-01-02",
        "ENNU_Overall_Score__c": 7.9,
    }
    return Record(f"assessment:{n}", f"evt-{n}", n, fields)


def same_query(ours_sent: Captured, sdk_sent: Captured) -> None:
    """A GET query as the SDK sends it: its `q`, its session; the SDK writes the path `/query/`."""
    assert (ours_sent.method, sdk_sent.method) == ("GET", "GET")
    assert ours_sent.path.rstrip("/") == sdk_sent.path.rstrip("/") == f"{PREFIX}/query"
    assert ours_sent.query == sdk_sent.query
    assert ours_sent.headers["authorization"] == sdk_sent.headers["authorization"]


def test_contacts_and_the_leads_of_a_batch_go_as_the_sdk_sends_one_composite_request(
    capture: CapturingServer,  # noqa: F811 - the imported fixture
    converted: None,
) -> None:
    lead_record = {"attributes": {"type": "Lead"}, "ENNU_User_Id__c": "42", "LastName": "Hopper"}
    documented = {
        "allOrNone": False,
        "compositeRequest": [
            {
                "method": "PATCH",
                "url": f"{PREFIX}/composite/sobjects/Contact/ENNU_User_Id__c",
                "referenceId": "contacts",
                "body": {
                    "allOrNone": False,
                    "records": [
                        {
                            "attributes": {"type": "Contact"},
                            "ENNU_User_Id__c": "41",
                            "LastName": "Hopper",
                            "Birthdate": "1980-01-02",
                            "ENNU_Overall_Score__c": 7.9,
                        }
                    ],
                },
            },
            {
                "method": "PATCH",
                "url": f"{PREFIX}/composite/sobjects/Lead/ENNU_User_Id__c",
                "referenceId": "leads",
                # A Lead has no Birthdate: never sent to it.
                "body": {"allOrNone": False, "records": [{**lead_record, "ENNU_Overall_Score__c": 7.9}]},
            },
        ],
    }
    sdk(capture).restful("composite", method="POST", json=documented)

    outcomes = ours(capture).push(
        "Contact", "ENNU_User_Id__c", [scores(41, lead=False), scores(42, lead=True)]
    )

    sdk_sent, ours_sent = capture.api()
    assert_same_operation(ours_sent, sdk_sent)
    assert [(o.status, o.object) for o in outcomes] == [
        (SyncStatus.UPDATED, None),
        (SyncStatus.UPDATED, "Lead"),
    ]


def test_a_converted_leads_record_goes_to_its_contact_as_the_sdk_looks_up_and_updates(
    capture: CapturingServer,  # noqa: F811 - the imported fixture
    converted: None,
) -> None:
    client = sdk(capture)
    client.restful(
        "composite/sobjects/Lead/ENNU_User_Id__c",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {
                    "attributes": {"type": "Lead"},
                    "ENNU_User_Id__c": "42",
                    "LastName": "Hopper",
                    "ENNU_Overall_Score__c": 7.9,
                }
            ],
        },
    )
    client.query(LEADS_SOQL)
    # The documented sObject Collections update: each record by its Id, here with the external id set.
    client.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {
                    "attributes": {"type": "Contact"},
                    "Id": CONTACT_ID,
                    "ENNU_User_Id__c": "42",
                    "LastName": "Hopper",
                    "Birthdate": "1980-01-02",
                    "ENNU_Overall_Score__c": 7.9,
                }
            ],
        },
    )

    [outcome] = ours(capture).push("Contact", "ENNU_User_Id__c", [scores(42, lead=True)])

    sdk_upsert, sdk_query, sdk_update, ours_upsert, ours_query, ours_update = capture.api()
    assert_same_operation(ours_upsert, sdk_upsert)
    same_query(ours_query, sdk_query)
    assert_same_operation(ours_update, sdk_update)
    assert (outcome.status, outcome.remote_id, outcome.object) == (SyncStatus.UPDATED, CONTACT_ID, "Contact")
