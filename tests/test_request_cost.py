"""HTTP requests per 1,000 records, counted at the sandbox (vendor batch floors)."""

from __future__ import annotations

from typing import Any

import pytest

from flows.assessment_completed import assessment_completed
from tests.factories import person_with_assessment

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_thousand_records_cost_at_most_ten_hubspot_and_two_mailchimp_requests(
    sqlite_database: str, sandbox: Any
) -> None:
    event_ids = [person_with_assessment()[2] for _ in range(1000)]

    assessment_completed(event_ids=event_ids)

    assert len(sandbox.objects("hubspot", "contacts")) == 1000
    assert len(sandbox.objects("mailchimp", "members")) == 1000
    assert len(sandbox.requests("hubspot")) <= 10
    assert len(sandbox.requests("mailchimp")) <= 2
