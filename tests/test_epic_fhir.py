"""The Epic FHIR connector against the sandbox FHIR server: transactions, idempotency, patients, errors."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pandas as pd
import pytest
import requests
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from pydantic import SecretStr

from connectors.base import Person, Record, UnsupportedObject
from connectors.epic_fhir import ERASURE_DECISION, SURVEYS_OFF, Capabilities, EpicFhirConnector
from connectors.epic_fhir.errors import TABLE, TOKEN_TABLE
from connectors.epic_fhir.options import EpicOptions
from connectors.epic_fhir.panels import WAITING
from connectors.epic_fhir.settings import EpicFhirSettings
from connectors.epic_fhir.smart_auth import SmartBackendAuth, SmartClient
from connectors.epic_fhir.writes import delivery_of
from connectors.errors import Action
from connectors.http import AuthError, RetryableError, VendorHttp
from connectors.settings import SettingsError
from ennu import local_mode
from ennu.models import SyncStatus
from ennu.settings import get_settings
from mappings.frame import apply_mapping
from mappings.loader import load_mapping
from tasks.push import to_records
from tests.capture import CapturingEndpoint

MAPPING = Path(__file__).resolve().parent.parent / "mappings" / "biomarker.updated" / "epic_fhir.yaml"
OBSERVED = datetime(2024, 5, 1, 8, 30)
EPIC_ENV = (
    "EPIC_PRIVATE_KEY",
    "EPIC_PRIVATE_KEY_FILE",
    "EPIC_FHIR_BASE_URL",
    "EPIC_CLIENT_ID",
    "EPIC_KEY_ID",
    "EPIC_TOKEN_URL",
    "EPIC_SCOPE",
    "EPIC_CREATE_PATIENTS",
    "EPIC_PATIENT_MATCH_DEMOGRAPHICS",
    "EPIC_PATIENT_IDENTIFIER_SYSTEM",
    "EPIC_OBSERVATION_IDENTIFIER_SYSTEM",
    "EPIC_MRN_SYSTEM",
    "EPIC_PATIENT_IDENTIFIERS",
    "EPIC_ASSESSMENT_OBSERVATIONS",
    "EPIC_BP_PAIR_SECONDS",
    "EPIC_BP_WAIT_SECONDS",
    "EPIC_BP_RECHECK_SECONDS",
    "EPIC_PATIENT_RECHECK_SECONDS",
)
MRN_SYSTEM = "urn:oid:2.16.840.1.113883.3.9999.1"  # a clinic's MRN system (synthetic)


def biomarker(
    biomarker_id: int,
    name: str,
    value: float,
    unit: str,
    user_id: int = 1,
    *,
    mrn: str | None = None,
    low: float | None = None,
    high: float | None = None,
    recorded: datetime | None = None,
) -> Record:
    return Record(
        f"biomarker:{biomarker_id}",
        f"evt-{biomarker_id}",
        user_id,
        {
            "identifier": biomarker_id,
            "biomarker_name": name,
            "value": value,
            "value_decimals": None,
            "unit": unit,
            "reference_low": low,
            "reference_high": high,
            "effective": OBSERVED,
            "recorded_at": recorded or OBSERVED,
            "patient.mrn": mrn,
            "patient.family": "Doe",
            "patient.given": "Ada",
            "patient.birth_date": "1980-02-03",
            "patient.gender": "female",
        },
    )


def batch() -> list[Record]:
    """Two people, eight results: seven Observations (one a blood-pressure panel)."""
    return [
        biomarker(1, "glucose", 92, "mg/dL"),
        biomarker(2, "hba1c", 5.4, "%"),
        biomarker(3, "blood_pressure_systolic", 128, "mm[Hg]"),
        biomarker(4, "blood_pressure_diastolic", 79, "mm[Hg]"),
        biomarker(5, "ldl", 2.5, "mmol/L"),
        biomarker(6, "tsh", 1.9, "m[IU]/L", user_id=2),
        biomarker(7, "vitamin_d", 41, "ng/mL", user_id=2),
        biomarker(8, "body_weight", 71.5, "kg", user_id=2),
    ]


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in EPIC_ENV:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


class Partners:
    """What the host holds of blood-pressure partners, for connector tests (the flow tests read the host)."""

    def __init__(self, *records: Record) -> None:
        self.records = list(records)

    def around(
        self, user_ids: Collection[int], names: Collection[str], start: datetime, end: datetime
    ) -> list[Record]:
        return [
            r
            for r in self.records
            if r.user_id in user_ids
            and r.fields["biomarker_name"] in names
            and start <= r.fields["effective"].replace(tzinfo=UTC) <= end
        ]


def connector(**changes: Any) -> EpicFhirConnector:
    """From settings (the sandbox), with the host's partners replaced by `Partners`."""
    built = EpicFhirConnector.from_settings(get_settings(), rate_limited=False)
    built.partners = changes.pop("partners", Partners())
    for name, value in changes.items():
        setattr(built, name, value)
    return built


@pytest.fixture()
def epic(sandbox: Any, clean_env: pytest.MonkeyPatch) -> Iterator[EpicFhirConnector]:
    built = connector()
    yield built
    built.close()


def posts(sandbox: Any, path: str) -> int:
    return sum(1 for r in sandbox.requests("fhir") if r["method"] == "POST" and r["path"] == path)


def test_a_biomarker_batch_goes_in_one_transaction_and_again_creates_nothing(
    epic: EpicFhirConnector, sandbox: Any
) -> None:
    first = epic.push("observations", "identifier", batch())
    assert [o.status for o in first] == [SyncStatus.CREATED] * 8
    assert first[2].remote_id == first[3].remote_id  # the blood-pressure pair is one Observation
    assert posts(sandbox, "/fhir/r4") == 1
    assert posts(sandbox, "/fhir/r4/Observation") == 0
    observations = sandbox.objects("fhir", "Observation")
    assert len(observations) == 7
    assert {o["identifier"][0]["value"] for o in observations} >= {"biomarker-1", "biomarker-3-4"}
    assert len(sandbox.objects("fhir", "Patient")) == 2

    again = epic.push("observations", "identifier", batch())
    assert [o.status for o in again] == [SyncStatus.UNCHANGED] * 8
    assert [o.remote_id for o in again] == [o.remote_id for o in first]
    assert posts(sandbox, "/fhir/r4") == 1  # what the EHR already holds unchanged costs no write
    assert len(sandbox.objects("fhir", "Observation")) == 7
    # patients are looked up once per connector, the capability statement read once, and what the EHR
    # holds for the batch's identifiers is one search per push
    assert sum(1 for r in sandbox.requests("fhir") if r["path"] == "/fhir/r4/Patient") == 4
    assert sum(1 for r in sandbox.requests("fhir") if r["path"] == "/fhir/r4/metadata") == 1
    assert sum(1 for r in sandbox.requests("fhir") if r["path"] == "/fhir/r4/Observation") == 2


def test_the_stored_observation_is_converted_coded_and_refers_to_the_patient(
    epic: EpicFhirConnector, sandbox: Any
) -> None:
    epic.push("observations", "identifier", [biomarker(5, "ldl", 2.5, "mmol/L")])
    [observation] = sandbox.objects("fhir", "Observation")
    [patient] = sandbox.objects("fhir", "Patient")
    assert observation["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert observation["identifier"] == [{"system": "urn:ennu:biomarker", "value": "biomarker-5"}]
    assert observation["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "13457-7",
        "display": "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
    }
    assert observation["valueQuantity"] == {
        "value": 97,  # 2.50 mmol/L * 38.67 = 96.675, in whole mg/dL
        "unit": "mg/dL",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    }
    assert patient["identifier"] == [{"system": "urn:ennu:user-id", "value": "1"}]
    assert patient["name"] == [{"family": "Doe", "given": ["Ada"]}]


def test_rejected_records_get_reasons_and_the_rest_are_sent(epic: EpicFhirConnector, sandbox: Any) -> None:
    records = [
        biomarker(1, "glucose", 92, "mg/dL"),
        biomarker(2, "omega3_index", 6.0, "%"),
        biomarker(3, "glucose", 0.9, "g/L"),
        biomarker(4, "blood_pressure_systolic", 128, "mm[Hg]"),
    ]
    outcomes = epic.push("observations", "identifier", records)
    assert [o.status for o in outcomes] == [
        SyncStatus.CREATED,
        SyncStatus.REJECTED,
        SyncStatus.REJECTED,
        SyncStatus.CREATED,  # a half whose wait ended long ago, alone: never a silent loss
    ]
    assert "no LOINC entry" in (outcomes[1].error or "")
    assert outcomes[2].error == "no exact conversion of glucose from g/L to mg/dL"
    observations = sandbox.objects("fhir", "Observation")
    assert sorted(o["code"]["coding"][0]["code"] for o in observations) == ["2345-7", "8480-6"]


def test_a_patient_is_found_by_identifier_and_never_created_twice(
    epic: EpicFhirConnector, sandbox: Any
) -> None:
    epic.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    fresh = connector()
    try:
        fresh.push("observations", "identifier", [biomarker(2, "hba1c", 5.1, "%")])
    finally:
        fresh.close()
    assert len(sandbox.objects("fhir", "Patient")) == 1
    assert posts(sandbox, "/fhir/r4/Patient") == 1
    subjects = {o["subject"]["reference"] for o in sandbox.objects("fhir", "Observation")}
    assert len(subjects) == 1


def test_without_patient_creation_an_unknown_person_is_deferred_with_a_reason(
    sandbox: Any, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("EPIC_CREATE_PATIENTS", "false")
    epic = connector()
    before = datetime.now(UTC)
    try:
        [outcome] = epic.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    finally:
        epic.close()
    assert (outcome.status, outcome.error) == (SyncStatus.DEFERRED, "no patient match")
    assert outcome.not_before is not None and outcome.not_before >= before + timedelta(minutes=59)
    assert sandbox.objects("fhir", "Patient") == [] and sandbox.objects("fhir", "Observation") == []


def test_demographic_matching_finds_an_existing_patient(
    epic: EpicFhirConnector, sandbox: Any, clean_env: pytest.MonkeyPatch
) -> None:
    registered_at_the_clinic = {
        "resourceType": "Patient",
        "name": [{"family": "Doe", "given": ["Ada"]}],
        "birthDate": "1980-02-03",
    }
    created = epic.http.request(
        "POST",
        "Patient",
        data=json.dumps(registered_at_the_clinic),
        headers={"Content-Type": "application/fhir+json"},
    ).json()
    clean_env.setenv("EPIC_CREATE_PATIENTS", "false")
    clean_env.setenv("EPIC_PATIENT_MATCH_DEMOGRAPHICS", "true")
    matching = connector()
    try:
        [outcome] = matching.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    finally:
        matching.close()
    assert outcome.status == SyncStatus.CREATED
    [observation] = sandbox.objects("fhir", "Observation")
    assert observation["subject"]["reference"] == f"Patient/{created['id']}"


def test_a_duplicate_at_the_server_fails_its_entry_and_the_rest_go_through(
    epic: EpicFhirConnector, sandbox: Any, sandbox_url: str
) -> None:
    epic.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    [stored] = sandbox.objects("fhir", "Observation")
    twin = {k: v for k, v in stored.items() if k not in ("id", "meta")}
    twin["identifier"] = [{"system": "urn:ennu:biomarker", "value": "biomarker-2"}]
    for _ in range(2):  # two Observations with one identifier, written without conditional create
        epic.http.request(
            "POST", "Observation", data=json.dumps(twin), headers={"Content-Type": "application/fhir+json"}
        )
    outcomes = epic.push(
        "observations",
        "identifier",
        [
            biomarker(2, "hba1c", 5.2, "%"),
            biomarker(3, "tsh", 2.0, "m[IU]/L"),
            biomarker(4, "bmi", 23.4, "kg/m2"),
        ],
    )
    assert [o.status for o in outcomes] == [SyncStatus.FAILED, SyncStatus.CREATED, SyncStatus.CREATED]
    assert outcomes[0].error == "http 412 duplicate"
    assert posts(sandbox, "/fhir/r4") == 3  # the refused transaction, then the rest in one more


def test_without_transactions_each_observation_is_a_conditional_create(
    epic: EpicFhirConnector, sandbox: Any
) -> None:
    per_resource = EpicFhirConnector(
        epic.http,
        epic.options,
        capabilities=Capabilities(transaction=False, conditional_create=True),
        partners=Partners(),
    )
    first = per_resource.push("observations", "identifier", batch()[:3] + batch()[3:5])
    assert [o.status for o in first] == [SyncStatus.CREATED] * 5
    assert posts(sandbox, "/fhir/r4/Observation") == 4 and posts(sandbox, "/fhir/r4") == 0
    again = per_resource.push("observations", "identifier", batch()[:3] + batch()[3:5])
    assert [o.status for o in again] == [SyncStatus.UNCHANGED] * 5
    assert len(sandbox.objects("fhir", "Observation")) == 4


def test_without_conditional_create_each_observation_is_searched_then_created(
    epic: EpicFhirConnector, sandbox: Any
) -> None:
    plain = EpicFhirConnector(
        epic.http,
        epic.options,
        capabilities=Capabilities(transaction=False, conditional_create=False, conditional_update=False),
    )
    records = [biomarker(1, "glucose", 92, "mg/dL"), biomarker(2, "hba1c", 5.2, "%")]
    assert [o.status for o in plain.push("observations", "identifier", records)] == [SyncStatus.CREATED] * 2
    assert [o.status for o in plain.push("observations", "identifier", records)] == [SyncStatus.UNCHANGED] * 2
    assert posts(sandbox, "/fhir/r4/Observation") == 2
    searches = [
        r for r in sandbox.requests("fhir") if r["method"] == "GET" and r["path"] == "/fhir/r4/Observation"
    ]
    # one search per push for every identifier of the batch (OR-joined), before anything is written
    assert len(searches) == 2 and "identifier=urn%3Aennu%3Abiomarker%7Cbiomarker-1" in searches[0]["query"]
    changed = [biomarker(1, "glucose", 126, "mg/dL")]
    assert [o.status for o in plain.push("observations", "identifier", changed)] == [SyncStatus.UPDATED]
    [put] = [r for r in sandbox.requests("fhir") if r["method"] == "PUT"]
    assert put["path"].startswith("/fhir/r4/Observation/")  # no conditional update: by the id searched


def test_the_wire_format_is_smart_backend_services_and_a_fhir_transaction(
    epic: EpicFhirConnector, sandbox: Any
) -> None:
    epic.push("observations", "identifier", batch()[:2])
    bodies = {(b["method"], b["path"]): b["body"] for b in sandbox.bodies("fhir")}
    form = dict(parse_qsl(bodies[("POST", "/fhir/oauth2/token")]))
    assert set(form) == {"grant_type", "client_assertion_type", "client_assertion", "scope"}
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert form["scope"].split() == [
        "system/Patient.read",
        "system/Observation.write",
        "system/Observation.read",
        "system/Patient.write",
    ]
    bundle = bodies[("POST", "/fhir/r4")]
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "transaction")
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "POST", "url": "Observation", "ifNoneExist": "identifier=urn:ennu:biomarker|biomarker-1"},
        {"method": "POST", "url": "Observation", "ifNoneExist": "identifier=urn:ennu:biomarker|biomarker-2"},
    ]
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in bundle["entry"])


def test_a_transient_server_failure_is_retried_by_the_request_then_raises_for_the_engine(
    epic: EpicFhirConnector, sandbox: Any
) -> None:
    epic.capabilities()
    epic.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    sandbox.fail("fhir", "status", status=503, count=1)  # one 503: the request is sent again
    assert epic.push("observations", "identifier", [biomarker(2, "hba1c", 5.2, "%")])[0].status == (
        SyncStatus.CREATED
    )
    retries = get_settings().http_retries
    sandbox.fail("fhir", "status", status=503, count=1 + retries)  # outlasts the request's retries
    with pytest.raises(RetryableError) as raised:
        epic.push("observations", "identifier", [biomarker(3, "tsh", 2.0, "m[IU]/L")])
    assert raised.value.reason == "http 503 transient"  # the OperationOutcome's issue code, by the table
    assert epic.push("observations", "identifier", [biomarker(3, "tsh", 2.0, "m[IU]/L")])[0].status == (
        SyncStatus.CREATED
    )


def test_an_expired_token_is_fetched_again_and_the_request_sent_once_more(
    epic: EpicFhirConnector, sandbox: Any
) -> None:
    epic.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    sandbox.reset()  # the stand-in forgets every token it issued (as an EHR revoking or expiring them)
    [outcome] = epic.push("observations", "identifier", [biomarker(2, "hba1c", 5.2, "%", user_id=2)])
    assert outcome.error is None
    assert outcome.status == SyncStatus.CREATED
    paths = [r["path"] for r in sandbox.requests("fhir")]
    assert paths[:3] == ["/fhir/r4/Patient", "/fhir/oauth2/token", "/fhir/r4/Patient"]
    assert paths.count("/fhir/oauth2/token") == 1


def test_a_second_401_is_an_auth_failure_after_one_new_token(endpoint: CapturingEndpoint) -> None:
    endpoint.answer("POST", "/token", 200, {"access_token": "t", "token_type": "Bearer", "expires_in": 3600})
    endpoint.answer("GET", "/fhir/metadata", 401, {"resourceType": "OperationOutcome", "issue": []})
    base = f"{endpoint.url}/fhir"
    client = SmartClient(
        local_mode.EPIC_CLIENT_ID, local_mode.EPIC_KEY_ID, SecretStr(local_mode.local_private_key_pem())
    )
    auth = SmartBackendAuth(
        VendorHttp("epic_fhir", base, table=TOKEN_TABLE), base, client, token_url=f"{endpoint.url}/token"
    )
    epic = EpicFhirConnector(VendorHttp("epic_fhir", base, auth=auth, table=TABLE))
    try:
        with pytest.raises(AuthError) as refused:
            epic.test_connection()
    finally:
        epic.close()
    assert refused.value.status == 401
    assert [(r.method, r.path) for r in endpoint.take()] == [
        ("POST", "/token"),
        ("GET", "/fhir/metadata"),
        ("POST", "/token"),
        ("GET", "/fhir/metadata"),
    ]


def test_a_token_endpoint_refusing_the_registration_is_an_auth_failure(endpoint: CapturingEndpoint) -> None:
    endpoint.answer("POST", "/token", 400, {"error": "invalid_scope"})
    base = f"{endpoint.url}/fhir"
    client = SmartClient(
        local_mode.EPIC_CLIENT_ID, local_mode.EPIC_KEY_ID, SecretStr(local_mode.local_private_key_pem())
    )
    auth = SmartBackendAuth(
        VendorHttp("epic_fhir", base, table=TOKEN_TABLE), base, client, token_url=f"{endpoint.url}/token"
    )
    with pytest.raises(AuthError) as refused:
        auth.access_token()
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (422, "code-invalid", SyncStatus.FAILED),
        (412, "duplicate", SyncStatus.FAILED),
        (409, "lock-error", SyncStatus.DEFERRED),  # a transient issue type: offered again
        (400, "throttled", SyncStatus.DEFERRED),
        (503, None, SyncStatus.DEFERRED),
        (429, None, SyncStatus.DEFERRED),
    ],
)
def test_a_refused_write_is_classified_by_the_error_table(
    status: int, code: str | None, expected: SyncStatus
) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]}
    delivery = delivery_of(status, outcome if code else None)
    assert delivery.status == expected
    assert delivery.error == f"http {status}" + (f" {code}" if code else "")


def test_the_error_table_names_the_refusals_the_writes_read() -> None:
    assert TABLE.expect("refused") == frozenset({400, 404, 409, 410, 412, 422})
    assert TABLE.action(401) is Action.AUTH and TABLE.action(403) is Action.AUTH
    assert TOKEN_TABLE.action(400) is Action.AUTH


def test_the_connection_test_reads_the_capability_statement(epic: EpicFhirConnector, sandbox: Any) -> None:
    check = epic.test_connection()
    assert check.ok and "FHIR 4.0.1" in check.detail and "transaction yes" in check.detail
    assert [r["path"] for r in sandbox.requests("fhir")] == [
        "/fhir/r4/.well-known/smart-configuration",
        "/fhir/oauth2/token",
        "/fhir/r4/metadata",
    ]


def test_erasure_keeps_medical_records(epic: EpicFhirConnector, sandbox: Any) -> None:
    outcome = epic.erase(Person(user_id=9, email="a@example.com"))
    assert (outcome.record_key, outcome.status, outcome.error) == (
        "user:9",
        SyncStatus.SKIPPED,
        ERASURE_DECISION,
    )
    assert sandbox.requests("fhir") == []


def test_the_mapping_file_feeds_the_connector(epic: EpicFhirConnector, sandbox: Any) -> None:
    """The frame extract builds for biomarker.updated, through the YAML mapping, into Observations."""
    frame = pd.DataFrame(
        {
            "event.id": ["e1", "e2"],
            "user.id": [5, 5],
            "user.first_name": [" Ada ", " Ada "],
            "user.last_name": ["Doe", "Doe"],
            "user.date_of_birth": [date(1980, 2, 3)] * 2,
            "user.sex": ["female", "female"],
            "biomarker.id": [31.0, 32.0],  # float after the left join in extract
            "biomarker.user_id": [5, 5],
            "user.mrn": [None, None],
            "biomarker.name": ["glucose", "ferritin"],
            "biomarker.loinc_code": ["2345-7", "2276-4"],
            "biomarker.value": [5.2, 80.0],
            "biomarker.value_decimals": [None, 0],
            "biomarker.unit": ["mmol/L", "ng/mL"],
            "biomarker.reference_low": [3.9, None],
            "biomarker.reference_high": [5.5, None],
            "biomarker.observed_at": [pd.Timestamp("2024-05-01 08:30:00")] * 2,
            "biomarker.updated_at": [pd.Timestamp("2024-05-01 10:00:00")] * 2,
        }
    )
    records = to_records(apply_mapping(load_mapping(MAPPING), frame))
    assert set(records[0].fields) == {
        "identifier",
        "biomarker_name",
        "value",
        "value_decimals",
        "unit",
        "reference_low",
        "reference_high",
        "effective",
        "recorded_at",
        "patient.mrn",
        "patient.family",
        "patient.given",
        "patient.birth_date",
        "patient.gender",
    }
    outcomes = epic.push("observations", "identifier", records)
    assert [o.status for o in outcomes] == [SyncStatus.CREATED, SyncStatus.CREATED]
    glucose = next(
        o for o in sandbox.objects("fhir", "Observation") if o["identifier"][0]["value"] == "biomarker-31"
    )
    assert glucose["valueQuantity"]["value"] == 94 and glucose["effectiveDateTime"] == "2024-05-01T08:30:00Z"
    assert glucose["interpretation"][0]["coding"][0]["code"] == "N"  # 5.2 mmol/L, range 3.9-5.5
    [patient] = sandbox.objects("fhir", "Patient")
    assert (patient["birthDate"], patient["gender"]) == ("1980-02-03", "female")


# --------------------------------------------------------------------------- the sandbox server itself


def bearer(epic: EpicFhirConnector) -> dict[str, str]:
    auth = epic.http.session.auth
    assert isinstance(auth, SmartBackendAuth)
    return {"Authorization": f"Bearer {auth.access_token()}", "Content-Type": "application/fhir+json"}


def test_the_sandbox_requires_a_bearer_token(sandbox: Any, sandbox_url: str) -> None:
    refused = requests.get(f"{sandbox_url}/fhir/r4/Patient", timeout=10)
    assert refused.status_code == 401
    assert refused.json()["issue"][0]["code"] == "login"
    metadata = requests.get(f"{sandbox_url}/fhir/r4/metadata", timeout=10)
    assert metadata.status_code == 200 and metadata.headers["content-type"].startswith(
        "application/fhir+json"
    )
    statement = CapabilityStatement.model_validate(metadata.json())
    assert {i.code for i in statement.rest[0].interaction} == {"transaction", "batch"}  # type: ignore[index, union-attr]


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        (
            {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "33747003"}]}},
            422,
            "code-invalid",
        ),
        ({"valueQuantity": {"value": 90, "unit": "mg/dL"}}, 422, "required"),
        ({"subject": {"reference": "Patient/999999"}}, 422, "not-found"),
        ({"status": "done"}, 422, "code-invalid"),
        ({"valueQuantity": {"value": "ninety"}}, 400, "structure"),
    ],
)
def test_the_sandbox_validates_observations_like_a_server(
    epic: EpicFhirConnector, sandbox: Any, sandbox_url: str, change: dict[str, Any], status: int, code: str
) -> None:
    epic.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    [stored] = sandbox.objects("fhir", "Observation")
    resource = {**{k: v for k, v in stored.items() if k not in ("id", "meta", "identifier")}, **change}
    answer = requests.post(
        f"{sandbox_url}/fhir/r4/Observation", json=resource, headers=bearer(epic), timeout=10
    )
    assert answer.status_code == status
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == code
    assert len(sandbox.objects("fhir", "Observation")) == 1


def test_a_refused_transaction_leaves_nothing_behind(
    epic: EpicFhirConnector, sandbox: Any, sandbox_url: str
) -> None:
    epic.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    [stored] = sandbox.objects("fhir", "Observation")
    good = {k: v for k, v in stored.items() if k not in ("id", "meta", "identifier")}
    bad = {**good, "subject": {"reference": "Patient/404404"}}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": r, "request": {"method": "POST", "url": "Observation"}} for r in (good, bad)],
    }
    answer = requests.post(f"{sandbox_url}/fhir/r4", json=bundle, headers=bearer(epic), timeout=10)
    assert answer.status_code == 422
    assert answer.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.subject"]
    assert len(sandbox.objects("fhir", "Observation")) == 1


# --------------------------------------------------------------------------- corrections, patients, panels


def held(sandbox: Any, identifier: str) -> list[dict[str, Any]]:
    return [o for o in sandbox.objects("fhir", "Observation") if o["identifier"][0]["value"] == identifier]


def test_a_changed_value_is_a_conditional_update_with_status_corrected(
    epic: EpicFhirConnector, sandbox: Any
) -> None:
    [first] = epic.push("observations", "identifier", [biomarker(1, "glucose", 76, "mg/dL", low=70, high=99)])
    [again] = epic.push("observations", "identifier", [biomarker(1, "glucose", 76, "mg/dL", low=70, high=99)])
    assert (first.status, again.status) == (SyncStatus.CREATED, SyncStatus.UNCHANGED)
    [changed] = epic.push(
        "observations", "identifier", [biomarker(1, "glucose", 126, "mg/dL", low=70, high=99)]
    )
    assert changed.status == SyncStatus.UPDATED and changed.remote_id == first.remote_id
    [stored] = held(sandbox, "biomarker-1")
    assert stored["status"] == "corrected" and stored["valueQuantity"]["value"] == 126
    assert stored["interpretation"][0]["coding"][0]["code"] == "H" and stored["meta"]["versionId"] == "2"
    bundle = [b["body"] for b in sandbox.bodies("fhir") if b["path"] == "/fhir/r4"][-1]
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "PUT", "url": "Observation?identifier=urn:ennu:biomarker|biomarker-1"}
    ]
    assert posts(sandbox, "/fhir/r4") == 2  # the create and the correction; the unchanged cost no write


def test_the_sandbox_answers_a_conditional_update_201_200_and_412(
    epic: EpicFhirConnector, sandbox: Any, sandbox_url: str
) -> None:
    epic.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    [stored] = sandbox.objects("fhir", "Observation")
    resource = {k: v for k, v in stored.items() if k not in ("id", "meta")}
    url = f"{sandbox_url}/fhir/r4/Observation"

    def put(identifier: str, body: dict[str, Any]) -> requests.Response:
        return requests.put(
            url,
            params={"identifier": f"urn:ennu:biomarker|{identifier}"},
            json=body,
            headers=bearer(epic),
            timeout=10,
        )

    fresh = {**resource, "identifier": [{"system": "urn:ennu:biomarker", "value": "biomarker-9"}]}
    assert put("biomarker-9", fresh).status_code == 201  # no match: created
    updated = put("biomarker-1", {**resource, "status": "corrected"})
    assert updated.status_code == 200 and updated.json()["id"] == stored["id"]
    assert updated.json()["meta"]["versionId"] == "2"
    twin = {**resource, "identifier": [{"system": "urn:ennu:biomarker", "value": "biomarker-9"}]}
    requests.post(url, json=twin, headers=bearer(epic), timeout=10)  # a second biomarker-9, unconditionally
    refused = put("biomarker-9", fresh)
    assert refused.status_code == 412 and refused.json()["issue"][0]["code"] == "duplicate"
    assert len(sandbox.objects("fhir", "Observation")) == 3


def test_a_refused_transaction_undoes_its_updates_too(
    epic: EpicFhirConnector, sandbox: Any, sandbox_url: str
) -> None:
    epic.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    [stored] = sandbox.objects("fhir", "Observation")
    good = {k: v for k, v in stored.items() if k not in ("id", "meta")}
    changed = {**good, "status": "corrected", "valueQuantity": {**good["valueQuantity"], "value": 120}}
    bad = {**good, "subject": {"reference": "Patient/404404"}, "identifier": []}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": changed,
                "request": {"method": "PUT", "url": "Observation?identifier=urn:ennu:biomarker|biomarker-1"},
            },
            {"resource": bad, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    answer = requests.post(f"{sandbox_url}/fhir/r4", json=bundle, headers=bearer(epic), timeout=10)
    assert answer.status_code == 422
    [after] = sandbox.objects("fhir", "Observation")
    assert after["valueQuantity"]["value"] == 92 and after["meta"]["versionId"] == "1"


def add_patient(epic: EpicFhirConnector, identifiers: list[dict[str, str]]) -> str:
    body = {
        "resourceType": "Patient",
        "identifier": identifiers,
        "name": [{"family": "Roe", "given": ["Bo"]}],
    }
    created = epic.http.request(
        "POST", "Patient", data=json.dumps(body), headers={"Content-Type": "application/fhir+json"}
    ).json()
    return f"Patient/{created['id']}"


def test_a_patient_is_found_by_mrn_first_then_by_our_identifier(
    epic: EpicFhirConnector, sandbox: Any, clean_env: pytest.MonkeyPatch
) -> None:
    by_mrn = add_patient(epic, [{"system": MRN_SYSTEM, "value": "MRN-0001"}])
    by_ours = add_patient(epic, [{"system": "urn:ennu:user-id", "value": "2"}])
    clean_env.setenv("EPIC_MRN_SYSTEM", MRN_SYSTEM)
    clean_env.setenv("EPIC_CREATE_PATIENTS", "false")
    matching = connector()
    try:
        outcomes = matching.push(
            "observations",
            "identifier",
            [
                biomarker(1, "glucose", 92, "mg/dL", user_id=1, mrn="MRN-0001"),
                biomarker(2, "glucose", 93, "mg/dL", user_id=2, mrn=None),
            ],
        )
    finally:
        matching.close()
    assert [o.status for o in outcomes] == [SyncStatus.CREATED, SyncStatus.CREATED]
    subjects = {
        o["identifier"][0]["value"]: o["subject"]["reference"] for o in sandbox.objects("fhir", "Observation")
    }
    assert subjects == {"biomarker-1": by_mrn, "biomarker-2": by_ours}
    searches = [
        r["query"]
        for r in sandbox.requests("fhir")
        if r["method"] == "GET" and r["path"] == "/fhir/r4/Patient"
    ]
    # Person 1 (with an MRN) is looked up by the MRN, and found: never by our identifier. People are looked
    # up side by side, so the two people's searches may come in either order.
    assert [q for q in searches if "MRN-0001" in q] and not [q for q in searches if "user-id%7C1" in q]
    assert [q for q in searches if "user-id%7C2" in q]
    assert len(sandbox.objects("fhir", "Patient")) == 2  # nobody created


def test_a_person_whose_mrn_the_ehr_does_not_know_is_deferred_never_created(
    sandbox: Any, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("EPIC_MRN_SYSTEM", MRN_SYSTEM)  # creation stays on (the sandbox default)
    epic = connector()
    try:
        [outcome] = epic.push(
            "observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL", mrn="MRN-UNKNOWN")]
        )
    finally:
        epic.close()
    assert (outcome.status, outcome.error) == (SyncStatus.DEFERRED, "no patient with the MRN")
    assert outcome.not_before is not None
    assert sandbox.objects("fhir", "Patient") == [] and sandbox.objects("fhir", "Observation") == []


@pytest.mark.parametrize("first", ["blood_pressure_systolic", "blood_pressure_diastolic"])
def test_blood_pressure_halves_pushed_apart_become_one_panel(
    sandbox: Any, clean_env: pytest.MonkeyPatch, first: str
) -> None:
    now = datetime.now(UTC)
    systolic = biomarker(3, "blood_pressure_systolic", 128, "mm[Hg]", recorded=now)
    diastolic = biomarker(4, "blood_pressure_diastolic", 79, "mm[Hg]", recorded=now + timedelta(seconds=1))
    early, late = (systolic, diastolic) if first == "blood_pressure_systolic" else (diastolic, systolic)
    partners = Partners(early)  # the host has only the first half so far
    epic = connector(partners=partners)
    try:
        [waiting] = epic.push("observations", "identifier", [early])
        assert (waiting.status, waiting.error) == (SyncStatus.DEFERRED, WAITING)
        assert waiting.not_before is not None and waiting.not_before <= now + timedelta(minutes=15)
        assert sandbox.objects("fhir", "Observation") == []
        partners.records.append(late)  # the second half arrives a second later
        [panel] = epic.push("observations", "identifier", [late])
        [again] = epic.push("observations", "identifier", [early])  # the deferred half, offered again
    finally:
        epic.close()
    assert panel.status == SyncStatus.CREATED and again.status == SyncStatus.UNCHANGED
    assert panel.remote_id == again.remote_id
    [observation] = sandbox.objects("fhir", "Observation")
    assert observation["identifier"][0]["value"] == "biomarker-3-4"
    assert [c["valueQuantity"]["value"] for c in observation["component"]] == [128, 79]


def test_a_lone_half_is_deferred_until_the_window_ends_then_sent_alone(
    sandbox: Any, clean_env: pytest.MonkeyPatch
) -> None:
    recorded = datetime.now(UTC)
    clock = {"now": recorded}
    epic = connector(clock=lambda: clock["now"])
    epic.patients.clock = epic.clock
    half = biomarker(3, "blood_pressure_systolic", 128, "mm[Hg]", recorded=recorded)
    try:
        [waiting] = epic.push("observations", "identifier", [half])
        assert waiting.status == SyncStatus.DEFERRED
        assert waiting.not_before == recorded + timedelta(minutes=1)
        clock["now"] = recorded + timedelta(minutes=14, seconds=30)
        [last] = epic.push("observations", "identifier", [half])
        assert last.not_before == recorded + timedelta(minutes=15)  # the last offer: the window's end
        clock["now"] = recorded + timedelta(minutes=15)
        [alone] = epic.push("observations", "identifier", [half])
    finally:
        epic.close()
    assert alone.status == SyncStatus.CREATED
    [observation] = sandbox.objects("fhir", "Observation")
    assert observation["code"]["coding"][0]["code"] == "8480-6"
    assert observation["identifier"][0]["value"] == "biomarker-3"


def assessment(assessment_id: int, user_id: int = 1, **scores: float | None) -> Record:
    return Record(
        f"assessment:{assessment_id}",
        f"evt-a{assessment_id}",
        user_id,
        {
            "identifier": assessment_id,
            "assessment_type": "sleep",
            "effective": OBSERVED,
            "overall_score": 7.4,
            **{f"score.{k}": v for k, v in scores.items()},
            "patient.mrn": None,
            "patient.family": "Doe",
            "patient.given": "Ada",
            "patient.birth_date": "1980-02-03",
            "patient.gender": "female",
        },
    )


def test_an_assessment_is_one_survey_observation_coded_in_ennus_code_system(
    epic: EpicFhirConnector, sandbox: Any
) -> None:
    records = [assessment(12, sleep_quality=6.5, energy=8.0, stress=None)]
    [outcome] = epic.push("surveys", "identifier", records)
    assert outcome.status == SyncStatus.CREATED
    [survey] = sandbox.objects("fhir", "Observation")
    assert survey["identifier"] == [{"system": "urn:ennu:assessment", "value": "assessment-12"}]
    assert survey["category"][0]["coding"][0]["code"] == "survey"
    assert survey["code"]["coding"][0] == {
        "system": "urn:ennu:fhir:code-system:assessment-score",
        "code": "sleep",
        "display": "ENNU sleep assessment",
    }
    components = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in survey["component"]}
    assert set(components) == {"overall", "energy", "sleep_quality"}  # a category not scored is not sent
    assert components["overall"] == {
        "value": 7.4,
        "unit": "score",
        "system": "http://unitsofmeasure.org",
        "code": "{score}",
    }
    assert components["energy"]["value"] == 8 and survey["subject"]["reference"].startswith("Patient/")
    assert epic.push("surveys", "identifier", records)[0].status == SyncStatus.UNCHANGED


def test_assessment_observations_are_off_for_a_site_unless_it_turns_them_on(
    sandbox: Any, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("EPIC_ASSESSMENT_OBSERVATIONS", "false")
    epic = connector()
    try:
        [outcome] = epic.push("surveys", "identifier", [assessment(12, energy=8.0)])
    finally:
        epic.close()
    assert (outcome.status, outcome.error) == (SyncStatus.SKIPPED, SURVEYS_OFF)
    assert sandbox.requests("fhir") == []


# --------------------------------------------------------------------------- settings, objects, wiring


def test_every_epic_variable_is_a_typed_setting_and_a_bad_value_names_its_variable(
    clean_env: pytest.MonkeyPatch,
) -> None:
    defaults = EpicFhirSettings.load()
    assert (defaults.create_patients, defaults.assessment_observations) == (None, None)
    assert defaults.patient_identifiers == ("mrn", "ennu")
    assert str(EpicFhirSettings.model_fields["rate_limit"].default) == "6000/1h"
    documented = {variable for variable, _, _ in EpicFhirSettings.documented()}
    assert documented == set(EPIC_ENV) | {"EPIC_RATE_LIMIT", "EPIC_ASSESSMENT_IDENTIFIER_SYSTEM"}
    clean_env.setenv("EPIC_PATIENT_IDENTIFIERS", " ENNU, mrn ")
    clean_env.setenv("EPIC_BP_WAIT_SECONDS", "")  # empty is unset
    clean_env.setenv("EPIC_CREATE_PATIENTS", "false")
    clean_env.setenv("EPIC_PRIVATE_KEY_FILE", "/etc/ennu/epic.pem")
    loaded = EpicFhirSettings.load()
    assert loaded.patient_identifiers == ("ennu", "mrn") and loaded.bp_wait_seconds == 900
    assert loaded.private_key_file == Path("/etc/ennu/epic.pem")
    options = EpicOptions.from_settings(loaded, sandbox=True)
    assert options.create_patients is False and options.assessment_observations is True
    assert options.panel_window.wait == timedelta(minutes=15)
    for name, bad in [
        ("EPIC_BP_PAIR_SECONDS", "five"),
        ("EPIC_PATIENT_RECHECK_SECONDS", "-1"),
        ("EPIC_PATIENT_IDENTIFIERS", "mrn,ssn"),
        ("EPIC_PATIENT_IDENTIFIERS", "mrn,mrn"),
        ("EPIC_PATIENT_MATCH_DEMOGRAPHICS", "perhaps"),
        ("EPIC_RATE_LIMIT", "plenty"),
    ]:
        clean_env.setenv(name, bad)
        with pytest.raises(SettingsError) as refused:
            EpicFhirSettings.load()
        assert name in str(refused.value) and bad not in str(refused.value).replace(name, "")
        clean_env.delenv(name)


def test_a_key_file_counts_as_credentials(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert not EpicFhirConnector.has_credentials()
    clean_env.setenv("EPIC_PRIVATE_KEY_FILE", str(tmp_path / "epic.pem"))
    assert EpicFhirConnector.has_credentials()


def test_an_undeclared_object_is_refused_before_any_request(epic: EpicFhirConnector, sandbox: Any) -> None:
    with pytest.raises(UnsupportedObject):
        epic.push("patients", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    assert sandbox.requests("fhir") == []
    assert EpicFhirConnector.batch_sizes == {"observations": 100, "surveys": 100}
    [observations, surveys] = EpicFhirConnector.objects
    wire_names = {name.split(".", 1)[0] for name in biomarker(1, "glucose", 92, "mg/dL").fields}
    assert wire_names == observations.fields
    assert surveys.fields == {
        "identifier",
        "assessment_type",
        "effective",
        "overall_score",
        "score",
        "patient",
    }


def test_the_pipeline_hands_the_connector_its_reader_of_the_hosts_results(
    sandbox: Any, clean_env: pytest.MonkeyPatch
) -> None:
    from tasks.host_biomarkers import HostBiomarkers
    from tasks.push import connector_for

    built = connector_for("epic_fhir")
    assert isinstance(built, EpicFhirConnector) and isinstance(built.partners, HostBiomarkers)
    assert EpicFhirConnector.from_settings(get_settings(), rate_limited=False).partners is None
