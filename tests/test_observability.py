"""What a data engineer and an operator see: run states, the dashboard and its charts, /metrics, readiness
and threshold alerts — on real databases, the Prefect harness and the sandbox's stand-ins."""

from __future__ import annotations

import io
import re
import socket
from collections import Counter
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.variables import Variable
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, insert, select

from ennu import heartbeats
from ennu.charts import PNG_SIGNATURE, chart_png
from ennu.db import session_scope
from ennu.models import SyncLog, utcnow
from ennu.performance import figures
from ennu.settings import reload_settings
from flows.assessment_completed import assessment_completed
from flows.dashboard import ARTIFACT_KEY, integrations_dashboard
from intake.app import create_app
from tasks.run_state import WITH_REJECTIONS
from tasks.status import integration_names
from tasks.thresholds import SEEN_VARIABLE
from tests.factories import person_with_assessment

pytestmark = pytest.mark.usefixtures("prefect_server")
VIEWER = {"Authorization": "Bearer viewer-token"}


@pytest.fixture()
def api(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ENNU_VIEWER_TOKENS", "viewer-token")
    reload_settings()
    with TestClient(create_app()) as client:
        yield client


def latest_dashboard() -> Any:
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return artifact


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The dashboard's table rows by integration (the header and its rule left out)."""
    rows = [line.strip("|").split(" | ") for line in markdown.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows[1:]}


def test_the_dashboard_has_a_row_per_integration_png_charts_and_metrics_that_match_the_sync_log(
    database: str, sandbox: Any, api: TestClient
) -> None:
    events = [person_with_assessment()[2] for _ in range(2)]
    events.append(person_with_assessment(email="not-an-email")[2])
    state = assessment_completed(event_ids=events, return_state=True)
    assert state.is_completed() and state.name == WITH_REJECTIONS  # the runs list says it
    assert "hubspot/contacts 1" in (state.message or "")

    integrations_dashboard()
    artifact = latest_dashboard()
    rows = table_rows(str(artifact.data))
    assert set(rows) == set(integration_names())
    statuses = {s["integration"]: s for s in api.get("/integrations/status", headers=VIEWER).json()}
    hubspot = rows["hubspot"]
    assert hubspot[7:9] == ["3", "1"]  # 24 h records and errors: the rejection
    assert hubspot[12] == str(statuses["hubspot"]["p95_ms_24h"])  # the same figures at /integrations/status
    assert statuses["hubspot"]["error_rate_24h"] == pytest.approx(1 / 3, abs=1e-3)

    links = re.findall(r"!\[[a-z_0-9]+\]\(([^)]+)\)", str(artifact.data))
    # A chart for every integration with records in the week: those this batch reached.
    assert {re.search(r"charts/([a-z_0-9]+)\.png", link)[1] for link in links} == {  # type: ignore[index]
        name for name, s in statuses.items() if set(s["counts_24h"]) - {"skipped"}
    }
    for link in links:
        parts = urlsplit(link)
        png = api.get(f"{parts.path}?{parts.query}")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content.startswith(PNG_SIGNATURE)
        image = Image.open(io.BytesIO(png.content))
        image.verify()
        assert image.format == "PNG"
    assert api.get("/integrations/charts/hubspot.png").status_code == 401  # unsigned, no token
    assert api.get("/integrations/charts/hubspot.png?expires=1&sig=00").status_code == 401  # expired

    assert api.get("/metrics").status_code == 401
    exposition = api.get("/metrics", headers=VIEWER)
    assert exposition.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(exposition.text)}
    exposed = Counter(
        {
            (s.labels["integration"], s.labels["status"]): int(s.value)
            for s in families["ennu_deliveries"].samples
            if s.name == "ennu_deliveries_total"
        }
    )
    with session_scope() as session:
        logged = Counter(
            {
                (c, s): int(n)
                for c, s, n in session.execute(
                    select(SyncLog.connector, SyncLog.status, func.count()).group_by(
                        SyncLog.connector, SyncLog.status
                    )
                )
            }
        )
        timed = session.execute(
            select(func.count()).where(SyncLog.connector == "hubspot", SyncLog.duration_ms.is_not(None))
        ).scalar_one()
    assert exposed == logged and exposed[("hubspot", "rejected")] == 1
    counts = {
        s.labels["integration"]: s.value
        for s in families["ennu_delivery_duration_seconds"].samples
        if s.name == "ennu_delivery_duration_seconds_count"
    }
    assert counts["hubspot"] == timed > 0
    depth = {s.labels["integration"]: s.value for s in families["ennu_queue_depth"].samples}
    assert set(depth) == set(integration_names()) and depth["hubspot"] == 0
    assert "not-an-email" not in exposition.text + str(artifact.data)


def add_outcomes(connector: str, total: int, failed: int, minutes_ago: float = 10) -> None:
    at = utcnow() - timedelta(minutes=minutes_ago)
    rows = [
        {
            "connector": connector,
            "object": "contacts",
            "record_key": f"user:{n}",
            "status": "failed" if n < failed else "created",
            "error": "http 500" if n < failed else None,
            "attempt": 1,
            "duration_ms": 100 + n,
            "created_at": at,
        }
        for n in range(total)
    ]
    with session_scope() as session:
        session.execute(insert(SyncLog), rows)


def test_an_error_rate_over_the_threshold_alerts_once_and_one_at_it_never(
    database: str, sandbox: Any
) -> None:
    Variable.set(SEEN_VARIABLE, [], overwrite=True)
    add_outcomes("hubspot", 100, 1)  # 1 %: at the threshold, not over it
    add_outcomes("mailchimp", 50, 5)  # 10 %
    add_outcomes("stripe", 5, 5, minutes_ago=90)  # over, but more than an hour ago

    first = integrations_dashboard()
    second = integrations_dashboard()  # still over: no second alert

    assert (first["alerted"], second["alerted"]) == (1, 0)
    (notice,) = [str(body) for body in sandbox.bodies("slack")]
    assert "mailchimp" in notice and "10.0% of 50 records" in notice and "threshold 1.0%" in notice
    assert len(sandbox.bodies("teams")) == 1
    assert "over now: error-rate:mailchimp" in str(latest_dashboard().data).lower()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_ready_is_503_naming_the_check_without_prefect_or_a_live_worker_and_200_otherwise(
    sqlite_database: str, sandbox_url: str, api: TestClient
) -> None:
    assert api.get("/health").json() == {"status": "ok"}
    no_worker = api.get("/health/ready")
    assert no_worker.status_code == 503 and no_worker.json()["failing"] == ["delivery-worker"]

    heartbeats.beat("ready-test", warm=True)
    ready = api.get("/health/ready")
    assert ready.status_code == 200, ready.json()
    assert ready.json()["status"] == "ready" and ready.json()["failing"] == []

    down = f"http://127.0.0.1:{closed_port()}/api"
    with temporary_settings({PREFECT_API_URL: down}):
        unready = api.get("/health/ready")
    assert unready.status_code == 503 and unready.json()["failing"] == ["prefect-api"]
    assert "127.0.0.1" not in unready.text and "http" not in unready.text  # no address, no secret


def test_a_chart_is_drawn_again_only_when_what_it_shows_changed(sqlite_database: str) -> None:
    seen = figures(["slack"])["slack"]
    first = chart_png(seen)
    assert first.startswith(PNG_SIGNATURE)
    assert chart_png(figures(["slack"])["slack"]) is first  # the same days: the picture already drawn
    with session_scope() as session:
        session.execute(
            insert(SyncLog),
            [{"connector": "slack", "object": "message", "record_key": "user:1", "status": "created"}],
        )
    changed = figures(["slack"])["slack"]
    assert changed.days[-1].records == seen.days[-1].records + 1
    redrawn = chart_png(changed)
    assert redrawn is not first and redrawn != first
