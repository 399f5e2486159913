"""Per-integration rate limits are Prefect global concurrency limits, shared by every process."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import rate_limit

from connectors.rate_limit import SLOTS_PER_REQUEST, RateLimit, limit_name
from connectors.registry import UNLIMITED
from connectors.request_rate import parse_rate
from flows.assessment_completed import assessment_completed
from tests.factories import person_with_assessment

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_a_flow_run_creates_each_integrations_limit_from_settings(sqlite_database: str, sandbox: Any) -> None:
    assessment_completed(event_ids=[person_with_assessment()[2]])
    with get_client(sync_client=True) as client:
        hubspot = client.read_global_concurrency_limit_by_name(limit_name("hubspot"))
        mailchimp = client.read_global_concurrency_limit_by_name(limit_name("mailchimp"))
    # tests/conftest.py sets every rate to UNLIMITED (1,000,000 a second); a request is ten slots
    expected = RateLimit("hubspot", parse_rate(UNLIMITED))
    assert hubspot.slot_decay_per_second == pytest.approx(expected.slots_per_second * SLOTS_PER_REQUEST)
    assert hubspot.limit == expected.burst * SLOTS_PER_REQUEST == 500_000
    assert mailchimp.slot_decay_per_second == pytest.approx(expected.slots_per_second * SLOTS_PER_REQUEST)


@pytest.mark.parametrize(
    ("rate", "burst", "per_second", "share"),
    [
        ("190/10s", 9, 17.32, 0.91),
        ("100/10s", 5, 9.13, 0.91),
        ("10/1s", 1, 7.92, 0.79),  # a second's window pays most for the moment a slot is held
        ("15000/24h", 750, 0.165, 0.95),
    ],
)
def test_a_vendor_limit_is_a_bucket_no_window_exceeds(
    rate: str, burst: int, per_second: float, share: float
) -> None:
    """A burst, then a steady rate: in any window of the vendor's length, the burst, the window's refill
    and the slots a process may hold ahead stay within the vendor's count."""
    limit = RateLimit("shape", parse_rate(rate))
    assert (limit.burst, round(limit.slots_per_second, 3)) == (burst, pytest.approx(per_second, abs=0.01))
    worst = limit.burst + limit.slots_per_second * (limit.rate.seconds + limit.hold_seconds)
    assert worst < limit.rate.requests + 1
    assert limit.slots_per_second >= share * limit.rate.per_second


def test_rates_parse_as_vendors_state_them_and_refuse_anything_else() -> None:
    assert [str(parse_rate(r)) for r in ("190/10s", "100/s", "15000/24h", " 6000 / 1h ")] == [
        "190/10s",
        "100/1s",
        "15000/24h",
        "6000/1h",
    ]
    for wrong in ("0/1s", "100", "100/0s", "fast", "10/1w"):
        with pytest.raises(ValueError, match="rate"):
            parse_rate(wrong)


def test_product_defaults_hold_back_the_request_after_the_burst() -> None:
    limit = RateLimit("ratetest", parse_rate("40/1h"))  # a burst of 2, then one every 93 s
    assert (limit.burst, round(limit.slots_per_second, 4)) == (2, 0.0108)
    limit.acquire()
    limit.acquire()
    with pytest.raises(TimeoutError):
        rate_limit(limit.name, occupy=SLOTS_PER_REQUEST, timeout_seconds=1, strict=True)


def test_a_stream_of_requests_takes_slots_in_chunks_not_one_round_trip_each() -> None:
    from connectors.rate_limit import taken_slots

    limit = RateLimit("chunktest", parse_rate(UNLIMITED))  # room for everything: only the cost is measured
    for _ in range(100):
        limit.acquire()
    # Chunks grow with the requests of the last second: 1, 2, 4, … up to the burst.
    assert taken_slots(limit.name).round_trips <= 8


def test_a_push_that_says_how_many_requests_it_will_make_takes_their_slots_in_one_round_trip() -> None:
    from connectors.rate_limit import expect_requests, taken_slots

    limit = RateLimit("expecttest", parse_rate(UNLIMITED))
    expect_requests("expecttest", 20)
    for _ in range(20):
        limit.acquire()
    assert taken_slots(limit.name).round_trips == 1


def test_one_round_trip_takes_the_first_slots_of_every_destination_of_a_batch() -> None:
    from connectors.rate_limit import expect_requests, increments, take_ahead

    limits = [RateLimit(f"aheadtest{n}", parse_rate(UNLIMITED)) for n in range(4)]
    for limit in limits:
        limit.ensure()
        expect_requests(limit.integration, 2)
    before = increments()
    take_ahead(limits)
    for limit in limits:
        limit.acquire()
        limit.acquire()
    assert increments() - before == 1


def test_a_full_limit_leaves_each_push_to_take_its_own() -> None:
    from connectors.rate_limit import expect_requests, take_ahead, taken_slots

    full = RateLimit("aheadfull", parse_rate("1/1h"))  # one at once, then one an hour
    full.acquire()
    free = RateLimit("aheadfree", parse_rate(UNLIMITED))
    for limit in (full, free):
        expect_requests(limit.integration, 1)
    take_ahead([full, free])  # all or nothing at the server: nothing taken
    assert taken_slots(free.name).wanted_ahead(free.burst) == 1
    free.acquire()
    assert taken_slots(free.name).round_trips == 1


SENDER = """
import sys, threading, time
from connectors.http import ConnectorError
from connectors.rate_limit import RateLimit
from connectors.request_rate import parse_rate
from tasks.push import connector_for

http = connector_for("hubspot").http
http.rate_limit = RateLimit(sys.argv[1], parse_rate(sys.argv[2]))  # the product's client, this test's limit
http.rate_limit.ensure()
print("ready", flush=True)
sys.stdin.readline()  # both processes start sending together
stop = time.monotonic() + float(sys.argv[3])  # the span both send in: the behaviour, not a wait for a state
sent = 0

def send():
    global sent
    while time.monotonic() < stop:
        try:
            http.request("GET", "/account-info/v3/details")
            sent += 1
        except ConnectorError:  # a 429 past the client's retries: the stand-in counts it
            pass

threads = [threading.Thread(target=send) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sent, flush=True)
"""


def busiest_window(times: list[float], seconds: float) -> int:
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.e2e
def test_two_processes_sending_as_fast_as_they_may_stay_within_the_vendors_window(sandbox: Any) -> None:
    """Two processes, each with the product's HubSpot client and two threads sending without pause, share
    one global limit: the stand-in, enforcing the vendor's window (30 in any 3 s), never answers 429 and
    never sees more than 30 in a window, and both processes were served."""
    import os
    import subprocess
    import sys
    from datetime import datetime

    from prefect.settings import PREFECT_API_URL

    rate, seconds = parse_rate("30/3s"), 7.5  # a burst of 1, then 8.5 a second for both together
    sandbox.set_rate("hubspot", None, window=(rate.requests, rate.seconds))
    limit = RateLimit("twoprocs-standin", rate)
    limit.ensure()
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SENDER, limit.name, str(rate), str(seconds)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        sent = [int(p.communicate(timeout=180)[0].strip()) for p in procs]
    finally:
        for p in procs:
            p.kill()
        sandbox.set_rate("hubspot", None)
    log = sandbox.requests("hubspot")
    accepted = sorted(datetime.fromisoformat(r["at"]).timestamp() for r in log if r["status"] < 400)
    assert [r for r in log if r["status"] == 429] == []
    assert len(accepted) == sum(sent)
    assert busiest_window(accepted, rate.seconds) <= rate.requests
    assert min(sent) >= 1  # each process was served, not one holding the limit alone
