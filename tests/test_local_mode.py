"""Local mode is explicit: only with ENNU_ENV=local do the sandbox and the published development values stand
in. Production (the default) fails closed: a connector without credentials is disabled ("no credentials")
and sends nothing, no loopback address is ever called for a vendor, the intake does not start without its
secrets, and a Secret block that cannot be read is an error that is retried, never "no credentials".

Nothing leaving is proved by counting the connections accepted at a listening socket (`tests/capture.py`)
that is the sandbox URL, a vendor's base URL or a Zapier hook of the production hub under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from connectors.endpoint import NO_CREDENTIALS, NoCredentials, NotConfigured
from connectors.http import LOOPBACK_REFUSED, RefusedDestination
from connectors.hubspot.connector import HubSpotConnector
from connectors.registry import CONNECTORS, build_connector, validate_settings
from connectors.settings import SettingsError
from devtools.routing import routing_copy
from ennu import secrets
from ennu.db import session_scope
from ennu.models import Delivery, SyncLog
from ennu.secrets import SecretUnavailable, forget_cached_secrets, read_secret
from ennu.settings import PROJECT_ROOT, reload_settings
from ennu.zapier_subscriptions import ZapierSubscriptions
from mappings.transforms import TRANSFORMS, LinkParams
from tests.capture import CapturingEndpoint
from tests.factories import add_event, add_person, person_with_assessment
from tests.tiers import e2e_fixture

# What production requires; each test that runs in production sets its own values.
REQUIRED = ("ENNU_INTAKE_TOKEN", "ENNU_DATA_KEY", "ENNU_CHART_LINK_KEY", "ENNU_PSEUDONYM_PEPPER")
OPERATOR = {"Authorization": "Bearer operator-token-of-this-site"}
CLOSED_PORT = 19101  # in this suite's range; nothing listens on it
BLOCK_TOKEN = "pat-from-the-block"


def reload_production() -> None:
    forget_cached_secrets()
    reload_settings()


@pytest.fixture()
def production(monkeypatch: pytest.MonkeyPatch, endpoint: CapturingEndpoint) -> Iterator[None]:
    """The hub in production with its own secrets and no vendor credential; the sandbox URL is the
    capturing socket, so that any request that falls back to it is counted."""
    monkeypatch.setenv("ENNU_ENV", "production")
    monkeypatch.setenv("ENNU_INTAKE_TOKEN", "host-token-of-this-site")
    monkeypatch.setenv("ENNU_OPERATOR_TOKENS", "operator-token-of-this-site")
    monkeypatch.setenv("ENNU_DATA_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("ENNU_CHART_LINK_KEY", "chart-key-of-this-site")
    monkeypatch.setenv("ENNU_PSEUDONYM_PEPPER", "pepper-of-this-site")
    monkeypatch.setenv("ENNU_SANDBOX_URL", endpoint.url)
    reload_production()
    yield
    monkeypatch.undo()
    reload_production()


def test_in_production_a_connector_without_credentials_is_not_built(
    production: None, endpoint: CapturingEndpoint
) -> None:
    with_secrets = [name for name, cls in CONNECTORS.items() if cls.settings_class.secrets]
    assert len(with_secrets) >= 9  # every vendor but Zapier, whose hooks are its credentials
    for name in with_secrets:
        with pytest.raises(NoCredentials) as caught:
            build_connector(name)
        assert str(caught.value) == f"{name}: no credentials" and caught.value.reason == NO_CREDENTIALS
        assert CONNECTORS[name].unavailable() == NO_CREDENTIALS
    assert endpoint.connections == 0


def test_in_local_mode_the_sandbox_stands_in_for_missing_credentials(sandbox: Any) -> None:
    connector = build_connector("hubspot", rate_limited=False)
    try:
        assert connector.test_connection().ok and HubSpotConnector.unavailable() is None
    finally:
        connector.close()
    assert len(sandbox.requests("hubspot")) == 1


def test_the_status_says_no_credentials_and_the_demo_token_is_refused(
    sqlite_database: str, production: None, endpoint: CapturingEndpoint
) -> None:
    from intake.app import create_app

    with TestClient(create_app()) as api:
        statuses = {s["integration"]: s for s in api.get("/integrations/status", headers=OPERATOR).json()}
        hubspot = statuses["hubspot"]
        assert hubspot["enabled"] is False and "hubspot: no credentials" in hubspot["warnings"]
        assert statuses["zapier"]["enabled"] is True and statuses["zapier"]["warnings"] == []
        problems = api.get("/integrations/health", headers=OPERATOR).json()["problems"]
        assert "hubspot: no credentials" in problems and "epic_fhir: no credentials" in problems
        tested = api.post("/integrations/test/hubspot", headers=OPERATOR).json()
        assert tested == {"integration": "hubspot", "ok": False, "detail": NO_CREDENTIALS, "latency_ms": None}
        demo = {"Authorization": "Bearer dev-intake-token"}
        assert api.post("/events", json={"id": "evt-1"}, headers=demo).status_code == 401
        mine = {"Authorization": "Bearer host-token-of-this-site"}
        assert api.post("/events", json={"id": "evt-1"}, headers=mine).status_code == 422  # past the token
    assert endpoint.connections == 0


def test_a_loopback_vendor_url_in_production_stops_the_start_and_is_never_called(
    production: None, endpoint: CapturingEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-of-this-site")
    monkeypatch.setenv("HUBSPOT_BASE_URL", endpoint.url)
    monkeypatch.setenv("EPIC_FHIR_BASE_URL", "http://localhost:8765/fhir/r4")
    monkeypatch.setenv("TWILIO_STATUS_CALLBACK_URL", "http://127.0.0.1:8000/webhooks/twilio")  # the hub's own
    reload_production()
    with pytest.raises(SettingsError) as caught:
        validate_settings()
    message = str(caught.value)
    assert "HUBSPOT_BASE_URL is a loopback address" in message and "EPIC_FHIR_BASE_URL" in message
    assert "TWILIO_STATUS_CALLBACK_URL" not in message and endpoint.url not in message
    with pytest.raises(NotConfigured, match="loopback"):
        build_connector("hubspot")
    # Whatever builds a client, its requests to a loopback address are refused before any connection.
    http = HubSpotConnector.client(endpoint.url, rate=None)
    with pytest.raises(RefusedDestination) as refused:
        http.request("GET", "/account-info/v3/details")
    assert refused.value.reason == LOOPBACK_REFUSED
    assert endpoint.connections == 0


def test_notices_linking_to_a_site_that_is_not_set_stop_the_start_in_production(
    production: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Slack and Teams are off in production until a site enables them; then their notices' links need the
    host app's and the EHR's addresses, or every notice would point at a placeholder."""
    validate_settings()  # as shipped: no enabled route links anywhere
    mappings = routing_copy(tmp_path / "mappings", enable=("slack",))
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(mappings))
    reload_production()
    with pytest.raises(SettingsError) as caught:
        validate_settings()
    assert "ENNU_HOST_APP_URL is not set" in str(caught.value)
    assert "ENNU_EHR_LINK_URL is not set" in str(caught.value)
    monkeypatch.setenv("ENNU_HOST_APP_URL", "https://clinic.example.org/")
    monkeypatch.setenv("ENNU_EHR_LINK_URL", "https://ehr.example.org/view")
    reload_production()
    validate_settings()
    host = LinkParams(to="host_app", path="/wp-admin/user-edit.php?user_id={}")
    assert (
        TRANSFORMS["link"].per_value(12.0, host)
        == "https://clinic.example.org/wp-admin/user-edit.php?user_id=12"
    )
    ehr = LinkParams(to="ehr", path="/Observation/{}")
    assert TRANSFORMS["link"].per_value("b-3", ehr) == "https://ehr.example.org/view/Observation/b-3"


def test_the_intake_without_its_secrets_refuses_to_start_naming_each(monkeypatch: pytest.MonkeyPatch) -> None:
    from intake.app import create_app

    for variable in REQUIRED:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("ENNU_ENV", "production")
    reload_production()
    try:
        with pytest.raises(SettingsError) as caught:
            create_app()
        assert [v for v in REQUIRED if f"{v} is not set" in str(caught.value)] == list(REQUIRED)
        for variable in REQUIRED[1:]:
            monkeypatch.setenv(variable, Fernet.generate_key().decode())
        reload_production()
        with pytest.raises(SettingsError) as only_the_token:
            create_app()
        assert str(only_the_token.value) == "ENNU_INTAKE_TOKEN is not set"
    finally:
        monkeypatch.undo()
        reload_production()


def test_the_served_deployments_without_the_secrets_refuse_to_start_naming_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deployments import serve

    for variable in REQUIRED:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("ENNU_ENV", "production")
    monkeypatch.setattr(sys, "argv", ["deployments.serve"])
    reload_production()
    try:
        with pytest.raises(SystemExit) as stopped:
            serve.main()  # before any deployment is built or served
        assert str(stopped.value).startswith("served deployments: ")
        assert [v for v in REQUIRED if f"{v} is not set" in str(stopped.value)] == list(REQUIRED)
    finally:
        monkeypatch.undo()
        reload_production()


@pytest.fixture()
@e2e_fixture
def intake_started_in_production() -> subprocess.CompletedProcess[str]:
    """`uvicorn intake.app:app` as the launcher starts it, in production with none of its secrets."""
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED and not k.startswith("ENNU_ENV")}
    env["ENNU_ENV"] = "production"
    command = [sys.executable, "-m", "uvicorn", "intake.app:app", "--host", "127.0.0.1", "--port", "19102"]
    return subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def test_the_intake_process_exits_at_start_naming_the_missing_token(
    intake_started_in_production: subprocess.CompletedProcess[str],
) -> None:
    assert intake_started_in_production.returncode != 0
    assert "ENNU_INTAKE_TOKEN is not set" in intake_started_in_production.stderr
    assert "Traceback" not in intake_started_in_production.stderr


# ------------------------------------------------------------------------------------- Secret blocks


def refused_connection() -> httpx.ConnectError:
    """A real failed read: the connection a Prefect API on a closed port refuses."""
    try:
        httpx.get(f"http://127.0.0.1:{CLOSED_PORT}/api/block_documents/filter", timeout=5)
    except httpx.ConnectError as exc:
        return exc
    raise AssertionError(f"something listens on port {CLOSED_PORT}")


@pytest.fixture()
def blocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Secret blocks on (the tests' default is off), nothing cached; yields the block names read."""
    monkeypatch.setenv("ENNU_SECRET_BLOCKS", "true")
    monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN", raising=False)
    forget_cached_secrets()
    yield []
    forget_cached_secrets()


def store(monkeypatch: pytest.MonkeyPatch, reads: list[str], answers: list[object]) -> None:
    """The block-loading seam answers in turn: an exception is raised (a failed read), a value returned."""

    def load(block_name: str) -> SecretStr | None:
        reads.append(block_name)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return None if answer is None else SecretStr(str(answer))

    monkeypatch.setattr(secrets, "_load_block", load)


def test_a_failed_block_read_is_an_error_never_a_cached_absence(
    blocks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[object] = [refused_connection()]
    store(monkeypatch, blocks, answers)
    with pytest.raises(SecretUnavailable) as caught:
        read_secret("HUBSPOT_ACCESS_TOKEN")
    assert blocks == ["hubspot-access-token"] * secrets.READ_ATTEMPTS  # retried, then an error
    assert "HUBSPOT_ACCESS_TOKEN" in str(caught.value)
    answers[0] = BLOCK_TOKEN  # the API is back
    found = read_secret("HUBSPOT_ACCESS_TOKEN")
    assert found is not None and found.get_secret_value() == BLOCK_TOKEN


def test_one_failed_read_is_retried_within_the_read(
    blocks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store(monkeypatch, blocks, [refused_connection(), BLOCK_TOKEN])
    found = read_secret("HUBSPOT_ACCESS_TOKEN")
    assert found is not None and found.get_secret_value() == BLOCK_TOKEN and len(blocks) == 2


def test_answers_are_cached_for_their_ttl_and_a_rotated_secret_is_read_again(
    blocks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[object] = [None]
    store(monkeypatch, blocks, answers)
    assert read_secret("HUBSPOT_ACCESS_TOKEN") is None and read_secret("HUBSPOT_ACCESS_TOKEN") is None
    assert len(blocks) == 1  # an absent block is an answer: kept for the TTL
    forget_cached_secrets()
    answers[0] = "first"
    monkeypatch.setenv("ENNU_SECRET_CACHE_SECONDS", "0")  # every read asks again: a rotation is seen at once
    reload_settings()
    try:
        assert str(read_secret("HUBSPOT_ACCESS_TOKEN").get_secret_value()) == "first"  # type: ignore[union-attr]
        answers[0] = "rotated"
        assert read_secret("HUBSPOT_ACCESS_TOKEN").get_secret_value() == "rotated"  # type: ignore[union-attr]
    finally:
        monkeypatch.delenv("ENNU_SECRET_CACHE_SECONDS")
        reload_settings()


def test_a_failed_read_never_builds_a_sandbox_connector(
    blocks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store(monkeypatch, blocks, [refused_connection()])
    with pytest.raises(SecretUnavailable):
        build_connector("hubspot")  # in local mode too: an unreadable credential is not an absent one


@pytest.mark.usefixtures("prefect_server")
def test_a_secret_block_is_read_again_after_the_prefect_api_failed(blocks: list[str]) -> None:
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    Secret(value=BLOCK_TOKEN).save("hubspot-access-token", overwrite=True)
    down = {PREFECT_API_URL: f"http://127.0.0.1:{CLOSED_PORT}/api"}
    with temporary_settings(down), pytest.raises(SecretUnavailable):
        read_secret("HUBSPOT_ACCESS_TOKEN")
    found = read_secret("HUBSPOT_ACCESS_TOKEN")
    assert found is not None and found.get_secret_value() == BLOCK_TOKEN
    assert read_secret("NO_SUCH_CREDENTIAL") is None  # an absent block is an absence


@pytest.mark.usefixtures("prefect_server")
def test_a_failed_secret_read_keeps_the_delivery_owed_and_the_next_push_uses_the_credential(
    sqlite_database: str,
    sandbox: Any,
    endpoint: CapturingEndpoint,
    blocks: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.blocks.system import Secret

    from flows.user_login import user_login

    Secret(value=BLOCK_TOKEN).save("hubspot-access-token", overwrite=True)
    monkeypatch.setenv("HUBSPOT_BASE_URL", endpoint.url)
    monkeypatch.setenv("ENNU_DELIVERY_RETRY_BASE_SECONDS", "0")  # offered again at once
    reload_settings()
    email = "block.reader@example.com"
    endpoint.answer(
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        200,
        {"results": [{"id": "901", "new": True, "properties": {"email": email}}]},
    )
    real = secrets._load_block
    outage = [True]

    def load(block_name: str) -> SecretStr | None:
        if outage[0]:
            raise refused_connection()
        return real(block_name)

    monkeypatch.setattr(secrets, "_load_block", load)
    event_id = add_event("user.login", add_person(email=email))
    try:
        user_login(event_ids=[event_id])
        assert delivery(event_id) == ("deferred", "credentials unreadable")
        assert endpoint.connections == 0 and sandbox.requests("hubspot") == []  # never the sandbox instead

        outage[0] = False
        user_login(event_ids=[event_id])
        assert delivery(event_id)[0] == "delivered"
        (sent,) = endpoint.take()
        assert sent.headers["authorization"] == f"Bearer {BLOCK_TOKEN}" and sandbox.requests("hubspot") == []
    finally:
        monkeypatch.undo()
        reload_settings()


def delivery(event_id: str, integration: str = "hubspot") -> tuple[str, str | None]:
    with session_scope() as session:
        row = session.execute(
            select(Delivery).where(Delivery.event_id == event_id, Delivery.integration == integration)
        ).scalar_one()
        return row.status, row.last_error


@pytest.mark.usefixtures("prefect_server")
def test_in_production_deliveries_without_credentials_fail_visibly_and_nothing_leaves(
    sqlite_database: str, production: None, endpoint: CapturingEndpoint
) -> None:
    from flows.assessment_completed import assessment_completed
    from tasks.status import all_statuses

    # A hook subscribed while the hub ran locally, on a loopback address: never posted to in production.
    ZapierSubscriptions().add("assessment.completed", f"{endpoint.url}/zapier/hooks/hook-a")
    _, _, event_id = person_with_assessment()

    state = assessment_completed(event_ids=[event_id], return_state=True)
    assert state.is_failed()  # failed deliveries make a failed run, visible in the Prefect UI

    with session_scope() as session:
        rows = session.execute(select(SyncLog).where(SyncLog.event_id == event_id)).scalars().all()
        outcomes = {(r.connector, r.status, r.error) for r in rows if r.connector != "zapier"}
        (hook,) = [(r.status, r.error or "") for r in rows if r.connector == "zapier"]
    assert outcomes == {
        ("hubspot", "failed", NO_CREDENTIALS),
        ("mailchimp", "failed", NO_CREDENTIALS),
        ("salesforce", "failed", NO_CREDENTIALS),
        ("ga4", "failed", NO_CREDENTIALS),
        ("epic_fhir", "failed", NO_CREDENTIALS),
    }
    # The stored hook is checked again before each post: outside local mode a loopback one is refused.
    assert hook[0] == "failed" and "stored target refused (target_url is not https)" in hook[1]
    assert endpoint.connections == 0
    status = {s.integration: s for s in all_statuses()}["hubspot"]
    assert not status.enabled and status.warnings == ["hubspot: no credentials"]
    assert status.last_error_reason == NO_CREDENTIALS and status.counts_24h == {"failed": 1}


def test_the_intake_starts_while_the_secret_store_does_not_answer(
    sqlite_database: str, blocks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make up` starts the intake beside a Prefect server that is still starting: reading a token's Secret
    block fails then. The intake starts all the same (events need no Prefect), and audited requests answer
    503 until the token labels can be read and their rotation recorded."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from intake.app import create_app

    monkeypatch.delenv("ENNU_INTAKE_TOKEN", raising=False)
    monkeypatch.setenv("ENNU_OPERATOR_TOKENS", "ops=operator-token")
    reload_settings()
    down = {PREFECT_API_URL: f"http://127.0.0.1:{CLOSED_PORT}/api"}
    with temporary_settings(down), TestClient(create_app()) as api:
        assert api.get("/health").status_code == 200
        status = api.get("/integrations/status", headers={"Authorization": "Bearer operator-token"})
        assert status.status_code == 503
