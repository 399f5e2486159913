"""Per connector: which event type feeds it, what it stores, and how one bench run of it goes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time
from pathlib import Path
from time import perf_counter

from prefect import flow

from bench.measure import BenchLine
from connectors.twilio import TwilioConnector
from devtools.routing import routing_copy
from ennu.settings import get_settings, reload_settings
from ennu.zapier_subscriptions import ZapierSubscriptions
from flows.pipeline import PUSH_RUNNER, SummaryTable, run_event_pipeline
from mappings import apply_mapping, load_all_mappings
from tasks.extract import extract_records
from tasks.push import connector_for, to_records
from tasks.validate import validate_mapped

# Twilio sends only between 08:00 and 21:00 in the person's zone; at 19:00 UTC that holds in every US zone
# of the demo data (Honolulu 09:00, New York 14:00), so the bench measures sending, not quiet-hour deferrals.
TWILIO_BENCH_HOUR_UTC = 19


@dataclass(frozen=True)
class Scenario:
    """One connector's bench: the event type routed to it and the destination object whose rows count."""

    connector: str
    event_type: str
    object: str
    vendor: str  # the sandbox's name for the stand-in (the request log is per stand-in)
    # The option that sizes it: "records" (batch vendors), "message_records" (about a request per record or
    # person) or "notices" (chat messages, within their fixed burst).
    size: str
    naive: bool = False  # also measure the same records one request each
    note: str = ""

    @property
    def destination(self) -> str:
        return f"{self.connector}/{self.object}"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("hubspot", "assessment.completed", "contacts", "hubspot", "records", naive=True),
    Scenario("mailchimp", "assessment.completed", "members", "mailchimp", "records", naive=True),
    Scenario(
        "salesforce",
        "user.registered",
        "Contact",
        "salesforce",
        "records",
        naive=True,
        note="includes the one OAuth token request of the run",
    ),
    Scenario(
        "ga4",
        "assessment.completed",
        "events",
        "ga4",
        "message_records",
        note="a Measurement Protocol request carries one client_id: one person's event each here",
    ),
    Scenario(
        "epic_fhir",
        "biomarker.updated",
        "observations",
        "fhir",
        "message_records",
        note="token, metadata, a Patient search per person, a transaction bundle per 100 results",
    ),
    Scenario(
        "zapier",
        "assessment.completed",
        "hooks",
        "zapier",
        "message_records",
        note="one POST per record and subscribed hook (one hook here)",
    ),
    Scenario(
        "stripe",
        "user.registered",
        "customers",
        "stripe",
        "message_records",
        note="a list by e-mail and a create (or update) per customer",
    ),
    Scenario(
        "twilio",
        "health_goal.completed",
        "messages",
        "twilio",
        "message_records",
        note=f"one SMS a request; clock at {TWILIO_BENCH_HOUR_UTC}:00 UTC (within sending hours)",
    ),
    Scenario(
        "slack",
        "biomarker.updated",
        "messages",
        "slack",
        "notices",
        note="critical-result notices, one message each; Slack's 1 a second per webhook (no setting)",
    ),
    Scenario(
        "teams",
        "biomarker.updated",
        "messages",
        "teams",
        "notices",
        note="critical-result notices, one card each; 3600 an hour fixed in code (no setting)",
    ),
)
NOTICE_CHANNELS = ("slack", "teams")


def warm_up(event_type: str, event_ids: list[str]) -> None:
    """One run that pushes nothing, so that the first connector's figures do not carry Prefect's start-up."""
    bench_pipeline(event_type, event_ids, [])


@flow(name="bench-connector", task_runner=PUSH_RUNNER, log_prints=False)
def bench_pipeline(event_type: str, event_ids: list[str], only: list[str]) -> SummaryTable:
    """The event flows' pipeline, restricted to one destination (critical notices are routes too)."""
    return run_event_pipeline(event_type, event_ids, force=True, only=only)


def run_batched(scenario: Scenario, event_ids: list[str], request_count: Callable[[str], int]) -> BenchLine:
    """The real pipeline for this connector's event type; requests counted at the sandbox before and after."""
    before = request_count(scenario.vendor)
    with prepared(scenario):
        started = perf_counter()
        summary = bench_pipeline(scenario.event_type, event_ids, [scenario.connector])
        seconds = perf_counter() - started
    rows = [row for row in summary if row["destination"] == scenario.destination]
    return BenchLine(
        scenario.connector,
        scenario.event_type,
        "batched",
        sum(int(row["sent"]) for row in rows),
        request_count(scenario.vendor) - before,
        seconds,
        failed=sum(int(row["failed"]) for row in rows),
        note=scenario.note,
    )


def run_one_each(scenario: Scenario, event_ids: list[str], request_count: Callable[[str], int]) -> BenchLine:
    """The same mapped records pushed one request each: what the vendor's batch endpoint saves."""
    mapping = load_all_mappings(get_settings().mappings_dir)[(scenario.event_type, scenario.connector)]
    frame = extract_records(scenario.event_type, event_ids).frame
    records = to_records(validate_mapped(mapping, apply_mapping(mapping, frame)).valid)
    connector = connector_for(scenario.connector)
    before = request_count(scenario.vendor)
    started = perf_counter()
    for record in records:
        connector.push(mapping.object, mapping.upsert_key, [record])
    seconds = perf_counter() - started
    return BenchLine(
        scenario.connector,
        scenario.event_type,
        "one-request-each",
        len(records),
        request_count(scenario.vendor) - before,
        seconds,
    )


@contextlib.contextmanager
def prepared(scenario: Scenario) -> Iterator[None]:
    """What a connector needs for its run: a Zap subscription, a daytime clock, its channel switched on."""
    name = scenario.connector
    if name == "zapier":
        ZapierSubscriptions().add(scenario.event_type, f"{get_settings().sandbox_url}/zapier/hooks/bench")
    elif name == "twilio":
        connector = connector_for("twilio")
        assert isinstance(connector, TwilioConnector)
        daytime = datetime.combine(datetime.now(UTC).date(), time(TWILIO_BENCH_HOUR_UTC), UTC)
        connector.clock = lambda: daytime
    if name not in NOTICE_CHANNELS:
        yield
        return
    previous = os.environ.get("ENNU_MAPPINGS_DIR")
    copy = routing_copy(
        Path(tempfile.mkdtemp(prefix="ennu-bench-routing-")) / "mappings",
        enable=[name],
        source=get_settings().mappings_dir,
    )
    os.environ["ENNU_MAPPINGS_DIR"] = str(copy)
    reload_settings()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("ENNU_MAPPINGS_DIR", None)
        else:
            os.environ["ENNU_MAPPINGS_DIR"] = previous
        reload_settings()
