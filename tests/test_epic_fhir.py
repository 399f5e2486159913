"""The Epic FHIR connector against the sandbox FHIR server: transactions, idempotency, patients, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pandas as pd
import pytest
import requests
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from connectors.base import Person, Record
from connectors.epic_fhir import ERASURE_DECISION, Capabilities, EpicFhirConnector
from connectors.http import RetryableError
from connectors.smart_auth import SmartBackendAuth
from ennu.models import SyncStatus
from ennu.settings import get_settings
from mappings.frame import apply_mapping
from mappings.loader import load_mapping
from tasks.push import to_records

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
)


def biomarker(biomarker_id: int, name: str, value: float, unit: str, user_id: int = 1) -> Record:
    return Record(
        f"biomarker:{biomarker_id}",
        f"evt-{biomarker_id}",
        user_id,
        {
            "identifier": biomarker_id,
            "biomarker_name": name,
            "value": value,
            "unit": unit,
            "reference_low": None,
            "reference_high": None,
            "effective": OBSERVED,
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


@pytest.fixture()
def epic(sandbox: Any, clean_env: pytest.MonkeyPatch) -> Iterator[EpicFhirConnector]:
    connector = EpicFhirConnector.from_settings(get_settings(), rate_limited=False)
    yield connector
    connector.close()


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
    assert posts(sandbox, "/fhir/r4") == 2
    assert len(sandbox.objects("fhir", "Observation")) == 7
    # patients are looked up once per connector, and the capability statement read once
    assert sum(1 for r in sandbox.requests("fhir") if r["path"] == "/fhir/r4/Patient") == 4
    assert sum(1 for r in sandbox.requests("fhir") if r["path"] == "/fhir/r4/metadata") == 1


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
        "value": 97.0,  # 2.5 mmol/L * 38.67
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
        SyncStatus.REJECTED,
    ]
    assert "no LOINC entry" in (outcomes[1].error or "")
    assert outcomes[2].error == "no exact conversion of glucose from g/L to mg/dL"
    assert outcomes[3].error == "blood pressure needs both systolic and diastolic"
    assert len(sandbox.objects("fhir", "Observation")) == 1


def test_a_patient_is_found_by_identifier_and_never_created_twice(
    epic: EpicFhirConnector, sandbox: Any
) -> None:
    epic.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    fresh = EpicFhirConnector.from_settings(get_settings(), rate_limited=False)
    try:
        fresh.push("observations", "identifier", [biomarker(2, "hba1c", 5.1, "%")])
    finally:
        fresh.close()
    assert len(sandbox.objects("fhir", "Patient")) == 1
    assert posts(sandbox, "/fhir/r4/Patient") == 1
    subjects = {o["subject"]["reference"] for o in sandbox.objects("fhir", "Observation")}
    assert len(subjects) == 1


def test_without_patient_creation_an_unknown_person_fails(
    sandbox: Any, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("EPIC_CREATE_PATIENTS", "false")
    connector = EpicFhirConnector.from_settings(get_settings(), rate_limited=False)
    try:
        [outcome] = connector.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    finally:
        connector.close()
    assert (outcome.status, outcome.error) == (SyncStatus.FAILED, "no patient with the host user id")
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
    connector = EpicFhirConnector.from_settings(get_settings(), rate_limited=False)
    try:
        [outcome] = connector.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    finally:
        connector.close()
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
        epic.http, epic.options, capabilities=Capabilities(transaction=False, conditional_create=True)
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
        epic.http, epic.options, capabilities=Capabilities(transaction=False, conditional_create=False)
    )
    records = [biomarker(1, "glucose", 92, "mg/dL"), biomarker(2, "hba1c", 5.2, "%")]
    assert [o.status for o in plain.push("observations", "identifier", records)] == [SyncStatus.CREATED] * 2
    assert [o.status for o in plain.push("observations", "identifier", records)] == [SyncStatus.UNCHANGED] * 2
    assert posts(sandbox, "/fhir/r4/Observation") == 2
    searches = [
        r for r in sandbox.requests("fhir") if r["method"] == "GET" and r["path"] == "/fhir/r4/Observation"
    ]
    assert len(searches) == 4 and "identifier=urn%3Aennu%3Abiomarker%7Cbiomarker-1" in searches[0]["query"]


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


def test_a_transient_server_failure_raises_for_a_retry(epic: EpicFhirConnector, sandbox: Any) -> None:
    epic.capabilities()
    epic.push("observations", "identifier", [biomarker(1, "glucose", 92, "mg/dL")])
    sandbox.fail("fhir", "status", status=503, count=1)
    with pytest.raises(RetryableError) as raised:
        epic.push("observations", "identifier", [biomarker(2, "hba1c", 5.2, "%")])
    assert raised.value.reason == "http 503"
    assert epic.push("observations", "identifier", [biomarker(2, "hba1c", 5.2, "%")])[0].status == (
        SyncStatus.CREATED
    )


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
            "biomarker.name": ["glucose", "ferritin"],
            "biomarker.loinc_code": ["2345-7", "2276-4"],
            "biomarker.value": [5.2, 80.0],
            "biomarker.unit": ["mmol/L", "ng/mL"],
            "biomarker.reference_low": [3.9, None],
            "biomarker.reference_high": [5.5, None],
            "biomarker.observed_at": [pd.Timestamp("2024-05-01 08:30:00")] * 2,
        }
    )
    records = to_records(apply_mapping(load_mapping(MAPPING), frame))
    assert set(records[0].fields) == {
        "identifier",
        "biomarker_name",
        "value",
        "unit",
        "reference_low",
        "reference_high",
        "effective",
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
    assert (
        glucose["valueQuantity"]["value"] == 94.0 and glucose["effectiveDateTime"] == "2024-05-01T08:30:00Z"
    )
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
