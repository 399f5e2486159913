"""Zapier triggers: every host event type is one (route, mapping, sample) or deliberately none, and each
reaches its subscribed hooks end to end with ids and summary fields only."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from connectors.zapier.triggers import NOT_TRIGGERS, triggers
from ennu.db import session_scope
from ennu.events import EVENT_TYPES, HOST_EVENT_TYPES
from ennu.models import Biomarker, SyncLog
from ennu.pseudonyms import person_pseudonym
from ennu.settings import reload_settings
from flows.registry import EVENT_FLOWS
from intake.zapier import router
from mappings import load_all_mappings
from mappings.routing import load_routing
from tests.factories import add_appointment, add_assessment, add_event, add_goal, add_person

REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
ZAPIER_TOKEN = {"X-Zapier-Token": "zap-secret-token"}
# What no Zapier payload may hold (the factories' and the biomarker's values below).
NEVER_SENT = ("example.com", "Ada", "Tester", "555", "Lose 5 kg", "body_weight", "82.5", "kg", "29463-7")


@pytest.fixture()
def api(sqlite_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("ZAPIER_TOKEN", "zap-secret-token")
    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client:
        yield client


def test_every_host_event_type_is_a_trigger_with_route_mapping_and_sample_or_deliberately_none(
    api: TestClient,
) -> None:
    routing = load_routing(REPO_MAPPINGS / "routing.yaml", local=True)
    mappings = load_all_mappings(REPO_MAPPINGS)
    listed = triggers(REPO_MAPPINGS)
    assert api.get("/zapier/triggers", headers=ZAPIER_TOKEN).json() == listed
    for event_type in HOST_EVENT_TYPES:
        routed = [s.connector for s in routing.routes_for(event_type)]
        sample = api.get(f"/zapier/sample/{event_type}", headers=ZAPIER_TOKEN)
        if event_type in NOT_TRIGGERS:
            assert event_type not in listed and "zapier" not in routed
            assert (event_type, "zapier") not in mappings and sample.status_code == 404
            continue
        assert event_type in listed and routed.count("zapier") == 1, event_type
        mapping = mappings[(event_type, "zapier")]
        assert sample.status_code == 200, event_type
        [payload] = sample.json()
        assert payload["id"] == "evt-sample-0001" and payload["event"] == event_type
        assert payload["user_id"] == person_pseudonym(1)
        flat = _flatten(payload)
        assert set(flat) == set(mapping.fields), event_type  # every field, each with a sample value
        assert all(value is not None for value in flat.values()), (event_type, flat)
    assert set(NOT_TRIGGERS) <= set(HOST_EVENT_TYPES)  # no stale reason for a type that is gone
    assert not any(EVENT_TYPES[t].origin != "host" for t in listed)


def _flatten(payload: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@pytest.mark.parametrize(
    "event", ["user.deletion_requested", "user.consent_changed", "subscription.changed", "user.<b>x</b>"]
)
def test_a_subscription_to_what_is_not_a_trigger_is_refused_without_repeating_it(
    api: TestClient, event: str
) -> None:
    body = {"target_url": "https://hooks.zapier.com/hooks/catch/1/abc/", "event": event}

    answer = api.post("/zapier/subscribe", json=body, headers=ZAPIER_TOKEN)

    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert detail == "not a Zapier trigger; the triggers are " + ", ".join(triggers(REPO_MAPPINGS))
    assert event not in answer.text and "hooks/catch" not in answer.text
    assert api.get(f"/zapier/sample/{event}", headers=ZAPIER_TOKEN).status_code == 404


def test_the_trigger_list_follows_the_mapping_files(
    api: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "mappings"
    shutil.copytree(REPO_MAPPINGS, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (copy / "user.login" / "zapier.yaml").unlink()
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(copy))
    reload_settings()
    try:
        body = {"target_url": "https://hooks.zapier.com/hooks/catch/1/abc/", "event": "user.login"}
        assert api.post("/zapier/subscribe", json=body, headers=ZAPIER_TOKEN).status_code == 422
        assert "zapier" not in [
            s.connector for s in load_routing(copy / "routing.yaml").routes_for("user.login")
        ]
        assert "user.login" not in api.get("/zapier/triggers", headers=ZAPIER_TOKEN).json()
        body["event"] = "user.registered"
        assert api.post("/zapier/subscribe", json=body, headers=ZAPIER_TOKEN).status_code == 201
    finally:
        monkeypatch.delenv("ENNU_MAPPINGS_DIR")
        reload_settings()


# --------------------------------------------------------------------------- end to end, every trigger


def _weight(user_id: int) -> int:
    with session_scope() as session:
        row = Biomarker(
            user_id=user_id,
            name="body_weight",
            loinc_code="29463-7",
            value=82.5,
            unit="kg",
            observed_at=datetime(2026, 11, 2, 7, 30, tzinfo=UTC),
        )
        session.add(row)
        session.flush()
        return row.id


def _completed_goal(user_id: int) -> int:
    return add_goal(user_id, kind="lower_cholesterol", status="completed")


def _progressed_goal(user_id: int) -> int:
    return add_goal(user_id, kind="improve_sleep", progress=60)


def _appointment(status: str) -> Callable[[int], int]:
    return lambda user_id: add_appointment(user_id, datetime(2026, 12, 3, 15, 0, tzinfo=UTC), status=status)


# event type -> (make the resource of a person, its part of the payload but the envelope)
RESOURCES: dict[str, tuple[Callable[[int], int | None], dict[str, Any]]] = {
    "user.registered": (lambda _: None, {}),
    "user.login": (lambda _: None, {}),
    "user.clinic_changed": (lambda _: None, {}),
    "assessment.completed": (
        add_assessment,
        {"assessment": {"type": "sleep", "completed_on": "2026-11-01", "overall_score": 7.4}},
    ),
    "biomarker.updated": (_weight, {"biomarker": {"observed_on": "2026-11-02", "kind": "vital"}}),
    "health_goal.created": (add_goal, {"health_goal": {"category": "fitness", "due_on": "2027-06-01"}}),
    "health_goal.completed": (
        _completed_goal,
        {"health_goal": {"category": "clinical", "completed_on": "2026-11-02"}},
    ),
    "appointment.scheduled": (_appointment("scheduled"), {"appointment": {"on": "2026-12-03"}}),
    "appointment.cancelled": (_appointment("cancelled"), {"appointment": {"on": "2026-12-03"}}),
    "health_goal.progressed": (
        _progressed_goal,
        {"health_goal": {"category": "wellbeing", "progress_band": "50-74"}},
    ),
}


def test_the_end_to_end_cases_cover_every_trigger() -> None:
    assert sorted(RESOURCES) == triggers(REPO_MAPPINGS)


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("event_type", sorted(RESOURCES))
def test_each_trigger_reaches_its_hooks_once_with_ids_and_summary_fields_only(
    database: str, sandbox: Any, sandbox_url: str, api: TestClient, event_type: str
) -> None:
    for hook, subscribed in (("hook-this", event_type), ("hook-other", "user.login")):
        if hook == "hook-other" and event_type == "user.login":
            subscribed = "user.registered"
        answer = api.post(
            "/zapier/subscribe",
            json={"target_url": f"{sandbox_url}/zapier/hooks/{hook}", "event": subscribed},
            headers=ZAPIER_TOKEN,
        )
        assert answer.status_code == 201
    user_id = add_person(marketing=False)  # Zapier needs no marketing consent
    make, resource_part = RESOURCES[event_type]
    resource = make(user_id)
    event_id = add_event(event_type, user_id, resource)
    flow = EVENT_FLOWS[event_type]

    flow(event_ids=[event_id])
    flow(event_ids=[event_id])  # settled: never posted twice

    payloads = [p for p in sandbox.objects("zapier", "payloads") if p["hook_id"] == "hook-this"]
    kind = EVENT_TYPES[event_type].resource_kind
    expected: dict[str, Any] = {
        "id": event_id,  # the delivery id a Zap de-duplicates on: the host event id, stable on re-sends
        "event": event_type,
        "user_id": person_pseudonym(user_id),
        **resource_part,
    }
    if event_type != "assessment.completed":
        expected["occurred_on"] = "2026-11-03"
    if kind is not None:
        expected[kind] = {**expected.get(kind, {}), "id": resource}
    assert [p["payload"] for p in payloads] == [expected]
    assert [p for p in sandbox.objects("zapier", "payloads") if p["hook_id"] == "hook-other"] == []
    assert not [word for word in NEVER_SENT if word in str(payloads)]
    with session_scope() as session:
        zapier_log = session.execute(
            select(SyncLog.status, SyncLog.remote_id).where(SyncLog.connector == "zapier")
        ).all()
    assert [tuple(row) for row in zapier_log] == [("created", "1 hooks")]
