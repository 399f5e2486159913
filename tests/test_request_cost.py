"""HTTP requests per 1,000 records, counted at the sandbox (vendor batch floors)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from ennu.settings import reload_settings
from flows.assessment_completed import assessment_completed
from tests.factories import person_with_assessment

pytestmark = pytest.mark.usefixtures("prefect_server")
REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


@pytest.fixture()
def crm_and_marketing_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The routing table with only HubSpot and Mailchimp on: this test counts their requests alone."""
    copy = tmp_path / "mappings"
    shutil.copytree(REPO_MAPPINGS, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    routing = copy / "routing.yaml"
    text = routing.read_text()
    for name in ("ga4", "zapier"):
        text = text.replace(f"  {name}: {{enabled: true", f"  {name}: {{enabled: false")
    routing.write_text(text)
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(copy))
    reload_settings()


def test_thousand_records_cost_at_most_ten_hubspot_and_two_mailchimp_requests(
    sqlite_database: str, sandbox: Any, crm_and_marketing_only: None
) -> None:
    event_ids = [person_with_assessment()[2] for _ in range(1000)]

    assessment_completed(event_ids=event_ids)

    assert len(sandbox.objects("hubspot", "contacts")) == 1000
    assert len(sandbox.objects("mailchimp", "members")) == 1000
    assert len(sandbox.requests("hubspot")) <= 10
    assert len(sandbox.requests("mailchimp")) <= 2
    assert sandbox.requests("ga4") == [] and sandbox.requests("zapier") == []
