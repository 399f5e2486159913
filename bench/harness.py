"""The benchmark's surroundings: its own SQLite database, sandbox and Prefect API, and raised rate limits."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.routing import routing_copy
from sandbox.client import SandboxClient

# Every connector's own rate setting (read by its from_settings), raised so that the bench measures our
# cost, not the vendor's allowance. Slack and Teams have no setting: their 1 a second is fixed in code.
RATE_SETTINGS = (
    "HUBSPOT_REQUESTS_PER_HOUR",
    "MAILCHIMP_REQUESTS_PER_HOUR",
    "SALESFORCE_REQUESTS_PER_HOUR",
    "STRIPE_REQUESTS_PER_HOUR",
    "TWILIO_REQUESTS_PER_HOUR",
    "GA4_REQUESTS_PER_HOUR",
    "ZAPIER_REQUESTS_PER_HOUR",
    "EPIC_REQUESTS_PER_HOUR",
)
BENCH_REQUESTS_PER_HOUR = "36000000"
# Environment prefixes of vendor settings: credentials and base URLs from the machine are dropped, so the
# bench can only ever talk to its own sandbox.
VENDOR_PREFIXES = ("HUBSPOT", "MAILCHIMP", "STRIPE", "TWILIO", "SALESFORCE", "GA4", "EPIC", "SLACK", "TEAMS",
                   "ZAPIER")  # fmt: skip


def bench_environment() -> None:
    """Before Prefect is imported: no telemetry, no result persistence, sandbox credentials, raised rates."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "false"
    os.environ["ENNU_SECRET_BLOCKS"] = "false"  # noqa: S105 - a switch, not a secret
    for name in list(os.environ):
        if name.split("_", 1)[0] in VENDOR_PREFIXES:
            os.environ.pop(name)
    for name in RATE_SETTINGS:
        os.environ[name] = BENCH_REQUESTS_PER_HOUR


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
