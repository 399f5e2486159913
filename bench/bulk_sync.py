"""Bulk-sync N completed assessments through the real tasks to the sandbox; batched versus one request each.

Prints one JSON line per connector and mode:
{"connector", "mode", "records", "http_calls", "seconds", "records_per_s", "peak_rss_mb"}

Runs against its own SQLite database and sandbox, and a Prefect test harness (or PREFECT_API_URL when set).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ["ENNU_SECRET_BLOCKS"] = "false"  # noqa: S105 - a switch, not a secret
os.environ.setdefault("HUBSPOT_REQUESTS_PER_HOUR", "36000000")
os.environ.setdefault("MAILCHIMP_REQUESTS_PER_HOUR", "36000000")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(connector: str, mode: str, records: int, calls: int, seconds: float) -> None:
    print(
        json.dumps(
            {
                "connector": connector,
                "mode": mode,
                "records": records,
                "http_calls": calls,
                "seconds": round(seconds, 3),
                "records_per_s": round(records / seconds, 1) if seconds else None,
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        ),
        flush=True,
    )


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def seed_events(people: int) -> list[str]:
    """Synthetic people with a completed assessment each, and their outbox events."""
    from sqlalchemy import select

    from ennu.db import session_scope
    from ennu.demo import generate_demo
    from ennu.events import HostEvent
    from ennu.models import Assessment
    from ennu.outbox import ingest

    generate_demo(people=people, seed=11, invalid_fraction=0.0)
    with session_scope() as session:
        rows = session.execute(
            select(Assessment.user_id, Assessment.id)
            .where(Assessment.status == "completed")
            .order_by(Assessment.user_id, Assessment.id.desc())
        ).all()
    latest = {user_id: assessment_id for user_id, assessment_id in rows}  # one per person
    now = datetime.now(UTC)
    return [
        ingest(
            HostEvent(
                id=f"bench-{a}", type="assessment.completed", occurred_at=now, subject=u, resource=str(a)
            ),
            emit=False,
        ).event_id
        for u, a in latest.items()
    ]


def naive_push(connector_name: str, records: list, upsert_key: str, object_name: str) -> tuple[int, float]:
    """The same records, one request each (no batching): what the batch endpoints save."""
    from tasks.push import connector_for

    connector = connector_for(connector_name)
    before = connector.http.counter.calls  # type: ignore[attr-defined]
    started = time.perf_counter()
    for rec in records:
        connector.push(object_name, upsert_key, [rec])
    return connector.http.counter.calls - before, time.perf_counter() - started  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument(
        "--naive-records",
        type=int,
        default=None,
        help="records for the one-request-each comparison (default: same as --records)",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ennu-bench-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
    from ennu.db import migrate
    from ennu.settings import reload_settings
    from sandbox.client import SandboxClient
    from sandbox.server import start_sandbox

    with start_sandbox() as running, prefect_api():
        os.environ["ENNU_SANDBOX_URL"] = running.url
        reload_settings()
        migrate()
        sandbox = SandboxClient(running.url)
        event_ids = seed_events(args.records)
        print(f"# {len(event_ids)} events seeded in {workdir}", file=sys.stderr, flush=True)

        from prefect import flow

        from flows.pipeline import run_event_pipeline

        @flow(name="bench-bulk-sync")
        def bulk(ids: list[str]) -> None:
            run_event_pipeline("assessment.completed", ids, force=True)

        started = time.perf_counter()
        bulk(event_ids)
        seconds = time.perf_counter() - started
        for connector in ("hubspot", "mailchimp"):
            emit(
                connector,
                "batched",
                len(sandbox.objects(connector, {"hubspot": "contacts", "mailchimp": "members"}[connector])),
                len(sandbox.requests(connector)),
                seconds,
            )

        # The naive comparison: same mapped records, one request each.
        from ennu.settings import get_settings
        from mappings import apply_mapping, load_all_mappings
        from tasks.extract import extract_records
        from tasks.push import to_records
        from tasks.validate import validate_mapped

        naive_n = args.naive_records or args.records
        frame = extract_records("assessment.completed", event_ids[:naive_n]).frame
        for (event_type, name), mapping in load_all_mappings(get_settings().mappings_dir).items():
            if event_type != "assessment.completed":
                continue
            records = to_records(validate_mapped(mapping, apply_mapping(mapping, frame)).valid)
            calls, secs = naive_push(name, records, mapping.upsert_key, mapping.object)
            emit(name, "one-request-each", len(records), calls, secs)


if __name__ == "__main__":
    main()
