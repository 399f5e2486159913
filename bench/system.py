"""An isolated system from this checkout: hub DB, Prefect server, sandbox, intake, workers; always stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import psycopg
import requests

from bench.people import EVENT_TYPES
from bench.procs import Proc, free_port
from devtools.routing import routing_copy
from ennu.prefect_server import SERVER_SETTINGS

Database = Literal["postgresql", "sqlite"]
PG_ADMIN_URL = os.environ.get("ENNU_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
INTAKE_TOKEN = "bench-intake-token"  # noqa: S105 - a local token of this run's intake only
# Raised so the benches measure the engine, not the vendors' allowance (Slack's 1/s is fixed in code).
PY = sys.executable


def quiet_environment() -> dict[str, str]:
    """The machine's environment without vendor settings, with telemetry off: the base of every child."""
    # The registry's connectors: settings from the machine (credentials, base URLs) never reach the
    # bench's processes, and their rates are raised.
    from connectors.registry import UNLIMITED, environment_prefixes, rate_variables

    prefixes = tuple(environment_prefixes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        GX_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_RESULTS_PERSIST_BY_DEFAULT="false",
        PREFECT_LOGGING_LOG_PRINTS="false",
        ENNU_SECRET_BLOCKS="false",  # noqa: S106 - a switch, not a secret
        ENNU_ENV="local",
    )
    env.update({name: UNLIMITED for name in rate_variables()})
    return env


@dataclass
class Options:
    workers: int = 2
    database: Database = "postgresql"  # the hub's (host + hub tables)
    prefect_database: Database = "postgresql"
    enable: tuple[str, ...] = ("slack", "teams")  # chat channels switched on, so their alerts are counted
    worker_env: dict[str, str] = field(default_factory=dict)  # e.g. a shorter ENNU_LEASE_SECONDS
    keep: bool = False  # keep the directory (logs) after a successful run


class System:
    """A running system; `sandbox` is a client of its stand-ins, `hub_url` its hub database."""

    def __init__(self, options: Options, directory: Path) -> None:
        self.options = options
        self.directory = directory
        self.tag = uuid.uuid4().hex[:8]
        self.wanted: list[str] = []  # PostgreSQL databases to create (in `start`)
        self.databases: list[str] = []  # PostgreSQL databases created, to drop
        self.hub_url = self._database("ennu_bench", options.database, "hub.db", "postgresql")
        self.prefect_db_url = self._database(
            "prefect_bench", options.prefect_database, "prefect.db", "postgresql+asyncpg"
        )
        self.prefect_port, self.sandbox_port, self.intake_port = free_port(), free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.prefect_port}/api"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.intake_url = f"http://127.0.0.1:{self.intake_port}"
        self.mappings = routing_copy(directory / "mappings", enable=options.enable)
        self.env = self._environment()
        logs = directory / "logs"
        self.prefect = Proc(
            "prefect-server",
            [PY, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.prefect_port)],
            {**self.env, "PREFECT_API_DATABASE_CONNECTION_URL": self.prefect_db_url},
            logs / "prefect-server.log",
        )
        self.sandbox_proc = Proc(
            "sandbox", [PY, "-m", "sandbox", "--port", str(self.sandbox_port)], self.env, logs / "sandbox.log"
        )
        self.intake = Proc(
            "intake",
            [
                PY,
                "-m",
                "intake",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.intake_port),
            ],
            self.env,
            logs / "intake.log",
        )
        self.workers = [self._worker(n) for n in range(1, options.workers + 1)]
        self.extra: list[Proc] = []  # e.g. the old path's `prefect serve`
        self._local = threading.local()
        from sandbox.client import SandboxClient

        self.sandbox = SandboxClient(self.sandbox_url, timeout=30)

    # ------------------------------------------------------------------ set-up

    def _database(self, prefix: str, kind: Database, filename: str, driver: str) -> str:
        if kind == "sqlite":
            lead = "sqlite+aiosqlite" if driver.endswith("asyncpg") else "sqlite"
            return f"{lead}:///{self.directory / filename}"
        name = f"{prefix}_{self.tag}"
        self.wanted.append(name)
        return f"{driver}://{PG_ADMIN_URL.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"

    def _environment(self) -> dict[str, str]:
        env = quiet_environment()
        env.update(
            PREFECT_HOME=str(self.directory / "prefect-home"),
            PREFECT_API_URL=self.api_url,
            PREFECT_UI_ENABLED="false",
            PREFECT_SERVER_API_HOST="127.0.0.1",
            PREFECT_SERVER_API_PORT=str(self.prefect_port),
            PREFECT_RUNNER_POLL_FREQUENCY="1",
            **SERVER_SETTINGS,
            DATABASE_URL=self.hub_url,
            ENNU_SANDBOX_URL=self.sandbox_url,
            ENNU_MAPPINGS_DIR=str(self.mappings),
            ENNU_INTAKE_TOKEN=INTAKE_TOKEN,
        )
        env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
        return env

    def _worker(self, n: int) -> Proc:
        return Proc(
            f"worker-{n}",
            [PY, "-m", "engine", "--name", f"bench-w{n}"],
            {**self.env, **self.options.worker_env},
            self.directory / "logs" / f"worker-{n}.log",
        )

    def start(self) -> None:
        """Migrate and prepare the hub database, then start every part and wait (bounded) until each is up."""
        for name in self.wanted:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            self.databases.append(name)
        os.environ.update(self.env)  # this process reads and writes the same hub database
        from ennu.db import migrate
        from ennu.settings import reload_settings

        reload_settings()
        migrate(self.hub_url)
        from ennu.zapier_subscriptions import ZapierSubscriptions

        # A Zap for each of the bench's event types: the tally expects every Zapier route's hook call.
        for event_type in EVENT_TYPES:
            ZapierSubscriptions(self.hub_url).add(event_type, f"{self.sandbox_url}/zapier/hooks/bench")
        for proc in (self.prefect, self.sandbox_proc, self.intake):
            proc.start()
        self.sandbox_proc.wait_http(f"{self.sandbox_url}/_sandbox/health", 60)
        self.intake.wait_http(f"{self.intake_url}/health", 120)
        self.wait_prefect()
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            self.wait_worker(worker)

    def wait_prefect(self, timeout: float = 240) -> None:
        self.prefect.wait_http(f"{self.api_url}/health", timeout)

    def wait_worker(self, worker: Proc, timeout: float = 300) -> None:
        worker.wait_output("polling", timeout)

    # ------------------------------------------------------------------ parts that come and go

    def stop_prefect(self) -> None:
        self.prefect.stop()

    def start_prefect(self) -> None:
        self.prefect.start()
        self.wait_prefect()

    def kill_worker(self, index: int) -> None:
        self.workers[index].kill()

    def restart_worker(self, index: int, *, wait: bool = True) -> None:
        self.workers[index].start()
        if wait:
            self.wait_worker(self.workers[index])

    def start_extra(
        self, name: str, args: list[str], ready_text: str | None = None, timeout: float = 300
    ) -> Proc:
        proc = Proc(name, args, self.env, self.directory / "logs" / f"{name}.log").start()
        self.extra.append(proc)
        if ready_text is not None:
            proc.wait_output(ready_text, timeout)
        return proc

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()

    def stop(self) -> None:
        """Every process group this system started, newest first; then its databases."""
        for proc in [*self.extra, *reversed(self.workers), self.intake, self.sandbox_proc, self.prefect]:
            with contextlib.suppress(Exception):
                proc.stop()
        with contextlib.suppress(Exception):
            self.sandbox.close()
        from ennu.db import dispose_engines

        dispose_engines()
        for name in self.databases:
            with contextlib.suppress(Exception), psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # ------------------------------------------------------------------ the host app's side

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def post_event(self, body: dict[str, Any], timeout: float = 30) -> int:
        """POST /events as the host app; the HTTP status (0 when the intake did not answer)."""
        try:
            response = self._session().post(
                f"{self.intake_url}/events",
                json=body,
                headers={"Authorization": f"Bearer {INTAKE_TOKEN}"},
                timeout=timeout,
            )
        except requests.RequestException:
            return 0
        return response.status_code

    def post_events(self, bodies: Sequence[dict[str, Any]], threads: int = 8) -> list[int]:
        """Post all at once from `threads` threads; the statuses in order."""
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(self.post_event, bodies))


def load() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


@contextlib.contextmanager
def running_system(options: Options | None = None) -> Iterator[System]:
    """Start a system; stop all of it on the way out (SIGINT and SIGTERM included, bounded waits)."""
    options = options or Options()
    directory = Path(tempfile.mkdtemp(prefix="ennu-bench-"))

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    system: System | None = None
    ok = False
    try:
        system = System(options, directory)
        started = time.monotonic()
        system.start()
        print(
            f"# system up in {time.monotonic() - started:.0f} s: {len(system.workers)} workers, hub on "
            f"{options.database}, Prefect on {options.prefect_database}; logs in {directory / 'logs'}",
            file=sys.stderr,
            flush=True,
        )
        yield system
        ok = True
    finally:
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        try:
            if system is not None:
                system.stop()
        finally:
            signal.signal(signal.SIGINT, interrupt)
            signal.signal(signal.SIGTERM, previous)
        if ok and not options.keep:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"# logs kept in {directory / 'logs'}", file=sys.stderr, flush=True)
