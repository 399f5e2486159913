"""The shared HTTP client's classification of vendor answers, over real HTTP to the sandbox."""

from __future__ import annotations

import email.utils
import socket
import ssl
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.http import (
    AmbiguousError,
    AuthError,
    RetryableError,
    VendorHttp,
    parse_retry_after,
)
from connectors.hubspot.connector import SANDBOX_TOKEN
from connectors.hubspot.errors import TABLE
from sandbox.faults import FaultMode
from tests.capture import capturing_endpoint
from tests.tls_support import self_signed_certificate


def hubspot(
    sandbox_url: str, timeout: float = 5.0, token: str = SANDBOX_TOKEN, retries: int = 0
) -> VendorHttp:
    """HubSpot's client; without retries unless asked, so each answer's classification shows."""
    return VendorHttp(
        "hubspot",
        f"{sandbox_url}/hubspot",
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
        table=TABLE,
        retries=retries,
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


def test_a_reset_or_a_read_timeout_after_sending_is_retryable_and_ambiguous(
    sandbox: Any, sandbox_url: str
) -> None:
    # The client cannot tell a reset before the vendor acted from one after: both may have arrived.
    sandbox.fail("hubspot", mode="reset", count=1)
    with pytest.raises(AmbiguousError) as reset:
        hubspot(sandbox_url).request("GET", "/account-info/v3/details")
    assert isinstance(reset.value, RetryableError) and reset.value.reason == "reset after send"
    sandbox.fail("hubspot", mode="slow", delay=2.0, count=1)
    with pytest.raises(AmbiguousError) as slow:
        hubspot(sandbox_url, timeout=0.5).request("GET", "/account-info/v3/details")
    assert slow.value.reason == "timeout after send"
    sandbox.fail("hubspot", mode="timeout", count=1)
    with pytest.raises(AmbiguousError, match="timeout after send"):
        hubspot(sandbox_url, timeout=0.5).request("GET", "/account-info/v3/details")


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("commit_then_reset", "reset after send"), ("commit_then_late", "timeout after send")],
)
def test_a_lost_answer_to_a_stored_request_is_ambiguous_and_names_no_value(
    sandbox: Any, sandbox_url: str, mode: FaultMode, reason: str
) -> None:
    sandbox.fail("hubspot", mode=mode, count=1)
    body = {
        "inputs": [{"id": "kept@example.com", "idProperty": "email", "properties": {"lastname": "Quill"}}]
    }
    with pytest.raises(AmbiguousError) as lost:
        hubspot(sandbox_url, timeout=0.5).request("POST", "/crm/v3/objects/contacts/batch/upsert", json=body)
    assert str(lost.value) == f"hubspot: {reason}" and lost.value.retry_after is None  # no name, no e-mail
    assert [c["properties"]["email"] for c in sandbox.objects("hubspot", "contacts")] == ["kept@example.com"]


def test_a_refused_connection_is_retryable_and_not_ambiguous() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again before the request: nothing listens there
    with pytest.raises(RetryableError) as refused:
        VendorHttp("hubspot", f"http://127.0.0.1:{port}", timeout=5, retries=0).request(
            "GET", "/account-info/v3/details"
        )
    assert not isinstance(refused.value, AmbiguousError) and refused.value.reason == "connection error"


def test_a_connect_timeout_is_retryable_and_not_ambiguous() -> None:
    # A listener that never accepts, its queue full: Linux drops further SYNs, so connecting times out.
    with socket.socket() as listener, ExitStack() as queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            waiting = queued.enter_context(socket.socket())
            waiting.setblocking(False)
            waiting.connect_ex(("127.0.0.1", port))
        with pytest.raises(RetryableError) as stalled:
            VendorHttp("hubspot", f"http://127.0.0.1:{port}", timeout=0.5, retries=0).request("GET", "/")
    assert not isinstance(stalled.value, AmbiguousError) and stalled.value.reason == "connect timeout"


def test_wrong_credentials_are_permanent_with_the_vendor_code(sandbox: Any, sandbox_url: str) -> None:
    with pytest.raises(AuthError) as caught:
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


def test_a_netrc_file_never_replaces_the_vendors_credentials(
    sandbox: Any, sandbox_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests by default sends ~/.netrc's login for the host as Basic auth over the vendor's own token.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-the-token\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert requests.get(f"{sandbox_url}/hubspot/account-info/v3/details", timeout=5).status_code == 401
    assert hubspot(sandbox_url).request("GET", "/account-info/v3/details").status_code == 200


def test_the_environments_proxy_is_read_once_when_the_client_is_built(
    sandbox_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with capturing_endpoint() as proxy:  # a forward proxy that answers every request itself
        proxy.answer("GET", "/hubspot/account-info/v3/details", 200, {})
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", proxy.url)
        proxied = hubspot(sandbox_url)
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        direct = hubspot(sandbox_url)
        monkeypatch.delenv("http_proxy")
        assert proxied.request("GET", "/account-info/v3/details").json() == {}  # the proxy's answer
        assert direct.request("GET", "/account-info/v3/details").json() != {}  # the stand-in's
        [sent] = proxy.take()
    assert sent.path == "/hubspot/account-info/v3/details"
    assert sent.headers["host"] == sandbox_url.removeprefix("http://")  # addressed to the stand-in


def test_the_environments_ca_bundle_is_read_once_when_the_client_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with capturing_endpoint(tls) as vendor:
        vendor.answer("GET", "/details", 200, {})
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        trusting = VendorHttp("hubspot", vendor.url, timeout=5, retries=0)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        with pytest.raises(RetryableError):  # the server's certificate is nobody's the defaults trust
            VendorHttp("hubspot", vendor.url, timeout=5, retries=0).request("GET", "/details")
        assert trusting.request("GET", "/details").json() == {}
        assert [(r.method, r.path) for r in vendor.take()] == [("GET", "/details")]


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


def test_a_try_later_answer_is_sent_again_and_counted(sandbox: Any, sandbox_url: str) -> None:
    sandbox.fail("hubspot", mode="status", status=503, count=2)
    client = hubspot(sandbox_url, retries=2)
    assert client.request("GET", "/account-info/v3/details").status_code == 200
    assert client.counter.calls == 3


def test_retries_stop_at_their_number_with_the_last_error(sandbox: Any, sandbox_url: str) -> None:
    sandbox.fail("hubspot", mode="status", status=502, count=5)
    client = hubspot(sandbox_url, retries=1)
    with pytest.raises(RetryableError, match="http 502"):
        client.request("GET", "/account-info/v3/details")
    assert client.counter.calls == 2


def test_a_short_retry_after_is_waited_for_a_long_one_is_left_to_the_engine(
    sandbox: Any, sandbox_url: str
) -> None:
    sandbox.set_rate("hubspot", per_second=0.001, retry_after=7)
    client = hubspot(sandbox_url, retries=2)
    client.max_retry_wait = 5.0
    client.request("GET", "/account-info/v3/details")
    with pytest.raises(RetryableError) as caught:
        client.request("GET", "/account-info/v3/details")
    assert caught.value.retry_after == 7 and client.counter.calls == 2  # not waited for: raised at once


def test_a_refusal_or_a_send_that_may_have_arrived_is_never_repeated(sandbox: Any, sandbox_url: str) -> None:
    refused = hubspot(sandbox_url, token="wrong", retries=2)
    with pytest.raises(AuthError):
        refused.request("GET", "/account-info/v3/details")
    sandbox.fail("hubspot", mode="commit_then_reset", count=1)
    body = {
        "inputs": [{"id": "r@example.com", "idProperty": "email", "properties": {"email": "r@example.com"}}]
    }
    ambiguous = hubspot(sandbox_url, retries=2)
    with pytest.raises(AmbiguousError):
        ambiguous.request("POST", "/crm/v3/objects/contacts/batch/upsert", json=body)
    assert refused.counter.calls == 1 and ambiguous.counter.calls == 1
