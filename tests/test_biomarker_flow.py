"""`biomarker-updated` end to end: Observations in the sandbox FHIR server, one alert per critical result."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ennu.db import session_scope
from ennu.models import Biomarker, User
from ennu.settings import reload_settings
from flows.biomarker_updated import biomarker_updated
from tests.factories import add_event, add_person, zone_at_local_hour
from tests.routing_copy import routing_copy

pytestmark = pytest.mark.usefixtures("prefect_server")
REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


def add_result(user_id: int, name: str, loinc: str, value: float, unit: str) -> int:
    with session_scope() as session:
        row = Biomarker(
            user_id=user_id,
            name=name,
            loinc_code=loinc,
            value=value,
            unit=unit,
            reference_low=70,
            reference_high=99,
            observed_at=datetime(2026, 11, 2, 8, 0, tzinfo=UTC),
        )
        session.add(row)
        session.flush()
        return row.id


@pytest.fixture()
def slack_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(routing_copy(tmp_path / "mappings", enable=["slack"])))
    reload_settings()


def test_results_become_observations_and_a_critical_one_alerts_once(
    sqlite_database: str, sandbox: Any, slack_enabled: None
) -> None:
    user_id = add_person()
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
    messages = sandbox.objects("slack", "messages")
    assert len(messages) == 1
    assert "612" not in str(messages) and "Ada" not in str(messages)
    assert by_destination["slack/alerts"]["created"] == 1
    # Only the critical result takes the Twilio route (where: critical_biomarker); the SMS has no value.
    (sms,) = sandbox.objects("twilio", "messages")
    assert "612" not in str(sms) and "glucose" not in str(sms).lower()
    assert by_destination["twilio/messages"]["created"] == 1

    biomarker_updated(event_ids=events)  # again: nothing new at the EHR
    assert len(sandbox.objects("fhir", "Observation")) == 2
