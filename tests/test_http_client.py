"""The shared HTTP client's classification of vendor answers, over real HTTP to the sandbox."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.http import PermanentError, RetryableError, VendorHttp, parse_retry_after
from connectors.hubspot import POLICY, SANDBOX_TOKEN


def hubspot(sandbox_url: str, timeout: float = 5.0, token: str = SANDBOX_TOKEN) -> VendorHttp:
    return VendorHttp(
        "hubspot",
        f"{sandbox_url}/hubspot",
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
        policy=POLICY,
    )


def test_5xx_is_retryable(sandbox: Any, sandbox_url: str) -> None:
    sandbox.fail("hubspot", mode="status", status=503, count=1)
    with pytest.raises(RetryableError, match="http 503"):
        hubspot(sandbox_url).request("GET", "/account-info/v3/details")
    assert hubspot(sandbox_url).request("GET", "/account-info/v3/details").status_code == 200


def test_429_is_retryable_with_the_vendors_wait(sandbox: Any, sandbox_url: str) -> None:
    sandbox.set_rate("hubspot", per_second=0.001, retry_after=7)
    client = hubspot(sandbox_url)
    client.request("GET", "/account-info/v3/details")
    with pytest.raises(RetryableError) as caught:
        client.request("GET", "/account-info/v3/details")
    assert caught.value.retry_after == 7
    assert "RATE_LIMIT" in str(caught.value)


def test_connection_reset_and_timeout_are_retryable(sandbox: Any, sandbox_url: str) -> None:
    sandbox.fail("hubspot", mode="reset", count=1)
    with pytest.raises(RetryableError, match="connection error"):
        hubspot(sandbox_url).request("GET", "/account-info/v3/details")
    sandbox.fail("hubspot", mode="slow", delay=2.0, count=1)
    with pytest.raises(RetryableError, match="timeout"):
        hubspot(sandbox_url, timeout=0.5).request("GET", "/account-info/v3/details")


def test_wrong_credentials_are_permanent_with_the_vendor_code(sandbox: Any, sandbox_url: str) -> None:
    with pytest.raises(PermanentError) as caught:
        hubspot(sandbox_url, token="wrong").request("GET", "/account-info/v3/details")
    assert caught.value.status == 401
    assert caught.value.code == "INVALID_AUTHENTICATION"


def test_multi_status_is_handed_to_the_connector(sandbox: Any, sandbox_url: str) -> None:
    body = {
        "inputs": [
            {"id": "ok@example.com", "idProperty": "email", "properties": {"email": "ok@example.com"}},
            {"id": "broken", "idProperty": "email", "properties": {"email": "broken"}},
        ]
    }
    response = hubspot(sandbox_url).request("POST", "/crm/v3/objects/contacts/batch/upsert", json=body)
    assert response.status_code == 207


def test_request_count_is_kept_per_client(sandbox: Any, sandbox_url: str) -> None:
    client = hubspot(sandbox_url)
    for _ in range(3):
        client.request("GET", "/account-info/v3/details")
    assert client.counter.calls == 3


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 30
