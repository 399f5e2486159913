"""How close to a vendor's stated limit we send, and that we never pass it: against the stand-in's own 429s.

The stand-in enforces the limit the way the vendor states it (HubSpot: at most 190 requests in any 10 s, a
sliding window) and answers 429 past it; the product runs with the same figure as its setting
(HUBSPOT_RATE_LIMIT=190/10s) and its global limit on a real Prefect server. Two lines of JSON:

  limiter   the product's HubSpot client, 4 threads sending as fast as they may for --seconds: the
            rate limit alone
  pipeline  a bulk sync of --records people to HubSpot under the same limit, warm (as bench.peers runs
            it): what the whole product achieves (below the limit when the pipeline itself is slower
            than the vendor allows)

each with the requests the stand-in accepted, the 429s it answered, the most it accepted in any one
window (never above the limit), the seconds, the accepted rate and that rate as a share of what the
limit allows over that time, and over the path's sending alone (first accepted request to last: a
bulk run's fixed start, its first chunk read and prepared, and its summary at the end left out); then
the limit's round trips to Prefect, the seconds requests waited on them and on the bucket, and the
round trips' share of the path's time.

  python -m bench.vendor_pace [--rate 190/10s] [--seconds 30] [--records 20000] [--paths limiter]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

# bench.peers also sets the bench's environment on import
from bench.peers import PY, WARM_RECORDS, _free_port, _wait, prefect_server

THREADS = 4


def allowed(rate: Any, seconds: float) -> float:
    """Requests a window limit allows over `seconds`: its count per window, pro rata (at least one window)."""
    return float(rate.requests * max(1.0, seconds / rate.seconds))


def accepted_times(sandbox: str) -> tuple[list[float], int]:
    """When the HubSpot stand-in accepted each request (sorted), and how many it refused with 429."""
    log = requests.get(f"{sandbox}/_sandbox/hubspot/requests", timeout=30).json()
    times = sorted(datetime.fromisoformat(r["at"]).timestamp() for r in log if r["status"] < 400)
    return times, sum(1 for r in log if r["status"] == 429)


def busiest_window(times: list[float], window_seconds: float) -> int:
    """The most requests accepted within any one window of the vendor's length."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - window_seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


def line(path: str, sandbox: str, rate: Any, seconds: float) -> dict[str, Any]:
    times, refused = accepted_times(sandbox)
    ok = len(times)
    # From the first accepted request to the last: the path's sending, without what came before its first
    # request (a bulk run's first chunk read and prepared) or after its last (the run's summary).
    span = times[-1] - times[0] if times else 0.0
    return {
        "path": path,
        "limit": str(rate),
        "accepted": ok,
        "refused_429": refused,
        "busiest_window": busiest_window(times, rate.seconds),
        "seconds": round(seconds, 2),
        "accepted_per_s": round(ok / seconds, 2),
        "share_of_allowed": round(ok / allowed(rate, seconds), 3),
        "sending_s": round(span, 2),
        "share_of_allowed_sending": round(ok / allowed(rate, span), 3),
    }


def slot_figures(seconds: float, before: tuple[int, float, float] = (0, 0.0, 0.0)) -> dict[str, Any]:
    """The HubSpot limit's round trips to Prefect, the seconds in them and waiting for the bucket, and
    the round trips' share of the path's time (requests wait on them: one refill at a time); less
    `before` (`slot_counts()` when the measured part began)."""
    trips, trip_s, waited = (now - then for now, then in zip(slot_counts(), before, strict=True))
    return {
        "round_trips": int(trips),
        "round_trip_s": round(trip_s, 2),
        "bucket_wait_s": round(waited, 2),
        "acquire_share": round(trip_s / seconds, 3),
    }


def slot_counts() -> tuple[int, float, float]:
    from connectors.rate_limit import limit_name, taken_slots

    slots = taken_slots(limit_name("hubspot"))
    return slots.round_trips, slots.round_trip_seconds, slots.waited_seconds


def fresh_stand_in(sandbox: str, rate: Any) -> None:
    """The stand-in emptied, with the vendor's window limit."""
    window = {"per_second": None, "requests": rate.requests, "window_seconds": rate.seconds}
    requests.post(f"{sandbox}/_sandbox/reset", timeout=30).raise_for_status()
    requests.post(f"{sandbox}/_sandbox/hubspot/rate", json=window, timeout=30).raise_for_status()


def run_limiter(sandbox: str, rate: Any, seconds: float) -> dict[str, Any]:
    from tasks.push import connector_for

    http = connector_for("hubspot").http  # type: ignore[attr-defined]
    stop = time.monotonic() + seconds

    def send() -> None:
        from connectors.http import ConnectorError

        while time.monotonic() < stop:
            try:
                http.request("GET", "/account-info/v3/details")
            except ConnectorError:  # a 429 past the client's own retries: counted at the stand-in
                continue

    started = time.monotonic()
    threads = [threading.Thread(target=send) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    return {**line("limiter", sandbox, rate, seconds), **slot_figures(seconds)}


def run_pipeline(sandbox: str, rate: Any) -> dict[str, Any]:
    """A bulk sync of every person, warm as bench.peers runs it: after a small run of the same flow (its
    imports, Great Expectations' first validation, the vendor's schema calls), without Prefect's flow-run
    heartbeat thread (as in the delivery worker); the stand-in emptied between the two."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from sqlalchemy import select

    from ennu.db import session_scope
    from ennu.models import User
    from flows.bulk_sync import bulk_sync

    with session_scope() as session:
        warm_ids = list(session.execute(select(User.id).limit(WARM_RECORDS)).scalars())
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        bulk_sync(event_type="user.registered", integrations=["hubspot"], user_ids=warm_ids)
        fresh_stand_in(sandbox, rate)
        before = slot_counts()
        started = time.monotonic()
        bulk_sync(event_type="user.registered", integrations=["hubspot"])
        seconds = time.monotonic() - started
    figures = {**line("pipeline", sandbox, rate, seconds), **slot_figures(seconds, before)}
    figures["note"] = "requests are the vendor's batch upserts (100 records each) and its schema calls"
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rate", default="190/10s", help="HubSpot's limit, at the stand-in and in the product"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the limiter path sends")
    parser.add_argument("--records", type=int, default=20_000, help="people for the pipeline path")
    parser.add_argument(
        "--paths", default="limiter,pipeline", help="the paths to run, in order (limiter, pipeline)"
    )
    parser.add_argument("--prefect-database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument(
        "--child", nargs=4, metavar=("PATH", "SANDBOX", "RATE", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        path, sandbox_url, limit, seconds = args.child
        from connectors.request_rate import parse_rate as parse
        from ennu.settings import reload_settings as reload

        os.environ["HUBSPOT_RATE_LIMIT"] = limit  # the bench's environment lifted every rate on import
        reload()

        figures = (
            run_limiter(sandbox_url, parse(limit), float(seconds))
            if path == "limiter"
            else run_pipeline(sandbox_url, parse(limit))
        )
        print(json.dumps(figures), flush=True)
        return

    from bench.seed import demo_people
    from connectors.request_rate import parse_rate
    from ennu.db import migrate
    from ennu.settings import reload_settings

    rate = parse_rate(args.rate)
    directory = Path(tempfile.mkdtemp(prefix="ennu-bench-pace-"))
    sandbox = f"http://127.0.0.1:{_free_port()}"
    os.environ.update(
        DATABASE_URL=f"sqlite:///{directory / 'bench.db'}",
        ENNU_SANDBOX_URL=sandbox,
        HUBSPOT_RATE_LIMIT=str(rate),
    )
    reload_settings()
    migrate()
    demo_people(args.records)
    port = sandbox.rsplit(":", 1)[1]
    stand_in = subprocess.Popen(
        [PY, "-m", "sandbox", "--port", port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(f"{sandbox}/_sandbox/health", "the stand-in")
        with prefect_server(args.prefect_database, directory) as api_url:
            env = {**os.environ, "PREFECT_API_URL": api_url}  # each path in its own process, on this server
            for path in args.paths.split(","):
                fresh_stand_in(sandbox, rate)
                child = [
                    PY,
                    "-m",
                    "bench.vendor_pace",
                    "--child",
                    path,
                    sandbox,
                    str(rate),
                    str(args.seconds),
                ]
                done = subprocess.run(child, env=env, capture_output=True, text=True, check=False)
                lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
                if done.returncode or not lines:
                    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    print(f"# {path} failed: {tail[:300]}", file=sys.stderr, flush=True)
                    continue
                print(lines[-1], flush=True)
                time.sleep(rate.seconds)  # the window empties: the next path starts as the first did
    finally:
        stand_in.terminate()
        stand_in.wait(timeout=30)
        print(f"# load average {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
