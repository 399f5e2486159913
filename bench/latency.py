"""End-to-end latency against a running `make up`: POST /events → the record arriving at the sandbox.

Adds N synthetic people with a completed assessment to the running system's database, posts one
`assessment.completed` event per person to the intake API (one every `--interval` seconds, or all at once
with `--interval 0`), and watches the sandbox's HubSpot contacts until each person's contact appears.
Prints one JSON line: events, arrived, median_s, p95_s, max_s, interval_s. Needs `make up` running (and
the same DATABASE_URL, by default the embedded SQLite `.ennu/ennu.db`).

    .venv/bin/python -m bench.latency --events 100 --interval 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime

import requests

from ennu.db import session_scope
from ennu.models import Assessment, AssessmentScore, User
from ennu.settings import get_settings
from sandbox.client import SandboxClient


def add_people(count: int, run: str) -> dict[str, tuple[int, int]]:
    """Synthetic people with one completed assessment each: {e-mail: (user id, assessment id)}."""
    made: dict[str, tuple[int, int]] = {}
    with session_scope() as session:
        for n in range(count):
            email = f"latency.{run}.{n}@example.test"
            user = User(
                first_name="Lat",
                last_name=f"Ency{n}",
                email=email,
                date_of_birth=date(1985, 1, 1 + n % 28),
                timezone="America/New_York",
                marketing_consent=True,
                communication_consent=False,
            )
            session.add(user)
            session.flush()
            now = datetime.now(UTC)
            assessment = Assessment(
                user_id=user.id,
                type="sleep",
                status="completed",
                started_at=now,
                completed_at=now,
                overall_score=7.0,
            )
            session.add(assessment)
            session.flush()
            session.add(AssessmentScore(assessment_id=assessment.id, category="energy", score=7.0))
            made[email] = (user.id, assessment.id)
    return made


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between posts (0: a burst)")
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--sandbox", default=None, help="default: ENNU_SANDBOX_URL")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up waiting after this long")
    args = parser.parse_args(argv)
    settings = get_settings()
    sandbox = (args.sandbox or settings.sandbox_url).rstrip("/")
    token = settings.intake_token.get_secret_value()
    run = uuid.uuid4().hex[:8]
    people = add_people(args.events, run)

    posted: dict[str, float] = {}
    arrived: dict[str, float] = {}
    session = requests.Session()
    stand_ins = SandboxClient(sandbox, timeout=30)

    def poll() -> None:
        contacts = stand_ins.objects("hubspot", "contacts")
        now = time.monotonic()
        for contact in contacts:
            email = str(contact.get("properties", {}).get("email", ""))
            if email in posted and email not in arrived:
                arrived[email] = now

    for n, (email, (user_id, assessment_id)) in enumerate(people.items()):
        response = session.post(
            f"{args.api}/events",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "id": f"latency-{run}-{n}",
                "type": "assessment.completed",
                "occurred_at": datetime.now(UTC).isoformat(),
                "subject": user_id,
                "resource": str(assessment_id),
            },
            timeout=30,
        )
        response.raise_for_status()
        posted[email] = time.monotonic()
        deadline = time.monotonic() + args.interval
        while time.monotonic() < deadline:
            poll()
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
    deadline = time.monotonic() + args.timeout
    while len(arrived) < len(posted) and time.monotonic() < deadline:
        poll()
        time.sleep(0.25)
    latencies = [arrived[e] - posted[e] for e in arrived]
    print(
        json.dumps(
            {
                "events": len(posted),
                "arrived": len(arrived),
                "interval_s": args.interval,
                "median_s": round(statistics.median(latencies), 2) if latencies else None,
                "p95_s": round(percentile(latencies, 0.95), 2) if latencies else None,
                "max_s": round(max(latencies), 2) if latencies else None,
            }
        )
    )
    return 0 if len(arrived) == len(posted) else 1


if __name__ == "__main__":
    sys.exit(main())
