"""More than one machine: a Prefect server on PostgreSQL, `prefect deploy --all`, two workers, one burst."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy import func, select

from ennu.db import session_scope
from ennu.models import OutboxEvent, SyncLog
from tests.conftest import PG_ADMIN_URL
from tests.factories import person_with_assessment

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"{args[:3]} failed: {result.stdout[-2000:]} {result.stderr[-2000:]}"


@pytest.fixture()
def prefect_on_postgres(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real `prefect server start` whose database is a fresh PostgreSQL database."""
    name = f"prefect_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    port = free_port()
    base = PG_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://{base}/{name}",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "ENNU_PROJECT_DIR": str(ROOT),
    }
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "the Prefect server did not start"
            time.sleep(0.5)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_deployed_project_with_two_workers_processes_a_burst_once(
    prefect_on_postgres: dict[str, str],
    postgresql_url: str,
    sandbox_url: str,
    sandbox: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**prefect_on_postgres, "DATABASE_URL": postgresql_url, "ENNU_SANDBOX_URL": sandbox_url}
    monkeypatch.setenv("DATABASE_URL", postgresql_url)
    monkeypatch.setenv("PREFECT_API_URL", env["PREFECT_API_URL"])
    from ennu.settings import reload_settings

    reload_settings()
    from tests.conftest import _empty_tables

    _empty_tables(postgresql_url)
    run([str(BIN / "prefect"), "work-pool", "create", "ennu-process", "--type", "process"], env)
    run(
        [
            str(BIN / "prefect"),
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            "deployments/prefect.yaml",
        ],
        env,
    )
    workers = [
        subprocess.Popen(
            [
                str(BIN / "prefect"),
                "worker",
                "start",
                "--pool",
                "ennu-process",
                "--name",
                f"worker-{n}",
                "--limit",
                "2",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in (1, 2)
    ]
    try:
        time.sleep(5)  # the deployments' triggers become automations
        events = [person_with_assessment()[2] for _ in range(6)]
        # Announce them as the intake API would, from its own process, to the PostgreSQL-backed server.
        announce = "import sys; from ennu.outbox import prefect_event_for; " \
                   "[prefect_event_for(e, 'assessment.completed') for e in sys.argv[1:]]"
        run([sys.executable, "-c", announce, *events], env)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with session_scope() as session:
                done = session.execute(
                    select(func.count()).select_from(OutboxEvent).where(OutboxEvent.status == "done")
                ).scalar_one()
            if done == len(events):
                break
            time.sleep(2)
        with session_scope() as session:
            statuses = dict(session.execute(select(OutboxEvent.id, OutboxEvent.status)).tuples().all())
            creates = session.execute(
                select(func.count())
                .select_from(SyncLog)
                .where(SyncLog.connector == "hubspot", SyncLog.status == "created")
            ).scalar_one()
            attempts = set(session.execute(select(OutboxEvent.attempts)).scalars())
        assert set(statuses.values()) == {"done"}
        assert creates == len(events)  # one create per person: nothing processed twice
        assert attempts == {1}
        assert len(sandbox.objects("hubspot", "contacts")) == len(events)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
