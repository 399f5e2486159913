"""Per-integration rate limits are Prefect global concurrency limits, shared by every process."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import rate_limit

from connectors.rate_limit import RateLimit, limit_name
from flows.assessment_completed import assessment_completed
from tests.factories import person_with_assessment

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_a_flow_run_creates_each_integrations_limit_from_settings(sqlite_database: str, sandbox: Any) -> None:
    assessment_completed(event_ids=[person_with_assessment()[2]])
    with get_client(sync_client=True) as client:
        hubspot = client.read_global_concurrency_limit_by_name(limit_name("hubspot"))
        mailchimp = client.read_global_concurrency_limit_by_name(limit_name("mailchimp"))
    # tests/conftest.py sets 3,600,000 requests an hour for both
    assert hubspot.slot_decay_per_second == pytest.approx(1000.0)
    assert hubspot.limit == 60_000
    assert mailchimp.slot_decay_per_second == pytest.approx(1000.0)


def test_product_defaults_hold_back_the_request_after_the_burst() -> None:
    limit = RateLimit("ratetest", per_hour=100)  # HubSpot's product default: a burst of 2, then one per 36 s
    assert (limit.burst, round(limit.slots_per_second, 4)) == (2, 0.0278)
    limit.acquire()
    limit.acquire()
    with pytest.raises(TimeoutError):
        rate_limit(limit.name, occupy=1, timeout_seconds=1, strict=True)
