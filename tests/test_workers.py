"""Delivery workers as real processes: two share a burst on PostgreSQL, a killed one's batch is finished by
the other, and a Prefect outage delays delivery without losing an event."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ennu.db import session_scope
from ennu.heartbeats import live_workers
from ennu.models import Delivery, OutboxEvent, SyncLog
from ennu.settings import reload_settings
from intake.app import create_app
from tests.conftest import PG_ADMIN_URL, _empty_tables
from tests.engine_support import open_deliveries, wait_for
from tests.factories import add_assessment, add_person, person_with_assessment
from tests.prefect_support import ROOT, PrefectServer
from tests.tiers import e2e_fixture

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
@e2e_fixture
def prefect_on_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One server for the module (each start costs 13-25 s); no test relies on what another left in it."""
    database = f"prefect_test_{uuid.uuid4().hex[:8]}"
    base = PG_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    server = PrefectServer(
        tmp_path_factory.mktemp("prefect-on-postgres") / "prefect",
        database_url=f"postgresql+asyncpg://{base}/{database}",
    )
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        server.start()
        yield server
    finally:
        server.stop()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture()
def hub(
    prefect_on_postgres: PrefectServer, postgresql_url: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The hub database on PostgreSQL, empty, and the environment a worker process needs."""
    if not prefect_on_postgres.running:  # a test that stopped it failed before starting it again
        prefect_on_postgres.start()
    monkeypatch.setenv("DATABASE_URL", postgresql_url)
    monkeypatch.setenv("PREFECT_API_URL", prefect_on_postgres.api_url)
    reload_settings()
    _empty_tables(postgresql_url)
    yield {
        **prefect_on_postgres.env,
        "DATABASE_URL": postgresql_url,
        "ENNU_SANDBOX_URL": os.environ["ENNU_SANDBOX_URL"],
        "ENNU_LEASE_SECONDS": "10",
    }
    reload_settings()


def start_worker(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "--name", name],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def warm(*names: str) -> bool:
    seen = {w.name for w in live_workers() if w.warm_at is not None}
    return set(names) <= seen


def created(connector: str) -> int:
    with session_scope() as session:
        return int(
            session.execute(
                select(func.count()).where(SyncLog.connector == connector, SyncLog.status == "created")
            ).scalar_one()
        )


def test_two_worker_processes_deliver_a_burst_of_300_exactly_once(hub: dict[str, str], sandbox: Any) -> None:
    workers = [start_worker(hub, f"worker-{n}") for n in (1, 2)]
    try:
        wait_for(lambda: warm("worker-1", "worker-2"), "both workers warm", timeout=180)
        events = [person_with_assessment()[2] for _ in range(300)]  # the size the delivery-engine issue names
        wait_for(lambda: open_deliveries() == 0, "the burst delivered", timeout=300, every=1)
        with session_scope() as session:
            owners = Counter(
                str(owner).split("/", 1)[0]
                for owner in session.execute(
                    select(Delivery.lease_owner).where(Delivery.integration == "hubspot")
                ).scalars()
            )
            done = session.execute(select(func.count()).where(OutboxEvent.status == "done")).scalar_one()
    finally:
        for worker in workers:
            stop_worker(worker)
    assert done == len(events)
    assert len(sandbox.objects("hubspot", "contacts")) == 300 and created("hubspot") == 300
    assert len(sandbox.objects("mailchimp", "members")) == 300 and created("mailchimp") == 300
    assert set(owners) == {"worker-1", "worker-2"}, owners  # both took some


def test_a_worker_killed_mid_batch_is_finished_by_the_other_once_its_lease_expires(
    hub: dict[str, str], sandbox: Any
) -> None:
    first = start_worker(hub, "doomed")
    survivor: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: warm("doomed"), "the first worker warm", timeout=180)
        sandbox.fail("hubspot", mode="slow", delay=8, count=1)  # its first HubSpot batch hangs
        people = [person_with_assessment()[0] for _ in range(30)]

        def hubspot_leased() -> bool:
            with session_scope() as session:
                return bool(
                    session.execute(
                        select(func.count()).where(
                            Delivery.integration == "hubspot", Delivery.lease_expires_at.is_not(None)
                        )
                    ).scalar_one()
                )

        wait_for(hubspot_leased, "the batch in flight")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        survivor = start_worker(hub, "survivor")
        wait_for(lambda: open_deliveries() == 0, "the other worker finishing", timeout=180, every=0.5)
    finally:
        stop_worker(first)
        if survivor is not None:
            stop_worker(survivor)
    contacts = sandbox.objects("hubspot", "contacts")
    assert len(contacts) == len(people) == len({c["properties"]["email"] for c in contacts})
    with session_scope() as session:
        states = Counter(session.execute(select(Delivery.status)).scalars())
    assert set(states) <= {"delivered", "skipped"}


def test_events_posted_while_prefect_is_down_are_delivered_once_it_is_back_without_a_drain(
    hub: dict[str, str], prefect_on_postgres: PrefectServer, sandbox: Any
) -> None:
    worker = start_worker(hub, "patient")
    try:
        wait_for(lambda: warm("patient"), "the worker warm", timeout=180)
        prefect_on_postgres.stop()
        subjects = []
        for _ in range(50):
            user_id = add_person()
            subjects.append((user_id, add_assessment(user_id)))
        with TestClient(create_app()) as api:
            answers = [
                api.post(
                    "/events",
                    headers={"Authorization": "Bearer dev-intake-token"},
                    json={
                        "id": f"outage-{user_id}",
                        "type": "assessment.completed",
                        "occurred_at": "2026-11-29T10:00:00Z",
                        "subject": user_id,
                        "resource": str(assessment_id),
                    },
                ).status_code
                for user_id, assessment_id in subjects
            ]
        assert answers == [202] * 50
        assert sandbox.objects("hubspot", "contacts") == []  # nothing moves while Prefect is away
        prefect_on_postgres.start()
        wait_for(lambda: len(sandbox.objects("hubspot", "contacts")) == 50, "delivery after the return", 180)
        wait_for(lambda: open_deliveries() == 0, "every delivery settled", timeout=120)
    finally:
        stop_worker(worker)
    assert created("hubspot") == 50
