"""GA4 Measurement Protocol connector: one client a request, 25 events a request, the published limits."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import SecretStr

from connectors.base import Person, Record, UnsupportedObject, sends_marked_by
from connectors.endpoint import NotConfigured
from connectors.errors import Action
from connectors.ga4.connector import (
    MAX_BODY_BYTES,
    AdminApi,
    Ga4Connector,
    as_event,
    request_bodies,
    wire_problem,
)
from connectors.ga4.errors import ADMIN_TABLE, TABLE, TOKEN_TABLE
from connectors.ga4.google_auth import ServiceAccount, ServiceAccountAuth
from connectors.ga4.settings import Ga4Settings
from connectors.http import AmbiguousError, AuthError, ConnectorError, RetryableError, VendorHttp
from connectors.settings import SettingsError
from ennu import local_mode
from ennu.models import SyncStatus
from ennu.settings import get_settings, reload_settings
from mappings import Mapping, apply_mapping, load_all_mappings
from mappings.loader import check_file
from tasks.validate import validate_mapped
from tests.capture import CapturingEndpoint

REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
MY_MAPPINGS = (
    "user.registered/salesforce.yaml",
    "health_goal.created/salesforce.yaml",
    "assessment.completed/ga4.yaml",
    "assessment.completed/zapier.yaml",
)
# The Measurement Protocol's published limits, restated here rather than imported from the connector.
EVENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
PARAM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")


TOO_MANY_PARAMS: dict[str, Any] = {f"params.p{i}": i for i in range(25)}  # with event_id: 26


def ga4_mapping() -> Mapping:
    return load_all_mappings(REPO_MAPPINGS)[("assessment.completed", "ga4")]


def event(n: int, client: str = "c1", **fields: Any) -> Record:
    values: dict[str, Any] = {
        "client_id": client,
        "user_id": f"u-{client}",
        "name": "assessment_completed",
        "params.event_id": f"evt-{n}",
        "params.assessment_type": "sleep",
    }
    values.update(fields)
    return Record(f"assessment:{n}", f"evt-{n}", 1, values)


def source(n: int, event_ids: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event.id": event_ids or [f"evt-{i}" for i in range(n)],
            "user.id": [i % 3 + 1 for i in range(n)],
            "user.email": ["leaky.canary@example.com"] * n,
            "user.first_name": ["Canary"] * n,
            "assessment.id": list(range(100, 100 + n)),
            "assessment.type": ["sleep", "hormone", "skin"][:1] * n,
            "assessment.overall_score": [7.5] * n,
        }
    )


def records_of(mapped: pd.DataFrame, mapping: Mapping) -> list[Record]:
    return [
        Record(
            row["_record_key"], row["_event_id"], int(row["_user_id"]), {f: row[f] for f in mapping.fields}
        )
        for row in mapped.to_dict("records")
    ]


@pytest.fixture()
def ga4(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ga4Connector]:
    for name in ("GA4_API_SECRET", "GA4_MEASUREMENT_ID", "GA4_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    connector = Ga4Connector.from_settings(get_settings(), rate_limited=False)
    yield connector
    connector.close()


def collect_bodies(sandbox: Any) -> list[dict[str, Any]]:
    return [b["body"] for b in sandbox.bodies("ga4") if b["path"] == "/ga4/mp/collect"]


def test_a_hundred_events_of_one_client_go_in_four_requests(ga4: Ga4Connector, sandbox: Any) -> None:
    records = [event(n) for n in range(100)]

    outcomes = ga4.push("events", "client_id", records)

    assert [o.status for o in outcomes] == [SyncStatus.CREATED] * 100
    assert outcomes[3].remote_id == "evt-3"
    bodies = collect_bodies(sandbox)
    assert [len(b["events"]) for b in bodies] == [25, 25, 25, 25]
    assert {b["client_id"] for b in bodies} == {"c1"}
    assert len(sandbox.objects("ga4", "events")) == 100
    assert sandbox.objects("ga4", "dropped") == []
    assert all("measurement_id=G-SANDBOX01" in r["query"] for r in sandbox.requests("ga4"))


def test_each_request_carries_one_client(ga4: Ga4Connector, sandbox: Any) -> None:
    records = [event(n, client="a" if n % 2 else "b") for n in range(25)]

    ga4.push("events", "client_id", records)

    bodies = collect_bodies(sandbox)
    assert sorted((b["client_id"], len(b["events"])) for b in bodies) == [("a", 12), ("b", 13)]
    assert {b["user_id"] for b in bodies} == {"u-a", "u-b"}


def test_events_ga4_would_drop_are_failed_not_sent(ga4: Ga4Connector, sandbox: Any) -> None:
    records = [
        event(1),
        event(2, name="assessment-completed"),
        event(3, **{"params.note": "x" * 101}),
        event(4, name="session_start"),
        event(5, client_id=None),
        event(6, **TOO_MANY_PARAMS),
    ]

    outcomes = ga4.push("events", "client_id", records)

    assert [(o.status, o.error) for o in outcomes] == [
        (SyncStatus.CREATED, None),
        (SyncStatus.FAILED, "NAME_INVALID"),
        (SyncStatus.FAILED, "VALUE_INVALID"),
        (SyncStatus.FAILED, "NAME_RESERVED"),
        (SyncStatus.FAILED, "VALUE_REQUIRED"),
        (SyncStatus.FAILED, "EXCEEDED_MAX_ENTITIES"),
    ]
    assert len(collect_bodies(sandbox)) == 1


def test_mapped_payloads_meet_the_published_limits_and_carry_no_contact_data() -> None:
    mapping = ga4_mapping()
    records = records_of(apply_mapping(mapping, source(60)), mapping)
    events = [as_event(r) for r in records]
    assert all(wire_problem(r.fields) is None for r in records)

    bodies = request_bodies(events)

    assert sum(len(keys) for _, keys in bodies) == 60
    assert len(bodies) == 3 * 1  # three people, 20 events each: one request each
    for body, _ in bodies:
        raw = json.dumps(body)
        assert len(raw.encode()) < 130_000
        assert len(body["events"]) <= 25
        assert re.fullmatch(r"[0-9a-f]{64}", body["client_id"])  # a keyed pseudonym, never personal data
        for item in body["events"]:
            assert EVENT_NAME.match(item["name"])
            assert len(item["params"]) <= 25
            for key, value in item["params"].items():
                assert PARAM_NAME.match(key)
                assert not isinstance(value, str) or len(value) <= 100
        assert "canary" not in raw.lower() and "@" not in raw
        assert "7.5" not in raw  # no health result goes to analytics


def test_bodies_are_split_before_the_size_limit() -> None:
    big = [as_event(event(n, **{f"params.p{i}": "v" * 100 for i in range(24)})) for n in range(25)]
    whole = json.dumps(request_bodies(big)[0][0]).encode()
    assert len(whole) < MAX_BODY_BYTES  # 25 valid events never reach 130 kB

    bodies = request_bodies(big, max_bytes=len(whole) // 2)

    assert len(bodies) == 3
    assert all(len(json.dumps(body).encode()) < len(whole) // 2 for body, _ in bodies)
    assert [k for _, keys in bodies for k in keys] == [f"assessment:{n}" for n in range(25)]


def test_a_too_long_value_is_rejected_by_validation_with_a_reason() -> None:
    mapping = ga4_mapping()
    mapped = apply_mapping(mapping, source(2, event_ids=["evt-ok", "e" * 101]))

    result = validate_mapped(mapping, mapped)

    assert list(result.valid["_record_key"]) == ["assessment:100"]
    assert [(r.record_key, r.failed) for r in result.rejected] == [
        ("assessment:101", ("params.event_id: expect_column_value_lengths_to_be_between",))
    ]


def test_connection_test_posts_a_sample_to_the_debug_endpoint(ga4: Ga4Connector, sandbox: Any) -> None:
    ga4.key_events = ()  # GA4_KEY_EVENTS=none: no key event to check (tests/test_ga4_events.py)
    check = ga4.test_connection()

    assert check.ok and check.detail == "sample event validated"
    assert [r["path"] for r in sandbox.requests("ga4")] == ["/ga4/debug/mp/collect"]
    assert sandbox.objects("ga4", "events") == []

    ga4.measurement_id = "not-a-measurement-id"
    with pytest.raises(ConnectorError) as failing:  # a failed check raises, as every connector's does
        ga4.test_connection()
    assert failing.value.reason == "validation: VALUE_INVALID"


def test_the_validation_server_names_each_violation(ga4: Ga4Connector) -> None:
    body = {
        "client_id": "c1",
        "events": [
            {"name": "1bad", "params": {}},
            {"name": "ok_event", "params": {"long": "x" * 101, "google_x": 1}},
            *[{"name": "ok_event", "params": {}}] * 24,
        ],
    }

    messages = ga4.validate(body)

    codes = sorted(m["validationCode"] for m in messages)
    assert codes == ["EXCEEDED_MAX_ENTITIES", "NAME_INVALID", "NAME_RESERVED", "VALUE_INVALID"]
    assert {m["fieldPath"] for m in messages} >= {"events", "events[0].name", "events[1].params.long"}


def test_collect_answers_204_and_drops_a_wrong_secret_silently(ga4: Ga4Connector, sandbox: Any) -> None:
    ga4._api_secret = "wrong"  # GA4 cannot tell us, and neither can the sandbox

    outcomes = ga4.push("events", "client_id", [event(1)])

    assert outcomes[0].status == SyncStatus.CREATED
    assert sandbox.objects("ga4", "events") == []
    assert sandbox.objects("ga4", "dropped") == [{"codes": ["API_SECRET_INVALID"]}]


def plain_hashes(value: str) -> set[str]:
    return {hashlib.new(name, value.encode()).hexdigest() for name in ("md5", "sha1", "sha256", "sha512")}


def mapped_ids(user_id: int) -> tuple[str, str]:
    mapping = ga4_mapping()
    frame = source(1).assign(**{"user.id": [user_id]})
    [record] = records_of(apply_mapping(mapping, frame), mapping)
    return str(record.fields["client_id"]), str(record.fields["user_id"])


def test_ga4_ids_are_stable_under_one_pepper_new_under_another_and_never_a_plain_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENNU_PSEUDONYM_PEPPER", "pepper-one")
    reload_settings()
    first, again = mapped_ids(42), mapped_ids(42)
    assert first == again and first[0] == first[1] and mapped_ids(43) != first
    monkeypatch.setenv("ENNU_PSEUDONYM_PEPPER", "pepper-two")
    reload_settings()
    rotated = mapped_ids(42)
    assert rotated != first
    for ids in (first, rotated):
        assert not set(ids) & plain_hashes("42")
    monkeypatch.delenv("ENNU_PSEUDONYM_PEPPER")
    reload_settings()


def test_no_pepper_in_production_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from ennu.pseudonyms import PepperMissing, person_pseudonym

    monkeypatch.delenv("ENNU_PSEUDONYM_PEPPER", raising=False)
    monkeypatch.setenv("ENNU_ENV", "production")  # the development pepper is for local mode only
    reload_settings()
    try:
        with pytest.raises(PepperMissing):
            person_pseudonym(42)
    finally:
        monkeypatch.undo()
        reload_settings()


def test_erase_submits_a_user_deletion_for_both_ids_under_service_account_auth(
    ga4: Ga4Connector, sandbox: Any
) -> None:
    from ennu.pseudonyms import person_pseudonym

    mine, other = person_pseudonym(5), person_pseudonym(6)
    ga4.push(
        "events", "client_id", [event(1, client=mine, user_id=mine), event(2, client=other, user_id=other)]
    )

    outcome = ga4.erase(Person(user_id=5))

    assert outcome.status == SyncStatus.ERASED and (outcome.remote_id or "").startswith(
        "deletionRequestTime="
    )
    assert [e["client_id"] for e in sandbox.objects("ga4", "events")] == [other]
    deletions = sandbox.objects("ga4", "user_deletions")
    assert sorted((d["identifier"], d["value"], d["property"]) for d in deletions) == [
        ("clientId", mine, "123456789"),
        ("userId", mine, "123456789"),
    ]
    paths = [r["path"] for r in sandbox.requests("ga4")]
    assert paths.count("/ga4/token") == 1  # one token for both requests
    assert paths.count("/ga4/v1alpha/properties/123456789:submitUserDeletion") == 2


def test_the_admin_stand_in_checks_auth_and_body_as_google_documents(sandbox_url: str, sandbox: Any) -> None:
    import requests

    from connectors.ga4.google_auth import ANALYTICS_EDIT_SCOPE, ServiceAccount, assertion

    base = f"{sandbox_url}/ga4"
    deletion = f"{base}/v1alpha/properties/123456789:submitUserDeletion"
    assert requests.post(deletion, json={"userId": "x"}, timeout=10).status_code == 401
    account = ServiceAccount(
        local_mode.GA4_SERVICE_ACCOUNT,
        local_mode.GA4_KEY_ID,
        SecretStr(local_mode.local_private_key_pem()),
        f"{base}/token",
    )
    wrong_scope = requests.post(
        f"{base}/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": assertion(account, "email"),
        },
        timeout=10,
    )
    assert (wrong_scope.status_code, wrong_scope.json()["error"]) == (400, "invalid_grant")
    token = requests.post(
        f"{base}/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": assertion(account, ANALYTICS_EDIT_SCOPE),
        },
        timeout=10,
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    both = requests.post(deletion, json={"userId": "x", "clientId": "y"}, headers=auth, timeout=10)
    assert (both.status_code, both.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")
    other_property = requests.post(
        deletion.replace("123456789", "987"), json={"userId": "x"}, headers=auth, timeout=10
    )
    assert other_property.status_code == 403
    assert (
        "deletionRequestTime"
        in requests.post(deletion, json={"userId": "x"}, headers=auth, timeout=10).json()
    )


def test_every_new_mapping_file_passes_the_lint() -> None:
    for name in MY_MAPPINGS:
        mapping, errors = check_file(REPO_MAPPINGS / name)
        assert errors == [] and mapping is not None, name


def test_an_unavailable_collect_endpoint_is_retried_by_the_request_then_left_to_the_engine(
    ga4: Ga4Connector, sandbox: Any
) -> None:
    sandbox.fail("ga4", "status", status=503, count=1)  # one 503: the request is sent again
    assert ga4.push("events", "client_id", [event(1)])[0].status == SyncStatus.CREATED

    sandbox.fail("ga4", "status", status=503, count=1 + get_settings().http_retries)
    with pytest.raises(RetryableError):
        ga4.push("events", "client_id", [event(2)])

    assert ga4.push("events", "client_id", [event(2)])[0].status == SyncStatus.CREATED


def test_a_lost_answer_is_left_to_the_engine_to_send_again_and_each_request_is_marked_first(
    ga4: Ga4Connector, sandbox: Any
) -> None:
    """Nothing answered yet: the lost answer raises (the engine offers the batch again); after an answered
    request it defers the rest. Each request's records are marked just before it leaves."""
    sandbox.fail("ga4", "commit_then_reset", count=1)
    with pytest.raises(AmbiguousError):
        ga4.push("events", "client_id", [event(1)])
    marked: list[list[str]] = []

    def mark(records: Sequence[Record]) -> None:
        marked.append([r.record_key for r in records])
        if len(marked) == 2:  # the second request's answer is lost after the stand-in stored it
            sandbox.fail("ga4", "commit_then_reset", count=1)

    with sends_marked_by(mark):
        outcomes = ga4.push("events", "client_id", [event(2, "a"), event(3, "b"), event(4, "c")])

    assert [(o.status, o.error) for o in outcomes] == [
        (SyncStatus.CREATED, None),
        (SyncStatus.DEFERRED, "reset after send"),
        (SyncStatus.DEFERRED, "reset after send"),
    ]
    assert marked == [["assessment:2"], ["assessment:3"]]  # the third was never sent
    held = Counter(e["params"]["event_id"] for e in sandbox.objects("ga4", "events"))
    assert held == Counter({"evt-1": 1, "evt-2": 1, "evt-3": 1})


# --------------------------------------------------------------------------- settings, objects, error tables


@pytest.fixture()
def ga4_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in Ga4Settings.model_fields:
        monkeypatch.delenv(Ga4Settings.variable(name), raising=False)
    for name in Ga4Settings.secrets:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


def test_every_ga4_variable_is_a_typed_setting_and_a_bad_value_names_its_variable(
    ga4_env: pytest.MonkeyPatch,
) -> None:
    documented = {variable for variable, _, _ in Ga4Settings.documented()}
    assert documented == {
        "GA4_API_SECRET",
        "GA4_SERVICE_ACCOUNT_KEY",
        "GA4_BASE_URL",
        "GA4_MEASUREMENT_ID",
        "GA4_RATE_LIMIT",
        "GA4_PROPERTY_ID",
        "GA4_ADMIN_BASE_URL",
        "GA4_KEY_EVENTS",
    }
    ga4_env.setenv("GA4_RATE_LIMIT", "")  # empty is unset
    ga4_env.setenv("GA4_PROPERTY_ID", "424242")
    loaded = Ga4Settings.load()
    assert str(loaded.rate_limit) == "36000/1h" and loaded.property_id == "424242"
    ga4_env.setenv("GA4_RATE_LIMIT", "lots")
    with pytest.raises(SettingsError) as refused:
        Ga4Settings.load()
    assert "GA4_RATE_LIMIT" in str(refused.value) and "lots" not in str(refused.value)


def test_a_secret_without_a_measurement_id_is_not_configured(ga4_env: pytest.MonkeyPatch) -> None:
    ga4_env.setenv("GA4_API_SECRET", "a-real-secret")
    with pytest.raises(NotConfigured):
        Ga4Connector.from_settings(get_settings(), rate_limited=False)


def test_an_undeclared_object_is_refused_before_any_request(ga4: Ga4Connector, sandbox: Any) -> None:
    with pytest.raises(UnsupportedObject):
        ga4.push("users", "client_id", [event(1)])
    assert sandbox.requests("ga4") == []
    assert Ga4Connector.batch_sizes == {"events": 25}
    assert Ga4Connector.objects[0].upsert_keys == (ga4_mapping().upsert_key,)


def test_the_local_service_account_never_signs_for_an_admin_api_off_this_machine(
    sandbox: Any, ga4_env: pytest.MonkeyPatch
) -> None:
    ga4_env.setenv("GA4_ADMIN_BASE_URL", "https://analyticsadmin.googleapis.com")
    connector = Ga4Connector.from_settings(get_settings(), rate_limited=False)
    try:
        assert connector.admin is None
        outcome = connector.erase(Person(user_id=5))
    finally:
        connector.close()
    assert outcome.status == SyncStatus.SKIPPED and sandbox.requests("ga4") == []


def admin_connector(ga4: Ga4Connector, base: str, property_id: str = "123456789") -> Ga4Connector:
    account = ServiceAccount(
        local_mode.GA4_SERVICE_ACCOUNT,
        local_mode.GA4_KEY_ID,
        SecretStr(local_mode.local_private_key_pem()),
        f"{base}/token",
    )
    token_http = VendorHttp("ga4", "", table=TOKEN_TABLE)
    http = VendorHttp("ga4", base, auth=ServiceAccountAuth(token_http, account), table=ADMIN_TABLE)
    return Ga4Connector(ga4.http, ga4.measurement_id, "secret", AdminApi(http, property_id))


def test_a_property_the_service_account_may_not_touch_is_an_auth_failure(
    ga4: Ga4Connector, sandbox_url: str
) -> None:
    other = admin_connector(ga4, f"{sandbox_url}/ga4", property_id="987")  # PERMISSION_DENIED, 403
    with pytest.raises(AuthError) as refused:
        other.erase(Person(user_id=5))
    assert refused.value.status == 403


def test_resource_exhausted_is_waited_for_and_tried_again_then_left_to_the_engine(
    ga4: Ga4Connector, endpoint: CapturingEndpoint
) -> None:
    endpoint.answer("POST", "/token", 200, {"access_token": "t", "expires_in": 3600})
    path = "/v1alpha/properties/123456789:submitUserDeletion"
    quota = {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}
    endpoint.answer("POST", path, 429, quota)
    with pytest.raises(RetryableError):
        admin_connector(ga4, endpoint.url).erase(Person(user_id=5))
    deletions = [r for r in endpoint.take() if r.path == path]
    assert len(deletions) == 1 + get_settings().http_retries  # the first identifier, tried again
    endpoint.answer("POST", "/token", 400, {"error": "invalid_grant"})
    with pytest.raises(AuthError):  # the token endpoint refusing the service account
        admin_connector(ga4, endpoint.url).erase(Person(user_id=5))


def test_the_error_tables_say_what_google_documents() -> None:
    assert TABLE.action(400) is Action.BATCH and TABLE.action(503) is Action.RETRY
    assert ADMIN_TABLE.action(403) is Action.AUTH and ADMIN_TABLE.action(429) is Action.RATE_LIMITED
    assert ADMIN_TABLE.action(409) is Action.RETRY and TOKEN_TABLE.action(400) is Action.AUTH
