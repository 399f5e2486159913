"""`biomarker-updated` end to end: Observations at the FHIR stand-in, panels from the host, corrections,
critical results to the care team's channels, and what the hub says when no channel is configured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from sqlalchemy import select, update

from devtools.routing import routing_copy
from ennu.db import session_scope
from ennu.models import Biomarker, Delivery, OutboxEvent, SyncLog, User
from ennu.settings import reload_settings
from flows.biomarker_updated import biomarker_updated
from flows.drain import drain
from intake.app import create_app
from tests.factories import add_event, add_person, zone_at_local_hour

pytestmark = pytest.mark.usefixtures("prefect_server")
VIEWER = {"Authorization": "Bearer viewer-token"}
OBSERVED = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
NO_PROVIDER_CHANNEL = "critical results have no provider channel"


def add_result(
    user_id: int,
    name: str,
    loinc: str,
    value: float,
    unit: str,
    *,
    low: float | None = 70,
    high: float | None = 99,
    observed: datetime = OBSERVED,
) -> int:
    with session_scope() as session:
        row = Biomarker(
            user_id=user_id,
            name=name,
            loinc_code=loinc,
            value=value,
            unit=unit,
            reference_low=low,
            reference_high=high,
            observed_at=observed,
        )
        session.add(row)
        session.flush()
        return row.id


def add_pressure(user_id: int, name: str, value: float, observed: datetime = OBSERVED) -> int:
    loinc, low, high = ("8480-6", 90, 120) if name.endswith("systolic") else ("8462-4", 60, 80)
    return add_result(user_id, name, loinc, value, "mm[Hg]", low=low, high=high, observed=observed)


def sync_rows(connector: str) -> list[tuple[str, str, str | None]]:
    with session_scope() as session:
        rows = session.execute(
            select(SyncLog.record_key, SyncLog.status, SyncLog.error)
            .where(SyncLog.connector == connector)
            .order_by(SyncLog.id)
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def epic_delivery(event_id: str) -> str:
    """The state of the event's delivery to the EHR."""
    with session_scope() as session:
        return str(
            session.execute(
                select(Delivery.status).where(
                    Delivery.event_id == event_id, Delivery.integration == "epic_fhir"
                )
            ).scalar_one()
        )


def outbox_status(event_id: str) -> str:
    with session_scope() as session:
        event = session.get(OutboxEvent, event_id)
        assert event is not None
        return event.status


@pytest.fixture()
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("ENNU_VIEWER_TOKENS", "viewer-token")
    with TestClient(create_app()) as client:
        yield client


@pytest.fixture()
def no_provider_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    mappings = routing_copy(tmp_path / "mappings", disable=["slack", "teams"])
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(mappings))
    reload_settings()
    yield
    monkeypatch.delenv("ENNU_MAPPINGS_DIR")
    reload_settings()


def test_results_become_flagged_observations_and_a_critical_one_reaches_the_care_team_once(
    sqlite_database: str, sandbox: Any
) -> None:
    user_id = add_person(first_name="Quilla")
    with session_scope() as session:  # daytime where the person lives, so the SMS is not held back
        session.get(User, user_id).timezone = zone_at_local_hour(13)  # type: ignore[union-attr]
    normal = add_result(user_id, "glucose", "2345-7", 92, "mg/dL")
    critical = add_result(user_id, "glucose", "2345-7", 612, "mg/dL")
    events = [
        add_event("biomarker.updated", user_id, normal),
        add_event("biomarker.updated", user_id, critical),
    ]

    summary = biomarker_updated(event_ids=events)

    by_destination = {row["destination"]: row for row in summary}
    assert by_destination["epic_fhir/observations"]["created"] == 2
    observations = sandbox.objects("fhir", "Observation")
    assert len(observations) == 2
    assert {o["code"]["coding"][0]["system"] for o in observations} == {"http://loinc.org"}
    flags = {o["identifier"][0]["value"]: o["interpretation"][0]["coding"][0]["code"] for o in observations}
    assert flags == {f"biomarker-{normal}": "N", f"biomarker-{critical}": "HH"}
    # The care team: one notice per channel (both stand-ins are on in the sandbox), each its own delivery.
    for channel in ("slack", "teams"):
        (message,) = sandbox.bodies(channel)
        text = json.dumps(message["body"])
        assert "glucose" in text and "HH" in text and f"biomarker-{critical}" in text  # marker, flag, link
        assert "612" not in text and "Quilla" not in text and "Tester" not in text  # never the value or name
        assert by_destination[f"{channel}/messages"]["created"] == 1
    # Only the critical result takes the Twilio route (where: critical_biomarker); the SMS has no value.
    (sms,) = sandbox.objects("twilio", "messages")
    assert "612" not in str(sms) and "glucose" not in str(sms).lower()
    assert by_destination["twilio/messages"]["created"] == 1

    biomarker_updated(event_ids=events)  # again: nothing new at the EHR, no second notice
    assert len(sandbox.objects("fhir", "Observation")) == 2
    assert len(sandbox.bodies("slack")) == 1 and len(sandbox.bodies("teams")) == 1


@pytest.mark.parametrize("first", ["blood_pressure_systolic", "blood_pressure_diastolic"])
def test_blood_pressure_halves_as_two_events_a_second_apart_become_one_panel(
    database: str, sandbox: Any, first: str
) -> None:
    user_id = add_person()
    second = "blood_pressure_diastolic" if first == "blood_pressure_systolic" else "blood_pressure_systolic"
    values = {"blood_pressure_systolic": 128, "blood_pressure_diastolic": 79}
    early = add_pressure(user_id, first, values[first])
    early_event = add_event("biomarker.updated", user_id, early)

    biomarker_updated(event_ids=[early_event])  # the partner is not in the host yet
    assert sync_rows("epic_fhir")[-1] == (
        f"biomarker:{early}",
        "deferred",
        "blood pressure half waiting for its other half",
    )
    assert outbox_status(early_event) == "pending" and epic_delivery(early_event) == "deferred"
    assert sandbox.objects("fhir", "Observation") == []

    late = add_pressure(user_id, second, values[second], observed=OBSERVED + timedelta(seconds=1))
    late_event = add_event("biomarker.updated", user_id, late)
    biomarker_updated(event_ids=[late_event])
    drain()  # "retry everything now": the deferred half is offered again before its time

    [panel] = sandbox.objects("fhir", "Observation")
    assert panel["code"]["coding"][0]["code"] == "85354-9"
    assert [c["code"]["coding"][0]["code"] for c in panel["component"]] == ["8480-6", "8462-4"]
    assert [c["valueQuantity"]["value"] for c in panel["component"]] == [128, 79]
    statuses = {key: status for key, status, _ in sync_rows("epic_fhir")}  # the latest per record
    assert statuses == {f"biomarker:{early}": "unchanged", f"biomarker:{late}": "created"}
    assert outbox_status(early_event) == "done" and outbox_status(late_event) == "done"


def test_a_half_without_partner_is_deferred_then_sent_alone_after_the_window(
    sqlite_database: str, sandbox: Any
) -> None:
    user_id = add_person()
    systolic = add_pressure(user_id, "blood_pressure_systolic", 131)
    event = add_event("biomarker.updated", user_id, systolic)

    biomarker_updated(event_ids=[event])
    assert sync_rows("epic_fhir")[-1][1] == "deferred" and epic_delivery(event) == "deferred"
    assert sandbox.objects("fhir", "Observation") == []

    with session_scope() as session:  # as if the window (15 minutes from when the host recorded it) ended
        session.execute(
            update(Biomarker)
            .where(Biomarker.id == systolic)
            .values(updated_at=datetime.now(UTC) - timedelta(minutes=16))
        )
    drain()  # the deferred half's next offer

    [alone] = sandbox.objects("fhir", "Observation")
    assert alone["code"]["coding"][0]["code"] == "8480-6" and alone["valueQuantity"]["value"] == 131
    assert alone["interpretation"][0]["coding"][0]["code"] == "H"
    assert sync_rows("epic_fhir")[-1] == (f"biomarker:{systolic}", "created", None)
    assert outbox_status(event) == "done"


def test_a_corrected_value_replaces_the_observation_with_status_corrected(
    database: str, sandbox: Any
) -> None:
    user_id = add_person()
    result = add_result(user_id, "glucose", "2345-7", 76, "mg/dL")
    biomarker_updated(event_ids=[add_event("biomarker.updated", user_id, result, event_id="evt-first")])
    with session_scope() as session:  # the lab corrects it, and the host announces it again
        session.execute(update(Biomarker).where(Biomarker.id == result).values(value=126))
    biomarker_updated(event_ids=[add_event("biomarker.updated", user_id, result, event_id="evt-corrected")])

    [observation] = sandbox.objects("fhir", "Observation")
    assert observation["status"] == "corrected" and observation["valueQuantity"]["value"] == 126
    assert observation["interpretation"][0]["coding"][0]["code"] == "H"
    assert [status for _, status, _ in sync_rows("epic_fhir")] == ["created", "updated"]
    first_bundle = next(b["body"] for b in sandbox.bodies("fhir") if b["path"] == "/fhir/r4")
    assert first_bundle["entry"][0]["resource"]["valueQuantity"]["value"] == 76  # 76, never 76.0


def test_a_person_with_no_patient_match_is_deferred_with_a_reason_shown_in_the_status(
    sqlite_database: str, sandbox: Any, api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EPIC_CREATE_PATIENTS", "false")
    reload_settings()  # a new settings object: the connector is built again with the variable
    user_id = add_person()
    event = add_event("biomarker.updated", user_id, add_result(user_id, "hba1c", "4548-4", 5.4, "%"))
    biomarker_updated(event_ids=[event])
    assert sync_rows("epic_fhir")[-1][1:] == ("deferred", "no patient match")
    assert outbox_status(event) == "pending" and epic_delivery(event) == "deferred"
    [epic] = [
        s for s in api.get("/integrations/status", headers=VIEWER).json() if s["integration"] == "epic_fhir"
    ]
    assert epic["deferred_24h"] == {"no patient match": 1} and epic["warnings"] == []


def test_a_critical_result_with_no_provider_channel_is_said_and_alerts_the_operators(
    sqlite_database: str, sandbox: Any, api: TestClient, no_provider_channel: None
) -> None:
    health = api.get("/integrations/health", headers=VIEWER).json()
    assert health == {"status": "degraded", "problems": [NO_PROVIDER_CHANNEL]}
    statuses = {s["integration"]: s for s in api.get("/integrations/status", headers=VIEWER).json()}
    assert statuses["epic_fhir"]["warnings"] == [NO_PROVIDER_CHANNEL]

    user_id = add_person()
    critical = add_result(user_id, "glucose", "2345-7", 35, "mg/dL")
    started = datetime.now(UTC)
    biomarker_updated(event_ids=[add_event("biomarker.updated", user_id, critical)])

    assert sandbox.bodies("slack") == [] and sandbox.bodies("teams") == []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["ops-alert"])))
        alerts = [r for r in runs if r.start_time and r.start_time >= started]
        assert len(alerts) == 1 and alerts[0].parameters["kind"] == "no-provider-channel"
        assert "35" not in str(alerts[0].parameters)
        assert alerts[0].state is not None and alerts[0].state.is_completed()


def test_with_a_provider_channel_the_health_check_is_ok(sqlite_database: str, api: TestClient) -> None:
    assert api.get("/integrations/health", headers=VIEWER).json() == {"status": "ok", "problems": []}
