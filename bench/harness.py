"""The benchmark's surroundings: its own SQLite database, sandbox and Prefect API, and raised rate limits."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools.routing import routing_copy
from sandbox.client import SandboxClient


def bench_environment() -> None:
    """Before Prefect is imported: no telemetry, no result persistence, sandbox credentials, raised rates."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "false"
    os.environ["ENNU_SECRET_BLOCKS"] = "false"  # noqa: S105 - a switch, not a secret
    os.environ["ENNU_ENV"] = "local"
    # The registry's connectors: their credentials and base URLs from the machine are dropped, so the
    # bench can only ever talk to its own sandbox, and their rates raised, so that it measures our cost,
    # not the vendor's allowance.
    from connectors.registry import UNLIMITED, environment_prefixes, rate_variables

    for name in list(os.environ):
        if name.startswith(tuple(environment_prefixes())):
            os.environ.pop(name)
    for name in rate_variables():
        os.environ[name] = UNLIMITED


@dataclass(frozen=True)
class Workspace:
    directory: Path
    sandbox_url: str
    sandbox: SandboxClient


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """PREFECT_API_URL when set, else a Prefect test harness (a real server on SQLite) for the run."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@contextlib.contextmanager
def workspace() -> Iterator[Workspace]:
    """A fresh SQLite database and mappings snapshot in a temporary directory, a sandbox, a Prefect API."""
    from ennu.db import migrate
    from ennu.settings import reload_settings
    from sandbox.server import start_sandbox

    directory = Path(tempfile.mkdtemp(prefix="ennu-bench-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{directory / 'bench.db'}"
    # A snapshot of the mappings: edits to the repository's files during a run cannot change its figures.
    os.environ["ENNU_MAPPINGS_DIR"] = str(routing_copy(directory / "mappings"))
    with start_sandbox() as running, prefect_api():
        os.environ["ENNU_SANDBOX_URL"] = running.url
        reload_settings()
        migrate()
        with SandboxClient(running.url) as client:
            yield Workspace(directory, running.url, client)
