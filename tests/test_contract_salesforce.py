"""Contract: our Salesforce upserts go on the wire exactly as simple-salesforce sends the same operations."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from pydantic import SecretStr
from simple_salesforce import Salesforce

from connectors.base import Record
from connectors.http import VendorHttp
from connectors.salesforce.connector import ClientCredentialsGrant, SalesforceConnector
from connectors.salesforce.errors import TABLE, TOKEN_TABLE
from ennu.models import SyncStatus
from tests.tls_support import self_signed_certificate

API_VERSION = "62.0"
ACCESS_TOKEN = "00D5g00000CONTRACT!AQ0AQcontract.token"
# The SDK's own additions, not part of the operation.
SDK_ONLY_HEADERS = {"x-prettyprint", "user-agent", "accept-encoding", "connection", "content-length"}


@dataclass
class Captured:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CapturingServer:
    """A loopback HTTPS endpoint that records each request and answers Salesforce's canned responses."""

    url: str
    cafile: str
    requests: list[Captured] = field(default_factory=list)

    def api(self) -> list[Captured]:
        return [r for r in self.requests if not r.path.startswith("/services/oauth2/")]


def results(records: list[Any], created: bool | None = True) -> list[dict[str, Any]]:
    """A SaveResult (create) or UpsertResult (`created` set) per record."""
    prefixes = {"Account": "001", "Contact": "003", "Opportunity": "006", "OpportunityContactRole": "00K"}
    out: list[dict[str, Any]] = []
    for n, record in enumerate(records, 1):
        result = {
            "id": f"{prefixes[record['attributes']['type']]}5g00000CONTR{n}AAA",
            "success": True,
            "errors": [],
        }
        out.append(result if created is None else {**result, "created": created})
    return out


def composite_answer(body: bytes) -> dict[str, Any]:
    """Each subrequest answered as Salesforce does: collections with their results, a query with no rows."""
    answers = []
    for sub in json.loads(body)["compositeRequest"]:
        if sub["method"] == "GET":
            answer: Any = {"totalSize": 0, "done": True, "records": []}
        else:
            answer = results(sub["body"]["records"])
        answers.append(
            {"body": answer, "httpHeaders": {}, "httpStatusCode": 200, "referenceId": sub["referenceId"]}
        )
    return {"compositeResponse": answers}


def canned(method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    if path == "/services/oauth2/token":
        return 200, {"access_token": ACCESS_TOKEN, "instance_url": "", "token_type": "Bearer"}
    if path.endswith("/composite"):
        return 200, composite_answer(body)
    if path.endswith("/composite/sobjects"):
        return 200, results(json.loads(body)["records"], created=None)
    if path.endswith("/query/") or path.endswith("/query"):
        return 200, {"totalSize": 0, "done": True, "records": []}
    if "/composite/sobjects/" in path:
        return 200, [
            {"id": "0035g00000CONTR1AAA", "success": True, "errors": [], "created": True},
            {"id": "0035g00000CONTR2AAA", "success": True, "errors": [], "created": False},
        ]
    return 201, {"id": "0035g00000CONTR3AAA", "success": True, "errors": [], "created": True}


@pytest.fixture()
def capture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CapturingServer]:
    """simple-salesforce always speaks https to the instance, so the capture endpoint does too."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # they would override each session's `verify`
        monkeypatch.delenv(name, raising=False)
    cert_path, key_path = self_signed_certificate(tmp_path)
    seen: list[Captured] = []
    instance_url: list[str] = []  # known once the server has its port

    class Handler(BaseHTTPRequestHandler):
        def _capture(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            parts = urlsplit(self.path)
            received = self.rfile.read(length)
            seen.append(
                Captured(
                    self.command,
                    parts.path,
                    parts.query,
                    {k.lower(): v for k, v in self.headers.items()},
                    received,
                )
            )
            status, body = canned(self.command, parts.path, received)
            if isinstance(body, dict) and "instance_url" in body:
                body["instance_url"] = instance_url[0]
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("Sforce-Limit-Info", "api-usage=5/15000")
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PATCH = do_DELETE = _capture

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    instance_url.append(f"https://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield CapturingServer(instance_url[0], str(cert_path), seen)
    finally:
        server.shutdown()
        server.server_close()


def sdk(capture: CapturingServer) -> Salesforce:
    session = requests.Session()
    session.verify = capture.cafile
    return Salesforce(instance_url=capture.url, session_id=ACCESS_TOKEN, version=API_VERSION, session=session)


def ours(capture: CapturingServer) -> SalesforceConnector:
    http = VendorHttp("salesforce", capture.url, table=TABLE)
    auth_http = VendorHttp("salesforce", capture.url, table=TOKEN_TABLE)
    http.session.verify = auth_http.session.verify = capture.cafile
    grant = ClientCredentialsGrant("contract-key", SecretStr("contract-secret"))
    return SalesforceConnector(http, auth_http, grant, api_version=API_VERSION)


def assert_same_operation(ours_sent: Captured, sdk_sent: Captured) -> None:
    assert ours_sent.method == sdk_sent.method
    assert ours_sent.path == sdk_sent.path
    assert ours_sent.query == sdk_sent.query
    assert ours_sent.headers["authorization"] == sdk_sent.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert ours_sent.headers["content-type"] == sdk_sent.headers["content-type"] == "application/json"
    assert json.loads(ours_sent.body) == json.loads(sdk_sent.body)
    # Every other header agrees too, but for transport details and the SDK's own additions.
    ignored = SDK_ONLY_HEADERS | {"accept"}
    assert {k: v for k, v in ours_sent.headers.items() if k not in ignored} == {
        k: v for k, v in sdk_sent.headers.items() if k not in ignored
    }


def contact_record(n: int, first: str, last: str, email: str | None) -> Record:
    fields = {"ENNU_User_Id__c": n, "FirstName": first, "LastName": last, "Email": email, "Phone": None}
    return Record(f"user:{n}", f"evt-{n}", n, fields)


def test_collection_upsert_matches_the_sdk(capture: CapturingServer) -> None:
    # The documented sObject Collections upsert body, sent by the SDK's generic REST call.
    documented = {
        "allOrNone": False,
        "records": [
            {
                "attributes": {"type": "Contact"},
                "ENNU_User_Id__c": "41",
                "FirstName": "Ada",
                "LastName": "Lovelace",
                "Email": "ada@example.com",
            },
            {
                "attributes": {"type": "Contact"},
                "ENNU_User_Id__c": "42",
                "FirstName": "Grace",
                "LastName": "Hopper",
                "Email": "grace@example.com",
            },
        ],
    }
    sdk(capture).restful("composite/sobjects/Contact/ENNU_User_Id__c", method="PATCH", json=documented)
    outcomes = ours(capture).push(
        "Contact",
        "ENNU_User_Id__c",
        [
            contact_record(41, "Ada", "Lovelace", "ada@example.com"),
            contact_record(42, "Grace", "Hopper", "grace@example.com"),
        ],
    )

    sdk_sent, ours_sent = capture.api()
    assert_same_operation(ours_sent, sdk_sent)
    assert ours_sent.path == f"/services/data/v{API_VERSION}/composite/sobjects/Contact/ENNU_User_Id__c"
    assert [o.status for o in outcomes] == [SyncStatus.CREATED, SyncStatus.UPDATED]
    assert outcomes[0].remote_id == "0035g00000CONTR1AAA"


def test_single_record_upsert_matches_the_sdk(capture: CapturingServer) -> None:
    contacts: Any = sdk(capture).Contact  # the SDK's SFType, reached by attribute
    contacts.upsert("ENNU_User_Id__c/43", {"FirstName": "Katherine", "LastName": "Johnson"})
    outcome = ours(capture).upsert_one(
        "Contact", "ENNU_User_Id__c", contact_record(43, "Katherine", "Johnson", None)
    )

    sdk_sent, ours_sent = capture.api()
    assert_same_operation(ours_sent, sdk_sent)
    assert ours_sent.path == f"/services/data/v{API_VERSION}/sobjects/Contact/ENNU_User_Id__c/43"
    assert (outcome.status, outcome.remote_id) == (SyncStatus.CREATED, "0035g00000CONTR3AAA")


def test_the_token_request_is_oauth_client_credentials(capture: CapturingServer) -> None:
    ours(capture).test_connection()

    token = capture.requests[0]
    assert (token.method, token.path) == ("POST", "/services/oauth2/token")
    assert token.headers["content-type"] == "application/x-www-form-urlencoded"
    assert token.body == b"grant_type=client_credentials"
    assert token.headers["authorization"] == "Basic Y29udHJhY3Qta2V5OmNvbnRyYWN0LXNlY3JldA=="  # key:secret
    assert capture.api()[0].path == f"/services/data/v{API_VERSION}/limits"


def test_contacts_and_their_accounts_go_as_the_sdk_sends_a_composite_request(
    capture: CapturingServer,
) -> None:
    # The documented Composite request: the Accounts' collection upsert, then the Contacts', each Contact
    # naming its Account by the Account's external id (a relationship reference).
    prefix = f"/services/data/v{API_VERSION}"
    documented = {
        "allOrNone": False,
        "compositeRequest": [
            {
                "method": "PATCH",
                "url": f"{prefix}/composite/sobjects/Account/ENNU_Account_Id__c",
                "referenceId": "accounts",
                "body": {
                    "allOrNone": False,
                    "records": [
                        {
                            "attributes": {"type": "Account"},
                            "ENNU_Account_Id__c": "clinic-3",
                            "Name": "Northside Clinic",
                            "Website": "northside.example.com",
                        }
                    ],
                },
            },
            {
                "method": "PATCH",
                "url": f"{prefix}/composite/sobjects/Contact/ENNU_User_Id__c",
                "referenceId": "contacts",
                "body": {
                    "allOrNone": False,
                    "records": [
                        {
                            "attributes": {"type": "Contact"},
                            "ENNU_User_Id__c": "41",
                            "LastName": "Lovelace",
                            "Account": {"ENNU_Account_Id__c": "clinic-3"},
                        },
                        {
                            "attributes": {"type": "Contact"},
                            "ENNU_User_Id__c": "42",
                            "LastName": "Hopper",
                            "Account": {"ENNU_Account_Id__c": "clinic-3"},
                        },
                    ],
                },
            },
        ],
    }
    sdk(capture).restful("composite", method="POST", json=documented)
    clinic = {"Account.ENNU_Account_Id__c": "clinic-3", "Account.Name": "Northside Clinic"}
    records = [
        Record(
            f"user:{n}",
            f"evt-{n}",
            n,
            {"ENNU_User_Id__c": n, "LastName": last, **clinic, "Account.Website": "northside.example.com"},
        )
        for n, last in ((41, "Lovelace"), (42, "Hopper"))
    ]
    outcomes = ours(capture).push("Contact", "ENNU_User_Id__c", records)

    sdk_sent, ours_sent = capture.api()
    assert_same_operation(ours_sent, sdk_sent)
    assert ours_sent.path == f"{prefix}/composite"
    assert [o.status for o in outcomes] == [SyncStatus.CREATED, SyncStatus.CREATED]


def test_goal_opportunities_and_their_contact_roles_go_as_the_sdk_sends_them(
    capture: CapturingServer,
) -> None:
    prefix = f"/services/data/v{API_VERSION}"
    soql = (
        "SELECT OpportunityId, Contact.ENNU_User_Id__c FROM OpportunityContactRole "
        "WHERE Opportunity.ENNU_Goal_Id__c IN ('7')"
    )
    client = sdk(capture)
    client.query(soql)  # the SDK's query request: its query string is what the composite subrequest carries
    query_string = capture.api()[-1].query
    documented = {
        "allOrNone": False,
        "compositeRequest": [
            {
                "method": "PATCH",
                "url": f"{prefix}/composite/sobjects/Opportunity/ENNU_Goal_Id__c",
                "referenceId": "opportunities",
                "body": {
                    "allOrNone": False,
                    "records": [
                        {
                            "attributes": {"type": "Opportunity"},
                            "ENNU_Goal_Id__c": "7",
                            "Name": "ENNU goal: improve sleep",
                            "StageName": "Prospecting",
                            "CloseDate": "2027-06-01",
                        }
                    ],
                },
            },
            {"method": "GET", "url": f"{prefix}/query/?{query_string}", "referenceId": "roles"},
        ],
    }
    client.restful("composite", method="POST", json=documented)
    # The documented OpportunityContactRole create (sObject Collections create), the Contact by external id.
    roles = {
        "allOrNone": False,
        "records": [
            {
                "attributes": {"type": "OpportunityContactRole"},
                "OpportunityId": "0065g00000CONTR1AAA",
                "Contact": {"ENNU_User_Id__c": "41"},
                "Role": "Decision Maker",
                "IsPrimary": True,
            }
        ],
    }
    client.restful("composite/sobjects", method="POST", json=roles)
    goal = {
        "ENNU_Goal_Id__c": 7,
        "Name": "ENNU goal: improve sleep",
        "StageName": "Prospecting",
        "CloseDate": "2027-06-01",
        "ContactRole.Contact.ENNU_User_Id__c": 41,
        "ContactRole.Role": "Decision Maker",
    }
    [outcome] = ours(capture).push(
        "Opportunity", "ENNU_Goal_Id__c", [Record("health_goal:7", "e7", 41, goal)]
    )

    _, sdk_composite, sdk_roles, ours_composite, ours_roles = capture.api()
    assert_same_operation(ours_composite, sdk_composite)
    assert_same_operation(ours_roles, sdk_roles)
    assert (ours_roles.method, ours_roles.path) == ("POST", f"{prefix}/composite/sobjects")
    assert (outcome.status, outcome.error) == (SyncStatus.CREATED, None)
