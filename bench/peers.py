"""`make bench`: bulk throughput side by side, on the same records and the same stand-in.

For each connector (HubSpot, Mailchimp, Salesforce: the batch vendors) and each path, one JSON line:

  raw       batched HTTP with bodies built before the clock starts, 4 threads: the floor
  script    a hand-written pandas `read_sql` + field mapping + `requests` script, one thread
  dlt       dlt's `@dlt.destination(batch_size=<the vendor's batch>)` fed by the same query
  pipeline  this product's `bulk-sync` flow to that one destination (consent, mapping, validation,
            delivery states, sync log), warm: a small run first; without Prefect's flow-run heartbeat
            thread (as in the delivery worker), which holds a sync flow's end until its next whole second
            of sleep: up to a second a run whatever its size, a quarter of a 10,000-record run

  {"connector", "path", "records", "http_calls", "seconds", "records_per_s", "cpu_s_per_1000",
   "peak_rss_mb"}

then one line per connector with the ratios pipeline ÷ raw and pipeline ÷ dlt. Every path runs in its own
process (its peak RSS is its own), against one stand-in in another process (`python -m sandbox`), and the
stand-in is emptied between paths, so each path creates the same records. `http_calls` are counted by the
stand-in. The pipeline's Prefect server is a separate process whose CPU is not in `cpu_s_per_1000`.
Records: people with an e-mail address (Mailchimp: those who consented to marketing, as the pipeline's
routing does). Rates are lifted (the vendors' allowance is not what is measured).

  python -m bench.peers [--records 10000] [--connectors hubspot,mailchimp,salesforce] [--paths ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import bench_environment

bench_environment()  # before Prefect is imported

import requests  # noqa: E402

PATHS = ("raw", "script", "dlt", "pipeline")
CONNECTORS = ("hubspot", "mailchimp", "salesforce")
THREADS = 4
WARM_RECORDS = 20
PY = sys.executable


@dataclass(frozen=True)
class Wire:
    """How one vendor's batch upsert looks on the wire (what the raw, script and dlt paths send)."""

    vendor: str  # the stand-in's name
    batch: int
    query: str  # the rows to send, from the host tables
    open_session: Callable[[str], requests.Session]
    url: Callable[[str], str]
    method: str
    body: Callable[[list[dict[str, Any]]], dict[str, Any]]


def _hubspot_session(sandbox: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = "Bearer sandbox-hubspot-token"
    return session


def _mailchimp_session(sandbox: str) -> requests.Session:
    session = requests.Session()
    session.auth = ("ennu", "sandbox-key-us1")
    return session


def _salesforce_session(sandbox: str) -> requests.Session:
    token = requests.post(
        f"{sandbox}/salesforce/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sandbox-sf-key",
            "client_secret": "sandbox-sf-secret",
        },
        timeout=10,
    ).json()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token['access_token']}"
    session.salesforce_instance = token["instance_url"]  # type: ignore[attr-defined]
    return session


USERS = "SELECT id, email, first_name, last_name FROM users WHERE email IS NOT NULL"
WIRES: dict[str, Wire] = {
    "hubspot": Wire(
        "hubspot",
        100,
        USERS,
        _hubspot_session,
        lambda sandbox: f"{sandbox}/hubspot/crm/v3/objects/contacts/batch/upsert",
        "POST",
        lambda rows: {
            "inputs": [
                {
                    "id": r["email"].strip().lower(),
                    "idProperty": "email",
                    "properties": {
                        "email": r["email"].strip().lower(),
                        "firstname": r["first_name"],
                        "lastname": r["last_name"],
                    },
                }
                for r in rows
            ]
        },
    ),
    "mailchimp": Wire(
        "mailchimp",
        500,
        USERS + " AND marketing_consent",
        _mailchimp_session,
        lambda sandbox: f"{sandbox}/mailchimp/3.0/lists/sandbox-list",
        "POST",
        lambda rows: {
            "members": [
                {
                    "email_address": r["email"].strip().lower(),
                    "status_if_new": "subscribed",
                    "merge_fields": {"FNAME": r["first_name"], "LNAME": r["last_name"]},
                }
                for r in rows
            ],
            "update_existing": True,
        },
    ),
    "salesforce": Wire(
        "salesforce",
        200,
        USERS,
        _salesforce_session,
        lambda sandbox: "{instance}/services/data/v62.0/composite/sobjects/Contact/ENNU_User_Id__c",
        "PATCH",
        lambda rows: {
            "allOrNone": False,
            "records": [
                {
                    "attributes": {"type": "Contact"},
                    "ENNU_User_Id__c": str(r["id"]),
                    "Email": r["email"].strip().lower(),
                    "FirstName": r["first_name"],
                    "LastName": r["last_name"],
                }
                for r in rows
            ],
        },
    ),
}


def _url(wire: Wire, sandbox: str, session: requests.Session) -> str:
    instance = getattr(session, "salesforce_instance", "")
    return wire.url(sandbox).replace("{instance}", instance)


def _send(wire: Wire, sandbox: str, session: requests.Session, rows: list[dict[str, Any]]) -> None:
    response = session.request(wire.method, _url(wire, sandbox, session), json=wire.body(rows), timeout=60)
    response.raise_for_status()


def _rows(query: str) -> list[dict[str, Any]]:
    import pandas as pd
    from sqlalchemy import text

    from ennu.db import get_engine

    with get_engine().connect() as connection:
        rows: list[dict[str, Any]] = pd.read_sql(text(query), connection).to_dict("records")  # type: ignore[assignment]
        return rows


def _batches(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


# ------------------------------------------------------------------------------------------ the paths


def run_raw(connector: str, sandbox: str) -> int:
    """Bodies built first (not timed), then sent on 4 threads, a session each."""
    wire = WIRES[connector]
    rows = _rows(wire.query)
    bodies = [wire.body(part) for part in _batches(rows, wire.batch)]
    sessions = [wire.open_session(sandbox) for _ in range(THREADS)]

    def send(n: int) -> None:
        session = sessions[n % THREADS]
        url = _url(wire, sandbox, session)
        session.request(wire.method, url, json=bodies[n], timeout=60).raise_for_status()

    _CLOCK.start()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(send, range(len(bodies))))
    return len(rows)


def run_script(connector: str, sandbox: str) -> int:
    """What a data engineer would write by hand: read, map, post, one batch after another."""
    wire = WIRES[connector]
    _CLOCK.start()
    session = wire.open_session(sandbox)
    rows = _rows(wire.query)
    for part in _batches(rows, wire.batch):
        _send(wire, sandbox, session, part)
    return len(rows)


def run_dlt(connector: str, sandbox: str) -> int:
    """dlt's custom destination, fed by a resource reading the same query in chunks."""
    import dlt
    from sqlalchemy import text

    from ennu.db import get_engine

    wire = WIRES[connector]
    session = wire.open_session(sandbox)
    sent = [0]

    @dlt.destination(batch_size=wire.batch, loader_file_format="typed-jsonl", name=f"stand_in_{connector}")
    def stand_in(items: Any, table: Any) -> None:
        rows = list(items)
        _send(wire, sandbox, session, rows)
        sent[0] += len(rows)

    @dlt.resource(name="people", write_disposition="append")
    def people() -> Iterator[list[dict[str, Any]]]:
        with get_engine().connect() as connection:
            result = connection.execution_options(yield_per=wire.batch * 10).execute(text(wire.query))
            for part in result.mappings().partitions(wire.batch * 10):
                yield [dict(row) for row in part]

    workdir = tempfile.mkdtemp(prefix="ennu-bench-dlt-")
    pipeline = dlt.pipeline(pipeline_name=f"bench_{connector}", destination=stand_in, pipelines_dir=workdir)
    _CLOCK.start()
    pipeline.run(people())
    return sent[0]


def run_pipeline(connector: str, sandbox: str) -> int:
    """The product's bulk-sync flow to this one destination, after a small warm run of the same flow."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from sqlalchemy import func, select

    from ennu.db import session_scope
    from ennu.models import SyncLog, SyncStatus, User
    from flows.bulk_sync import bulk_sync

    with session_scope() as session:
        warm_ids = [u for (u,) in session.execute(select(User.id).limit(WARM_RECORDS))]
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        bulk_sync(event_type="user.registered", integrations=[connector], user_ids=warm_ids)
        requests.post(f"{sandbox}/_sandbox/reset", timeout=30).raise_for_status()
        _CLOCK.start()
        bulk_sync(event_type="user.registered", integrations=[connector])
    delivered = (SyncStatus.CREATED.value, SyncStatus.UPDATED.value, SyncStatus.UNCHANGED.value)
    with session_scope() as session:
        by_status = dict(
            session.execute(
                select(SyncLog.status, func.count())
                .where(SyncLog.connector == connector)
                .group_by(SyncLog.status)
            )
            .tuples()
            .all()
        )
        errors = dict(
            session.execute(
                select(SyncLog.error, func.count())
                .where(SyncLog.connector == connector, SyncLog.error.is_not(None))
                .group_by(SyncLog.error)
            )
            .tuples()
            .all()
        )
    print(f"# {connector} pipeline outcomes: {by_status} errors: {errors}", file=sys.stderr, flush=True)
    from connectors.rate_limit import limit_name, taken_slots

    slots = taken_slots(limit_name(connector))
    print(
        f"# {connector} rate limit: {slots.round_trips} round trips to the Prefect API, "
        f"{slots.blocked_seconds:.2f} s in them (warm-up included)",
        file=sys.stderr,
        flush=True,
    )
    count = sum(int(by_status.get(status, 0)) for status in delivered)
    return int(count) - WARM_RECORDS if count > WARM_RECORDS else int(count)


RUNNERS: dict[str, Callable[[str, str], int]] = {
    "raw": run_raw,
    "script": run_script,
    "dlt": run_dlt,
    "pipeline": run_pipeline,
}


class _Clock:
    """When the measured part of a path began (wall and this process's CPU); with --profile, py-spy samples
    the measured part only (attached to this process then, not its warm-up or imports)."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.spy: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = os.environ.get("ENNU_BENCH_PROFILE")
        if out:
            spy = str(Path(PY).with_name("py-spy"))
            # wall: every thread's every sample (where each waits too); cpu: the GIL holder's only
            what = ["--gil"] if os.environ.get("ENNU_BENCH_PROFILE_WHAT") == "cpu" else ["--idle"]
            command = [spy, "record", "--nonblocking", "--threads", *what, "-r", "50", "--format", "raw"]
            command += ["-o", out]
            self.spy = subprocess.Popen(
                [*command, "--pid", str(os.getpid())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(1)  # py-spy attaches before the measured part begins
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)
            self.spy.wait(timeout=60)


_CLOCK = _Clock()


def child(path: str, connector: str, sandbox: str) -> None:
    """One path in this process; prints its JSON line."""
    from sandbox.client import SandboxClient

    with SandboxClient(sandbox) as client:
        before = len(client.requests(WIRES[connector].vendor))
        records = RUNNERS[path](connector, sandbox)
        seconds = time.perf_counter() - _CLOCK.wall
        cpu = time.process_time() - _CLOCK.cpu
        _CLOCK.stop()
        calls = len(client.requests(WIRES[connector].vendor)) - before
    line = {
        "connector": connector,
        "path": path,
        "records": records,
        "http_calls": calls,
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds, 1) if seconds else None,
        "cpu_s_per_1000": round(1000 * cpu / records, 3) if records else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(line), flush=True)


# ------------------------------------------------------------------------------------------ the parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: {what} did not start within {seconds:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--records", type=int, default=10_000, help="people in the host tables (default 10000)"
    )
    parser.add_argument("--connectors", default=",".join(CONNECTORS), help="comma-separated (default: all)")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {','.join(PATHS)}")
    parser.add_argument(
        "--prefect-database",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="the Prefect server's database (default postgresql, as a deployment with workers runs it; "
        "sqlite: the test harness)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="sample the measured part of each path with py-spy (installed apart), per thread, into "
        "DIR/<connector>-<path>.raw",
    )
    parser.add_argument(
        "--profile-what",
        choices=("wall", "cpu"),
        default="wall",
        help="with --profile: wall (every thread, waiting too; default) or cpu (the GIL holder only)",
    )
    parser.add_argument("--child", nargs=3, metavar=("PATH", "CONNECTOR", "SANDBOX"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return
    connectors = [c for c in args.connectors.split(",") if c]
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted((set(connectors) - set(WIRES)) | (set(paths) - set(PATHS)))
    if unknown:
        parser.error(f"unknown: {unknown}")

    from bench.seed import demo_people
    from ennu.db import migrate
    from ennu.settings import reload_settings

    directory = Path(tempfile.mkdtemp(prefix="ennu-bench-peers-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{directory / 'bench.db'}"
    port = _free_port()
    sandbox = f"http://127.0.0.1:{port}"
    os.environ["ENNU_SANDBOX_URL"] = sandbox
    reload_settings()
    migrate()
    started = time.perf_counter()
    demo_people(args.records)
    print(
        f"# {args.records} demo people in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True
    )
    stand_in = subprocess.Popen(
        [PY, "-m", "sandbox", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(f"{sandbox}/_sandbox/health", "the stand-in")
        with prefect_server(args.prefect_database, directory) as api_url:
            # The peers write Salesforce Contacts alone: so does the pipeline here (the product's default
            # also upserts each Contact's Account in the same Composite request; tests/test_request_cost.py
            # counts that).
            env = {**os.environ, "PREFECT_API_URL": api_url, "SALESFORCE_ACCOUNT_MODEL": "none"}
            for connector in connectors:
                figures: dict[str, dict[str, Any]] = {}
                for path in paths:
                    requests.post(f"{sandbox}/_sandbox/reset", timeout=30).raise_for_status()
                    command = [PY, "-m", "bench.peers", "--child", path, connector, sandbox]
                    profile = {}
                    if args.profile:
                        out = Path(args.profile).resolve() / f"{connector}-{path}.raw"
                        profile = {
                            "ENNU_BENCH_PROFILE": str(out),
                            "ENNU_BENCH_PROFILE_WHAT": args.profile_what,
                        }
                    done = subprocess.run(
                        command,
                        env={**env, **profile},
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
                    for said in done.stderr.splitlines():
                        if said.startswith("# "):  # the child's own remarks (outcomes, never values)
                            print(said, file=sys.stderr, flush=True)
                    if done.returncode or not lines:
                        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                        print(f"# {connector} {path} failed: {tail[:200]}", file=sys.stderr, flush=True)
                        continue
                    print(lines[-1], flush=True)
                    figures[path] = json.loads(lines[-1])
                _ratios(connector, figures)
    finally:
        stand_in.terminate()
        stand_in.wait(timeout=30)


@contextlib.contextmanager
def prefect_server(database: str, directory: Path) -> Iterator[str]:
    """A Prefect server for the run: `prefect server start` on its own PostgreSQL database, or the test
    harness on SQLite; its API URL."""
    if database == "sqlite":
        from prefect.settings import PREFECT_API_URL

        from bench.harness import prefect_api

        with prefect_api():
            yield str(PREFECT_API_URL.value())
        return
    import psycopg

    admin = os.environ.get("ENNU_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"prefect_peers_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    port = _free_port()
    server_url = admin.split("://", 1)[1].rsplit("/", 1)[0]
    env = {
        **os.environ,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://{server_url}/{name}",
        "PREFECT_HOME": str(directory / "prefect-home"),
        "PREFECT_UI_ENABLED": "false",
    }
    log = (directory / "prefect-server.log").open("w")
    server = subprocess.Popen(
        [PY, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/api/health", "the Prefect server", seconds=300)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _ratios(connector: str, figures: dict[str, dict[str, Any]]) -> None:
    ours = (figures.get("pipeline") or {}).get("records_per_s")
    if not ours:
        return
    line: dict[str, Any] = {"connector": connector, "ratios": {}}
    for peer in ("raw", "script", "dlt"):
        theirs = (figures.get(peer) or {}).get("records_per_s")
        if theirs:
            line["ratios"][f"pipeline/{peer}"] = round(ours / theirs, 3)
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
