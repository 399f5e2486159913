"""The hub against a Prefect server with basic auth on (PREFECT_SERVER_API_AUTH_STRING): with the client's
PREFECT_API_AUTH_STRING a flow run, its global rate limits, a Secret block, the intake's events, readiness
and `make up`'s readiness check all work; without it, or with a wrong one, the API answers 401 and readiness
says so."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.concurrency.sync import rate_limit
from prefect.context import _temporary_global_settings_context, get_settings_context
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from connectors.rate_limit import SLOTS_PER_REQUEST, RateLimit, forget_ensured_limits, limit_name
from connectors.request_rate import parse_rate
from devtools.launcher import deployment_registered
from ennu.prefect_api import prefect_api_headers
from ennu.secrets import forget_cached_secrets, read_secret
from flows.assessment_completed import assessment_completed
from intake.app import create_app
from tasks.readiness import prefect_api
from tests.engine_support import wait_for
from tests.factories import person_with_assessment
from tests.prefect_support import PrefectServer
from tests.tiers import e2e_fixture

AUTH_STRING = f"ennu-ops:{secrets.token_urlsafe(18)}"


@pytest.fixture(scope="module")
@e2e_fixture
def locked_prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` on SQLite in a temporary PREFECT_HOME, with basic auth on."""
    server = PrefectServer(
        tmp_path_factory.mktemp("locked-prefect") / "prefect",
        settings={"PREFECT_SERVER_API_AUTH_STRING": AUTH_STRING},
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextmanager
def client_of(server: PrefectServer, auth_string: str | None) -> Iterator[None]:
    """This process as a client of `server` with `auth_string` (None: none), for every thread: Prefect's
    event and log workers run on threads of their own (the harness does the same)."""
    _drain_prefect_workers()  # none of them may keep another server's address or credentials
    forget_ensured_limits()
    forget_cached_secrets()
    try:
        settings = {PREFECT_API_URL: server.api_url, PREFECT_API_AUTH_STRING: auth_string}
        with temporary_settings(settings), _temporary_global_settings_context(get_settings_context()):
            yield
            _drain_prefect_workers()
    finally:
        forget_ensured_limits()
        forget_cached_secrets()


def announced(api_url: str, event_id: str) -> bool:
    """The server holds the Prefect event the intake emitted for `event_id`."""
    query = {"filter": {"resource": {"id": [f"ennu.event.{event_id}"]}}, "limit": 1}
    found = httpx.post(f"{api_url}/events/filter", json=query, headers=prefect_api_headers(), timeout=10)
    found.raise_for_status()
    return bool(found.json()["events"])


def _drain_prefect_workers() -> None:
    EventsWorker.drain_all(timeout=30)
    APILogWorker.drain_all(timeout=30)


def test_without_the_auth_string_the_prefect_api_refuses_every_client_and_readiness_names_it(
    locked_prefect: PrefectServer,
) -> None:
    api = locked_prefect.api_url
    assert (Path(locked_prefect.env["PREFECT_HOME"]) / "prefect.db").exists()  # not the machine's database
    # What an outsider on the network tried: the stored secrets of every block, in plain text.
    blocks = httpx.post(f"{api}/block_documents/filter", json={"include_secrets": True}, timeout=10)
    assert blocks.status_code == 401 and "value" not in blocks.text
    assert (
        httpx.get(f"{api}/health", timeout=10).status_code == 200
    )  # probes stay open: readiness can't use it

    for wrong in (None, "ennu-ops:not-the-password"):
        with client_of(locked_prefect, wrong):
            with get_client(sync_client=True) as client, pytest.raises(httpx.HTTPStatusError) as refused:
                client.read_flows()
            assert refused.value.response.status_code == 401
            check = prefect_api()
            assert (
                not check.ok and check.detail == "the Prefect API refuses this hub's PREFECT_API_AUTH_STRING"
            )
            assert AUTH_STRING not in check.detail


def test_with_the_auth_string_flows_rate_limits_secret_blocks_and_intake_events_work(
    locked_prefect: PrefectServer, sqlite_database: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with client_of(locked_prefect, AUTH_STRING):
        assert prefect_api().ok

        # A Secret block written and read back through ennu.secrets (the environment has no such variable).
        Secret(value=SecretStr("probe-credential")).save("ennu-auth-probe-token", overwrite=True)
        monkeypatch.setenv("ENNU_SECRET_BLOCKS", "true")
        monkeypatch.delenv("ENNU_AUTH_PROBE_TOKEN", raising=False)
        credential = read_secret("ENNU_AUTH_PROBE_TOKEN")
        assert credential is not None and credential.get_secret_value() == "probe-credential"
        monkeypatch.setenv("ENNU_SECRET_BLOCKS", "false")  # the flow's connectors stay on the sandbox

        # A flow of ours, pushing under its integrations' global rate limits, recorded on this server.
        assessment_completed(event_ids=[person_with_assessment()[2]])
        assert len(sandbox.objects("hubspot", "contacts")) == 1
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["assessment-completed"]))
            )
            hubspot_limit = client.read_global_concurrency_limit_by_name(limit_name("hubspot"))
        assert [run.state_type.value for run in runs if run.state_type] == ["COMPLETED"]
        assert hubspot_limit.name == limit_name("hubspot")

        # The limit holds: a burst of one, then the next request waits for its slot.
        limit = RateLimit("authprobe", parse_rate("10/1h"))
        limit.acquire()
        with pytest.raises(TimeoutError):
            rate_limit(limit.name, occupy=SLOTS_PER_REQUEST, timeout_seconds=1, strict=True)

        # The intake's Prefect event (`ennu.<type>`) reaches the server through the events websocket.
        user_id, assessment_id, _ = person_with_assessment()
        event_id = f"auth-{uuid.uuid4().hex}"
        with TestClient(create_app()) as intake:
            posted = intake.post(
                "/events",
                headers={"Authorization": "Bearer dev-intake-token"},
                json={
                    "id": event_id,
                    "type": "assessment.completed",
                    "occurred_at": "2026-12-01T10:00:00Z",
                    "subject": user_id,
                    "resource": str(assessment_id),
                },
            )
        assert posted.status_code == 202
        wait_for(lambda: announced(locked_prefect.api_url, event_id), "the intake's event on the server", 120)

        # `make up`'s readiness check for the served deployments sends the credentials too.
        with get_client(sync_client=True) as client:
            flow_id = client.create_flow_from_name("drain")
            client.create_deployment(flow_id=flow_id, name="hourly")
        assert deployment_registered(locked_prefect.api_url, "drain/hourly").check(0)
