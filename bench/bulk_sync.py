"""Bulk-sync demo records through the real pipeline to every connector's sandbox stand-in; one line each.

Each connector is run alone (the event flows' pipeline with only that destination) on the demo data's
records of the event type routed to it, and one JSON line is printed:

  {"connector", "event_type", "mode", "records", "http_calls", "seconds", "failed", "records_per_s",
   "requests_per_1000", "peak_rss_mb", "note"}

http_calls are counted from the sandbox's log of what it received. "records" is what the pipeline sent
(consent and validation leave some people out); "failed" of them were refused per record by the vendor.
seconds cover the whole pipeline (extract, route, map, validate, push, record), after a warm-up run.
HubSpot, Mailchimp and Salesforce get a second line, "one-request-each": the same records unbatched.

  connector   event type             records of   cost floor
  hubspot     assessment.completed   --records    100 a request
  mailchimp   assessment.completed   --records    500 a request
  salesforce  user.registered        --records    200 a request (+ one OAuth token a run)
  ga4         assessment.completed   --message-records   25 events a request, of one client_id
  epic_fhir   biomarker.updated      --message-records   100 a bundle (+ a Patient search a person)
  zapier      assessment.completed   --message-records   one POST per record and hook
  stripe      user.registered        --message-records   list + create per customer
  twilio      health_goal.completed  --message-records   one SMS a request
  slack       critical results       --notices    one message a request, 1/s per webhook
  teams       critical results       --notices    one card a request

Runs against its own SQLite database, sandbox and Prefect test harness (or PREFECT_API_URL when set).
Vendor credentials in the environment are ignored, and every *_RATE_LIMIT is raised, so the
figures are our cost, not the vendors' allowance.
"""

from __future__ import annotations

import argparse
import sys

from bench.harness import bench_environment, workspace

bench_environment()  # before Prefect is imported

from bench.measure import emit, request_shapes  # noqa: E402
from bench.scenarios import SCENARIOS, Scenario, run_batched, run_one_each, warm_up  # noqa: E402
from bench.seed import critical_results, demo_people, events_for  # noqa: E402
from connectors.http import ConnectorError  # noqa: E402

NAMES = [s.connector for s in SCENARIOS]
# Demo people per record needed: a completed goal with SMS consent is about 1 person in 6.
PEOPLE_PER_MESSAGE_RECORD = 8
WARM_UP_EVENTS = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bulk_sync",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--connectors",
        type=lambda text: [n.strip() for n in text.split(",") if n.strip()],
        default=NAMES,
        help=f"comma-separated subset, in this order: {','.join(NAMES)} (default: all)",
    )
    parser.add_argument(
        "--records", type=int, default=3000, help="records for the batched connectors (default 3000)"
    )
    parser.add_argument(
        "--message-records",
        type=int,
        default=100,
        help="records for connectors that cost about a request a record or person: "
        "ga4, epic_fhir, zapier, stripe, twilio (default 100)",
    )
    parser.add_argument(
        "--notices",
        type=int,
        default=20,
        help="critical results noticed to slack and teams (default 20: Slack takes one a second)",
    )
    parser.add_argument(
        "--naive-records",
        type=int,
        default=100,
        help="records for the one-request-each comparison (default 100; 0 skips it)",
    )
    parser.add_argument(
        "--paths",
        action="store_true",
        help="also print, to stderr, each run's requests by method and path shape (ids masked)",
    )
    parser.add_argument(
        "--people", type=int, default=None, help="demo people (default: enough for the above)"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.connectors) - set(NAMES))
    if unknown:
        parser.error(f"unknown connectors {unknown}; known: {NAMES}")
    return args


def size_of(scenario: Scenario, args: argparse.Namespace) -> int:
    return int(getattr(args, scenario.size))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    chosen = [s for s in SCENARIOS if s.connector in args.connectors]
    people = args.people or max(
        args.records * 5 // 4, args.message_records * PEOPLE_PER_MESSAGE_RECORD, args.notices, 1
    )
    with workspace() as ws:
        demo_people(people)
        print(f"# {people} demo people in {ws.directory}", file=sys.stderr, flush=True)

        def request_count(vendor: str) -> int:
            return len(ws.sandbox.requests(vendor))

        warm_up("user.registered", events_for("user.registered", WARM_UP_EVENTS))

        failed = 0
        for scenario in chosen:
            if scenario.size == "notices":
                event_ids = critical_results(size_of(scenario, args))
            else:
                event_ids = events_for(scenario.event_type, size_of(scenario, args))
            runs = [("batched", run_batched, event_ids)]
            if scenario.naive and args.naive_records:
                runs.append(("one-request-each", run_one_each, event_ids[: args.naive_records]))
            for mode, run, ids in runs:
                first = request_count(scenario.vendor)
                try:
                    emit(run(scenario, ids, request_count))
                except Exception as exc:  # one connector's trouble does not hide the others' figures
                    failed += 1
                    # The vendor's status and code, or the error's type: never a message that may quote data.
                    why = exc.reason if isinstance(exc, ConnectorError) else type(exc).__name__
                    print(f"# {scenario.connector} {mode} failed: {why}", file=sys.stderr, flush=True)
                if args.paths:
                    shapes = request_shapes(ws.sandbox.requests(scenario.vendor)[first:])
                    print(f"# {scenario.connector} {mode} requests: {shapes}", file=sys.stderr, flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
