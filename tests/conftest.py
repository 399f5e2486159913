"""Shared test set-up: one Prefect harness, one sandbox on loopback, SQLite and PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest

# Before anything imports Prefect or Great Expectations: no telemetry, no result persistence.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ["PREFECT_LOGGING_LOG_PRINTS"] = "false"
os.environ["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "false"
os.environ["ENNU_SECRET_BLOCKS"] = "false"
os.environ["ENNU_ENV"] = "local"  # the sandbox and the published development keys may stand in
# Generous rates in tests; the rate-limit tests set their own. The connectors' prefixes come from the
# registry (importing it reads no vendor setting yet).
from connectors.registry import UNLIMITED, environment_prefixes, rate_variables

# Tests talk to the sandbox only: no vendor credential or base URL from the machine may leak in.
for name in list(os.environ):
    if name.startswith(tuple(environment_prefixes())):
        os.environ.pop(name)
for name in rate_variables():
    os.environ[name] = UNLIMITED

from ennu.db import dispose_engines, get_engine, migrate  # noqa: E402
from ennu.models import Base  # noqa: E402
from ennu.settings import reload_settings  # noqa: E402
from tests import tiers  # noqa: E402
from tests.capture import CapturingEndpoint, capturing_endpoint  # noqa: E402

PG_ADMIN_URL = os.environ.get("ENNU_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")


# The tiers (tests/tiers.py): every test has its own id; users of an `@e2e_fixture` are `e2e`; an unmarked
# test starting a process fails; e2e tests run first.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tiers.refuse_duplicate_ids(items)
    tiers.mark_e2e_by_fixture(items)
    tiers.slow_first(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from tiers.watch_runtest())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    return tiers.fail_unmarked_process_starts(item, (yield))


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect test harness (a real server on SQLite) for the whole session; its start took 120 s and
    more on the loaded 2-core machine."""
    from prefect.testing.utilities import prefect_test_harness

    with ExitStack() as stack:
        with tiers.shared_processes():  # its server is a subprocess shared by the session: not an e2e part
            stack.enter_context(prefect_test_harness(server_startup_timeout=300))
        yield


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    from sandbox.server import start_sandbox

    with start_sandbox() as running:
        os.environ["ENNU_SANDBOX_URL"] = running.url
        # E-mail alerts go to the sandbox's SMTP stand-in once a test names recipients (ENNU_ALERT_EMAIL_TO).
        os.environ.update({"ENNU_SMTP_HOST": "127.0.0.1", "ENNU_SMTP_PORT": str(running.smtp_port)})
        os.environ["ENNU_SMTP_TYPE"] = "INSECURE"
        reload_settings()
        yield running.url


@pytest.fixture()
def sandbox(sandbox_url: str):  # type: ignore[no-untyped-def]
    from sandbox.client import SandboxClient

    client = SandboxClient(sandbox_url)
    client.reset()
    return client


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """A database of our own on the CI PostgreSQL, dropped at the end."""
    name = f"ennu_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    migrate(url)
    yield url
    dispose_engines()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("db") / "ennu.db"
    url = f"sqlite:///{path}"
    migrate(url)
    return url


def _empty_tables(url: str) -> None:
    from ennu.circuit import forget_cached_states

    forget_cached_states()
    engine = get_engine(url)
    with engine.begin() as conn:
        tables = list(reversed(Base.metadata.sorted_tables))
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "TRUNCATE " + ", ".join(t.name for t in tables) + " RESTART IDENTITY CASCADE"
            )
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, not migrated, on SQLite or PostgreSQL (for a migration's own test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        dispose_engines()
        return
    name = f"ennu_blank_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        dispose_engines()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test that takes this runs once on SQLite and once on PostgreSQL, on empty tables."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    _empty_tables(url)
    os.environ["DATABASE_URL"] = url
    reload_settings()
    yield url
    os.environ.pop("DATABASE_URL", None)
    reload_settings()


@pytest.fixture()
def sqlite_database(sqlite_url: str) -> Iterator[str]:
    """SQLite only, for tests whose subject is not the database."""
    _empty_tables(sqlite_url)
    os.environ["DATABASE_URL"] = sqlite_url
    reload_settings()
    yield sqlite_url
    os.environ.pop("DATABASE_URL", None)
    reload_settings()


@pytest.fixture()
def endpoint() -> Iterator[CapturingEndpoint]:
    """A capturing HTTP endpoint on loopback (contract tests: our request against the vendor SDK's)."""
    with capturing_endpoint() as capture:
        yield capture
