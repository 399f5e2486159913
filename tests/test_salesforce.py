"""Salesforce connector against its sandbox stand-in: OAuth, upserts by external id, limits, sessions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from connectors.base import Person, Record
from connectors.endpoint import NotConfigured
from connectors.errors import Action
from connectors.http import AuthError, RetryableError, VendorHttp
from connectors.registry import CONNECTORS
from connectors.salesforce import CONNECTOR
from connectors.salesforce.connector import (
    ClientCredentialsGrant,
    JwtBearerGrant,
    SalesforceConnector,
    jwt_audience,
    parse_limit_info,
    soql_datetime,
)
from connectors.salesforce.errors import TABLE, TOKEN_TABLE
from connectors.salesforce.settings import SalesforceSettings
from connectors.settings import SettingsError
from ennu.models import SyncStatus
from ennu.settings import get_settings
from mappings import apply_mapping, load_all_mappings
from tests.capture import CapturingEndpoint

REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
SALESFORCE_ENV = (
    "SALESFORCE_LOGIN_URL",
    "SALESFORCE_CONSUMER_KEY",
    "SALESFORCE_USERNAME",
    "SALESFORCE_PRIVATE_KEY",
    "SALESFORCE_PRIVATE_KEY_FILE",
    "SALESFORCE_CLIENT_SECRET",
    "SALESFORCE_API_VERSION",
    "SALESFORCE_EXTERNAL_ID_FIELD",
    "SALESFORCE_QUERY_BATCH_SIZE",
    "SALESFORCE_JWT_AUDIENCE",
)
# The published dummy key of the sandbox's connected app (sandbox.salesforce.JWT_PUBLIC_KEY): it signs
# nothing real and is here so that the JWT bearer flow can be exercised end to end.
SANDBOX_JWT_PRIVATE_KEY = """-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCtrr0CoxMEwGYS
YYtSrPQKuhKt2UdfMUihu7DXdjU+Wqq8mcpSfUD6xNQIfQ03mwT6csOyilNqUl4i
n6eP5bPGew/dY8vUpKKMPEmlAcEt/3sgQIBNizrMGzGJDUd6bB0aeBg31NMJvFas
xKBM0AN0fYqhy394oDKSUOLR8PPbTxeEh113/muUxI3vQ4qCOXzAuRTgNrPa8ny+
CyBKe10Apwnj8v0KGgFvLR0jTCP/FkUDUv+wie2fGTZMlszQSJEwcryOZGqHbiVi
4z7ttCfkFM8iU2gME6CWEQQ1Sj4XjhX6kigxl3IaIGs3YjbbcR+RoKahnud7qxRa
vNoMiRfNAgMBAAECggEAGaCZyWyoOZXCxJM5vGfCagjIXnhGieXFlVO9WsrZkrX3
JnVnf0zLDJWEFy04iOFqASMeUYG2oDlqJCARre++BfCSR9+vVlTlRTL/cjEJllDH
FAcLHNCz9XpNEK9xwhR3e43dPkkRdgjLyJoKGyYVtG0dH8Aysr5UkqFhGTWSuI5l
r45+eb29qO/TB2UVTWhUO4ajvRNZuXzpg4j1XKHaiu8oi5tXxBiuQEiqmRw9Zyzb
6wkhUeYUZ9pUKJcwqtqt7PDAgecX8auk6qx2SxcIBiG+OjqByLuFEKH8lCUIhQ/N
WZPUia0Otak1hIIZBUmAV3mN5Fz93mvk/PKZQS7uowKBgQDpXuRqy2G2AN2OM4cZ
4AzOFFx4COW+d5ht35DsoXyGWxcQaSrkyTRkghb1v1AszsvK/hOTKvv0oz0jNY/2
JyxkFfrAdNFj/Bdj+mf0m2tml7ql3hUE+y/iUa8OtunyLmRkV64XZM3Yfn4vO+5R
n3PP4+rHUDcAwDOi30AslYxYLwKBgQC+hiusFg2wykvalM3oNEkLa+YIRbhivWRq
+ZvSMBvcljUBIdWwCyB9LCgZ9PkouOGTAC+I9kII+bRom/hdNZXPAFbhpiuxC+4U
CSVmI5FvJKzRjqq0vz0B3wP4HGwl0nwHHfAV92pljk+g/UI3v/ZL/riaQ9ChwRty
bkZM/lXUwwKBgQDNAECi15oz6Tq2yejp//j/pr876oT29dP+4J9MXucmlyoBjoDR
jTXq/KPyqGZjlh1LajoD04SU+Diij1CxKORD31LwcS3nKPHbL4LWSxjjfHHHdvj7
8TO1GZAv2tpTlhE2XBdgEXsJrMRn9bt6FBoGCu6Yu4w1qqExd+/FunEYnQKBgAjU
82VQyGWvmwCQ8VKYSeKLp+guQzPgj60d0QlXTZNWKzLYPK2idmkXCOzbHEm0+E/2
LD3vHHSKDsDiqgq4Fy+3Vk+zgkb8xJaNLfykHXPHgXNdZ7BlRRC3I9n2h1ThgvpZ
eu2pwHbgt/RAiTdIYMR5FFmiVyOIbhtJ3VxoVdY9AoGAfhgjMK2wwTiMdexlkSPJ
gsUzjrfbT118LtdiAS1gRuBrKg9a9c8eC/jn7i8YVeM4ak2zgCiYu0A3jaepmzNA
PmQZQneU1t7NheCt52UcMa9ccir1Ur/MppyvIqH4rkkD0m+/4xA896jfVo5V29dX
PKNv09QCWHbe27yzILio0aA=
-----END PRIVATE KEY-----
"""


def contact(n: int, **fields: Any) -> Record:
    values: dict[str, Any] = {
        "ENNU_User_Id__c": n,
        "FirstName": "Ada",
        "LastName": f"Person{n}",
        "Email": f"person{n}@example.com",
        "LeadSource": "Web",
    }
    values.update(fields)
    return Record(f"user:{n}", f"evt-{n}", n, values)


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SALESFORCE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def salesforce(sandbox: Any, clean_env: None) -> Iterator[SalesforceConnector]:
    connector = SalesforceConnector.from_settings(get_settings(), rate_limited=False)
    yield connector
    connector.close()


def control(sandbox_url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = requests.post(f"{sandbox_url}/salesforce/_sandbox/{path}", json=body or {}, timeout=5)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def token_requests(sandbox: Any) -> int:
    return sandbox.request_count("salesforce", "/services/oauth2/token")


def api_requests(sandbox: Any, contains: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests("salesforce") if contains in r["path"]]


def jwt_connector(sandbox_url: str, key_pem: str, audience: str | None = None) -> SalesforceConnector:
    login_url = f"{sandbox_url}/salesforce"
    grant = JwtBearerGrant(
        "sandbox-sf-key", "integration@ennulife.example", SecretStr(key_pem), audience or login_url
    )
    return SalesforceConnector(
        VendorHttp("salesforce", login_url, table=TABLE),
        VendorHttp("salesforce", login_url, table=TOKEN_TABLE),
        grant,
    )


def test_client_credentials_token_then_create_and_update_by_external_id(
    salesforce: SalesforceConnector, sandbox: Any
) -> None:
    first = salesforce.push("Contact", "ENNU_User_Id__c", [contact(1), contact(2)])
    assert [o.status for o in first] == [SyncStatus.CREATED, SyncStatus.CREATED]
    assert all(o.remote_id and o.remote_id.startswith("003") for o in first)

    again = salesforce.push("Contact", "ENNU_User_Id__c", [contact(2, FirstName="Grace"), contact(1)])
    assert [o.status for o in again] == [SyncStatus.UPDATED, SyncStatus.UPDATED]
    assert [o.remote_id for o in again] == [first[1].remote_id, first[0].remote_id]

    stored = {c["ENNU_User_Id__c"]: c for c in sandbox.objects("salesforce", "Contact")}
    assert set(stored) == {"1", "2"}  # external ids travel as text
    assert stored["2"]["FirstName"] == "Grace"
    assert token_requests(sandbox) == 1  # the token is cached
    composite = api_requests(sandbox, "/composite/sobjects/Contact/ENNU_User_Id__c")
    assert [r["method"] for r in composite] == ["PATCH", "PATCH"]
    assert (
        composite[0]["path"] == "/salesforce/services/data/v62.0/composite/sobjects/Contact/ENNU_User_Id__c"
    )


def test_one_invalid_record_fails_while_the_rest_of_200_succeed(
    salesforce: SalesforceConnector, sandbox: Any
) -> None:
    records = [contact(n) for n in range(1, 201)]
    records[56] = contact(57, Email="not-an-email")
    records[99] = contact(100, LastName=None)

    outcomes = salesforce.push("Contact", "ENNU_User_Id__c", records)

    assert len(outcomes) == 200
    assert [o.record_key for o in outcomes] == [r.record_key for r in records]
    assert outcomes[56].status == SyncStatus.FAILED and outcomes[56].error == "INVALID_EMAIL_ADDRESS"
    assert outcomes[99].status == SyncStatus.FAILED and outcomes[99].error == "REQUIRED_FIELD_MISSING"
    assert sum(o.status == SyncStatus.CREATED for o in outcomes) == 198
    assert len(api_requests(sandbox, "/composite/")) == 1
    assert len(sandbox.objects("salesforce", "Contact")) == 198
    with pytest.raises(ValueError):
        salesforce.push("Contact", "ENNU_User_Id__c", [contact(n) for n in range(201)])


def test_request_limit_exceeded_is_retryable_and_the_usage_is_exposed(
    salesforce: SalesforceConnector, sandbox: Any, sandbox_url: str
) -> None:
    control(sandbox_url, "org", {"daily_limit": 2})
    salesforce.push("Contact", "ENNU_User_Id__c", [contact(1)])
    assert salesforce.api_usage == (1, 2)
    salesforce.push("Contact", "ENNU_User_Id__c", [contact(2)])
    assert salesforce.api_usage == (2, 2)

    with pytest.raises(RetryableError) as refused:
        salesforce.push("Contact", "ENNU_User_Id__c", [contact(3)])

    assert refused.value.reason == "http 403 REQUEST_LIMIT_EXCEEDED"
    assert not refused.value.now  # a daily quota: offered again later, not repeated within seconds
    assert [r["status"] for r in api_requests(sandbox, "/composite/")][-2:] == [200, 403]


def test_an_expired_session_is_refreshed_once_and_the_request_retried_once(
    salesforce: SalesforceConnector, sandbox: Any, sandbox_url: str
) -> None:
    salesforce.push("Contact", "ENNU_User_Id__c", [contact(1)])
    control(sandbox_url, "expire-sessions")

    again = salesforce.push("Contact", "ENNU_User_Id__c", [contact(1)])

    assert again[0].status == SyncStatus.UPDATED
    assert token_requests(sandbox) == 2
    assert [r["status"] for r in api_requests(sandbox, "/composite/")] == [200, 401, 200]

    control(sandbox_url, "org", {"session_seconds": 0})  # every session is refused from now on
    with pytest.raises(AuthError) as refused:
        salesforce.push("Contact", "ENNU_User_Id__c", [contact(1)])
    assert (refused.value.status, refused.value.code) == (401, "INVALID_SESSION_ID")
    assert token_requests(sandbox) == 3  # one refresh, not a loop


def test_fetch_changed_reads_every_page(salesforce: SalesforceConnector, sandbox: Any) -> None:
    salesforce.query_batch_size = 200
    before = datetime.now(UTC) - timedelta(seconds=2)
    for start in (1, 201, 401):
        salesforce.push(
            "Contact", "ENNU_User_Id__c", [contact(n) for n in range(start, min(start + 200, 451))]
        )

    changed = salesforce.fetch_changed("Contact", before)

    assert len(changed) == 450
    assert {c["ENNU_User_Id__c"] for c in changed} == {str(n) for n in range(1, 451)}
    assert set(changed[0]) == {"Id", "ENNU_User_Id__c", "SystemModstamp"}
    queries = api_requests(sandbox, "/query")
    assert len(queries) == 3  # the query and two nextRecordsUrl pages
    assert "SystemModstamp" in unquote(queries[0]["query"])
    assert salesforce.fetch_changed("Contact", datetime.now(UTC) + timedelta(seconds=2)) == []


def test_single_record_upsert_answers_201_then_200(salesforce: SalesforceConnector, sandbox: Any) -> None:
    created = salesforce.upsert_one("Contact", "ENNU_User_Id__c", contact(7))
    updated = salesforce.upsert_one("Contact", "ENNU_User_Id__c", contact(7, Phone="+15555550100"))
    invalid = salesforce.upsert_one("Contact", "ENNU_User_Id__c", contact(8, Email="nope"))

    assert created.status == SyncStatus.CREATED and created.remote_id
    assert (updated.status, updated.remote_id) == (SyncStatus.UPDATED, created.remote_id)
    assert (invalid.status, invalid.error) == (SyncStatus.FAILED, "INVALID_EMAIL_ADDRESS")
    statuses = [r["status"] for r in api_requests(sandbox, "/sobjects/Contact/ENNU_User_Id__c/")]
    assert statuses == [201, 200, 400]


def test_health_goals_become_opportunities_with_the_mapped_stage(
    salesforce: SalesforceConnector, sandbox: Any
) -> None:
    salesforce.push("Contact", "ENNU_User_Id__c", [contact(1), contact(2)])
    mapping = load_all_mappings(REPO_MAPPINGS)[("health_goal.created", "salesforce")]
    source = pd.DataFrame(
        {
            "event.id": ["e1", "e2"],
            "user.id": [1, 2],
            "health_goal.id": [10, 11],
            "health_goal.kind": ["improve_sleep", "something_new"],
            "health_goal.due_date": ["2027-03-31", "2027-06-30"],
            "user.salesforce_lead": [False, False],
        }
    )
    mapped = apply_mapping(mapping, source)
    records = [
        Record(
            row["_record_key"], row["_event_id"], int(row["_user_id"]), {f: row[f] for f in mapping.fields}
        )
        for row in mapped.to_dict("records")
    ]

    outcomes = salesforce.push(mapping.object, mapping.upsert_key, records)

    assert [o.status for o in outcomes] == [SyncStatus.CREATED, SyncStatus.CREATED]
    stored = {o["ENNU_Goal_Id__c"]: o for o in sandbox.objects("salesforce", "Opportunity")}
    assert stored["10"]["StageName"] == "Prospecting"
    assert stored["10"]["Name"] == "ENNU goal: improve sleep"
    assert stored["11"]["Name"] == "ENNU goal"
    assert stored["11"]["CloseDate"] == "2027-06-30"


def test_erase_deletes_the_contact_and_the_lead(salesforce: SalesforceConnector, sandbox: Any) -> None:
    salesforce.push("Contact", "ENNU_User_Id__c", [contact(1), contact(2)])
    salesforce.push("Lead", "ENNU_User_Id__c", [contact(1, Company="ENNU patient")])

    erased = salesforce.erase(Person(user_id=1, email="person1@example.com"))

    assert (erased.status, erased.remote_id) == (SyncStatus.ERASED, "Contact,Lead")
    assert [c["ENNU_User_Id__c"] for c in sandbox.objects("salesforce", "Contact")] == ["2"]
    assert sandbox.objects("salesforce", "Lead") == []
    assert salesforce.erase(Person(user_id=1)).status == SyncStatus.UNCHANGED
    deletes = api_requests(sandbox, "/sobjects/Contact/ENNU_User_Id__c/1")
    assert [r["method"] for r in deletes] == ["DELETE", "DELETE"]


def test_connection_test_reads_the_limits(salesforce: SalesforceConnector, sandbox: Any) -> None:
    check = salesforce.test_connection()

    assert check.ok and check.detail == "daily API requests remaining 14999/15000"
    assert [r["path"] for r in api_requests(sandbox, "/services/data")] == [
        "/salesforce/services/data/v62.0/limits"
    ]


def test_jwt_bearer_assertion_signed_with_the_app_key_is_accepted(sandbox: Any, sandbox_url: str) -> None:
    connector = jwt_connector(sandbox_url, SANDBOX_JWT_PRIVATE_KEY)
    assert connector.test_connection().ok
    form = unquote(sandbox.bodies("salesforce")[0]["body"])
    assert "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer" in form

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    for refused in (
        jwt_connector(sandbox_url, stranger),
        jwt_connector(sandbox_url, SANDBOX_JWT_PRIVATE_KEY, audience="https://evil.example.com"),
    ):
        with pytest.raises(AuthError) as error:  # the push stage defers, never fails, the records
            refused.test_connection()
        assert (error.value.status, error.value.code) == (401, "token invalid_grant")


def test_jwt_assertion_claims() -> None:
    grant = JwtBearerGrant(
        "key", "user@example.com", SecretStr(SANDBOX_JWT_PRIVATE_KEY), "https://login.salesforce.com"
    )
    import jwt

    claims = jwt.decode(grant.assertion(now=1_800_000_000), options={"verify_signature": False})
    assert claims == {
        "iss": "key",
        "sub": "user@example.com",
        "aud": "https://login.salesforce.com",
        "exp": 1_800_000_180,
    }


def test_configured_credentials_choose_the_grant(
    sandbox: Any, sandbox_url: str, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sandbox stands in for a real org here: configured credentials, a configured login URL.
    monkeypatch.setenv("SALESFORCE_LOGIN_URL", f"{sandbox_url}/salesforce")
    monkeypatch.setenv("SALESFORCE_CONSUMER_KEY", "sandbox-sf-key")
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", "sandbox-sf-secret")
    by_secret = SalesforceConnector.from_settings(get_settings(), rate_limited=False)
    assert isinstance(by_secret.grant, ClientCredentialsGrant)
    assert by_secret.test_connection().ok

    monkeypatch.setenv("SALESFORCE_PRIVATE_KEY", SANDBOX_JWT_PRIVATE_KEY)
    monkeypatch.setenv("SALESFORCE_USERNAME", "integration@ennulife.example")
    monkeypatch.setenv("SALESFORCE_API_VERSION", "61.0")
    by_key = SalesforceConnector.from_settings(get_settings(), rate_limited=False)
    assert isinstance(by_key.grant, JwtBearerGrant)
    assert by_key.grant.audience == f"{sandbox_url}/salesforce"
    assert by_key.test_connection().ok
    assert api_requests(sandbox, "/limits")[-1]["path"] == "/salesforce/services/data/v61.0/limits"


def test_sandbox_speaks_salesforce_errors(sandbox: Any, sandbox_url: str) -> None:
    base = f"{sandbox_url}/salesforce"
    refused = requests.get(
        f"{base}/services/data/v62.0/limits", headers={"Authorization": "Bearer x"}, timeout=5
    )
    assert refused.status_code == 401
    assert refused.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    assert parse_limit_info(refused.headers["Sforce-Limit-Info"]) == (0, 15000)

    bad = requests.post(
        f"{base}/services/oauth2/token", data={"grant_type": "client_credentials"}, auth=("x", "y"), timeout=5
    )
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_client")
    token = requests.post(
        f"{base}/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("sandbox-sf-key", "sandbox-sf-secret"),
        timeout=5,
    ).json()
    assert token["instance_url"] == base and token["token_type"] == "Bearer"
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    url = f"{base}/services/data/v62.0/composite/sobjects/Contact/ENNU_User_Id__c"
    too_many = {"allOrNone": False, "records": [{"attributes": {"type": "Contact"}, "LastName": "x"}] * 201}
    answer = requests.patch(url, json=too_many, headers=auth, timeout=5)
    assert (answer.status_code, answer.json()[0]["errorCode"]) == (400, "EXCEEDED_ID_LIMIT")
    unknown = {
        "allOrNone": False,
        "records": [{"attributes": {"type": "Contact"}, "ENNU_User_Id__c": "1", "Foo": 1}],
    }
    answer = requests.patch(url, json=unknown, headers=auth, timeout=5)
    assert (answer.status_code, answer.json()[0]["errorCode"]) == (400, "INVALID_FIELD")
    assert answer.headers["Sforce-Limit-Info"] == "api-usage=2/15000"


def test_wire_helpers() -> None:
    assert parse_limit_info("api-usage=18/5000; per-app-api-usage=17/250(appName=sample)") == (18, 5000)
    assert parse_limit_info(None) is None
    assert soql_datetime(datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert jwt_audience("https://ennu.my.salesforce.com") == "https://login.salesforce.com"
    assert jwt_audience("https://ennu--uat.sandbox.my.salesforce.com") == "https://test.salesforce.com"
    assert jwt_audience("https://login.salesforce.com/") == "https://login.salesforce.com"
    assert jwt_audience("http://127.0.0.1:8765/salesforce/") == "http://127.0.0.1:8765/salesforce"


def test_the_sandbox_rate_limit_answers_403_request_limit_exceeded(
    salesforce: SalesforceConnector, sandbox: Any
) -> None:
    sandbox.set_rate("salesforce", 0.001)  # one request (the token), then refused

    with pytest.raises(RetryableError) as refused:
        salesforce.push("Contact", "ENNU_User_Id__c", [contact(1)])

    assert refused.value.reason == "http 403 REQUEST_LIMIT_EXCEEDED"


def test_the_package_is_the_registered_connector_with_its_objects_as_data() -> None:
    assert CONNECTORS["salesforce"] is CONNECTOR is SalesforceConnector
    assert SalesforceConnector.batch_sizes == dict.fromkeys(
        ("Contact", "Lead", "Account", "Opportunity"), 200
    )
    assert SalesforceConnector.object_spec("Opportunity").upsert_keys == ("ENNU_Goal_Id__c",)
    assert SalesforceConnector.object_spec("Contact").changes


def test_an_undeclared_object_is_refused_before_any_request(
    salesforce: SalesforceConnector, sandbox: Any
) -> None:
    with pytest.raises(ValueError, match="has no object 'Case'"):
        salesforce.push("Case", "ENNU_User_Id__c", [contact(1)])
    assert sandbox.requests("salesforce") == []


def test_the_error_table_says_what_salesforce_answers_mean() -> None:
    assert TABLE.action(403, "REQUEST_LIMIT_EXCEEDED") is Action.LATER  # the API's daily limit is a 403
    assert TABLE.action(403, "INSUFFICIENT_ACCESS") is Action.AUTH
    assert TABLE.action(503, "SERVER_UNAVAILABLE") is Action.RETRY
    assert TABLE.action(401, "INVALID_SESSION_ID") is Action.AUTH
    assert TABLE.action(300) is Action.RECORD  # several records match the external id
    assert TABLE.action(400, "INVALID_FIELD") is Action.BATCH
    assert TOKEN_TABLE.expect("refused") == {400, 401}


def test_server_unavailable_is_sent_again_by_the_client_and_the_batch_goes_through(
    salesforce: SalesforceConnector, sandbox: Any
) -> None:
    salesforce.test_connection()  # the token first, so that the fault hits the upsert
    sandbox.fail("salesforce", "status", status=503, count=1)

    [outcome] = salesforce.push("Contact", "ENNU_User_Id__c", [contact(1)])

    assert outcome.status == SyncStatus.CREATED
    assert [r["status"] for r in api_requests(sandbox, "/composite/")] == [503, 200]


def test_an_upsert_matching_several_records_fails_that_record(endpoint: CapturingEndpoint) -> None:
    endpoint.answer(
        "POST", "/services/oauth2/token", 200, {"access_token": "t", "instance_url": endpoint.url}
    )
    several = ["/services/data/v62.0/sobjects/Contact/001A", "/services/data/v62.0/sobjects/Contact/001B"]
    path = "/services/data/v62.0/sobjects/Contact/ENNU_User_Id__c/9"
    endpoint.answer("PATCH", path, 300, several)  # type: ignore[arg-type]  # Salesforce answers a list
    connector = SalesforceConnector(
        VendorHttp("salesforce", endpoint.url, table=TABLE, retries=0),
        VendorHttp("salesforce", endpoint.url, table=TOKEN_TABLE, retries=0),
        ClientCredentialsGrant("key", SecretStr("secret")),
    )

    outcome = connector.upsert_one("Contact", "ENNU_User_Id__c", contact(9))

    assert (outcome.status, outcome.error) == (SyncStatus.FAILED, "MULTIPLE_CHOICES")


def test_settings_are_typed_and_a_bad_value_names_its_variable(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESFORCE_QUERY_BATCH_SIZE", "")  # empty is unset
    defaults = SalesforceSettings.load()
    assert (defaults.api_version, defaults.external_id_field, defaults.query_batch_size) == (
        "62.0",
        "ENNU_User_Id__c",
        None,
    )
    for name, value in (
        ("SALESFORCE_QUERY_BATCH_SIZE", "lots"),
        ("SALESFORCE_EXTERNAL_ID_FIELD", "Id; DELETE"),
        ("SALESFORCE_API_VERSION", "latest"),
        ("SALESFORCE_RATE_LIMIT", "plenty"),
    ):
        with monkeypatch.context() as scoped:
            scoped.setenv(name, value)
            with pytest.raises(SettingsError, match=name) as refused:
                SalesforceSettings.load()
            assert value not in str(refused.value)


def test_a_private_key_file_and_a_secret_without_the_consumer_key(
    sandbox: Any, sandbox_url: str, clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "salesforce.pem"
    key_file.write_text(SANDBOX_JWT_PRIVATE_KEY)
    monkeypatch.setenv("SALESFORCE_LOGIN_URL", f"{sandbox_url}/salesforce")
    monkeypatch.setenv("SALESFORCE_CONSUMER_KEY", "sandbox-sf-key")
    monkeypatch.setenv("SALESFORCE_PRIVATE_KEY_FILE", str(key_file))
    monkeypatch.setenv("SALESFORCE_USERNAME", "integration@ennulife.example")
    by_file = SalesforceConnector.from_settings(get_settings(), rate_limited=False)
    assert isinstance(by_file.grant, JwtBearerGrant) and by_file.test_connection().ok

    monkeypatch.delenv("SALESFORCE_CONSUMER_KEY")
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", "sandbox-sf-secret")
    with pytest.raises(NotConfigured, match="SALESFORCE_CONSUMER_KEY"):
        SalesforceConnector.from_settings(get_settings(), rate_limited=False)


def test_a_token_refusal_that_is_no_oauth_answer_is_an_auth_error(
    salesforce: SalesforceConnector, sandbox: Any
) -> None:
    sandbox.fail("salesforce", "status", status=400, count=1)  # the API's error list, not OAuth's object

    with pytest.raises(AuthError) as refused:
        salesforce.push("Contact", "ENNU_User_Id__c", [contact(1)])

    assert (refused.value.status, refused.value.code) == (401, "token 400")
    assert api_requests(sandbox, "/composite/") == []
