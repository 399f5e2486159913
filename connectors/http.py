"""The one HTTP client every connector uses: pooled session, timeouts, rate limit, error classification."""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from connectors.rate_limit import RateLimit

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
ERROR_CODE_KEYS = ("errorCode", "error_code", "errorType", "category", "code", "type", "title")


class ConnectorError(Exception):
    """Base of the errors the shared client raises. Messages carry status and vendor codes, never bodies."""

    def __init__(self, integration: str, reason: str) -> None:
        super().__init__(f"{integration}: {reason}")
        self.integration = integration
        self.reason = reason


class RetryableError(ConnectorError):
    """The whole request may succeed later (429, 5xx, timeout, reset); `retry_after` is the vendor's wait.

    A plain RetryableError means the vendor did not act on the request; `AmbiguousError` that it may have.
    """

    def __init__(self, integration: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(integration, reason)
        self.retry_after = retry_after


class AmbiguousError(RetryableError):
    """The request may have reached the vendor (read timeout, reset after sending): it may have been done.

    Safe to retry where the vendor de-duplicates (upserts, idempotency keys); elsewhere look it up first.
    """


class PermanentError(ConnectorError):
    """The vendor refused the request and would refuse it again (validation, auth, not found)."""

    def __init__(self, integration: str, status: int, code: str | None) -> None:
        super().__init__(integration, f"http {status}" + (f" {code}" if code else ""))
        self.status = status
        self.code = code


def vendor_error_code(response: requests.Response) -> str | None:
    """The vendor's machine-readable error code from a JSON error body (never its free-text message)."""
    try:
        body: Any = response.json()
    except ValueError:
        text = response.text.strip()
        # Slack-style plain-text codes are short snake_case words; anything else may carry data.
        return text if text and len(text) <= 60 and text.replace("_", "").isalnum() else None
    candidates: list[Any] = [body]
    if isinstance(body, list) and body:
        candidates = [body[0]]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        candidates.insert(0, body["error"])
    for candidate in candidates:
        if isinstance(candidate, dict):
            for key in ERROR_CODE_KEYS:
                value = candidate.get(key)
                if isinstance(value, str | int) and len(str(value)) <= 80:
                    return str(value)
    return None


def connected_before_failing(exc: requests.ConnectionError) -> bool:
    """True when the connection was up and the request on its way (reset, abort, stalled mid-answer).

    urllib3 (no retries) raises a failure on an open connection as ProtocolError("Connection aborted."),
    and requests a read timeout within the body as a ConnectionError; a failure to connect (refused,
    unreachable, DNS, TLS set-up) comes in a MaxRetryError. A kept-alive connection the server had
    just closed also counts as "may have arrived": a false alarm costs a look-up, never a duplicate.
    """
    cause = exc.args[0] if exc.args else None
    if isinstance(cause, urllib3.exceptions.MaxRetryError):
        cause = cause.reason
    return isinstance(cause, urllib3.exceptions.ProtocolError | urllib3.exceptions.ReadTimeoutError)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class ErrorPolicy:
    """How one vendor's answers are classified: data, not `if status == ...` in connector code."""

    retryable_statuses: frozenset[int] = RETRYABLE_STATUSES
    # Vendor codes that mean "try later" whatever the status (Salesforce 403 REQUEST_LIMIT_EXCEEDED).
    retryable_codes: frozenset[str] = frozenset()
    retry_after_header: str = "Retry-After"
    # Statuses handed back to the connector to read per-record outcomes from (e.g. 207 multi-status).
    passthrough_statuses: frozenset[int] = frozenset()
    # A header whose value "true"/"false" overrides the status classification (Stripe-Should-Retry).
    should_retry_header: str | None = None


@dataclass
class CallCounter:
    """Requests sent by one client, for the benchmark and the cost tests."""

    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self) -> None:
        with self._lock:
            self.calls += 1


class VendorHttp:
    """A pooled, rate-limited client for one integration's API."""

    def __init__(
        self,
        integration: str,
        base_url: str,
        *,
        auth: requests.auth.AuthBase | tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        policy: ErrorPolicy | None = None,
        rate_limit: RateLimit | None = None,
        pool_size: int = 10,
    ) -> None:
        self.integration = integration
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.policy = policy or ErrorPolicy()
        self.rate_limit = rate_limit
        self.counter = CallCounter()
        self.session = requests.Session()
        self.session.auth = auth
        self.session.headers.update({"User-Agent": "ennu-integrations/0.1", "Accept": "application/json"})
        if headers:
            self.session.headers.update(headers)
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        allow_statuses: frozenset[int] = frozenset(),
        timeout: float | None = None,
    ) -> requests.Response:
        """Send one request and classify the answer.

        Returns the response for 1xx-3xx, for the policy's passthrough statuses and for `allow_statuses`
        (statuses the caller turns into per-record outcomes); raises `RetryableError` or `PermanentError`
        otherwise, and `AmbiguousError` when the request may have reached the vendor without an answer
        (read timeout, reset after sending); a connect timeout or refusal stays a plain RetryableError.
        """
        if self.rate_limit is not None:
            self.rate_limit.acquire()
        self.counter.add()
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                self.url(path),
                json=json,
                data=data,
                params=params,
                headers=dict(headers) if headers else None,
                timeout=timeout or self.timeout,
            )
        except requests.ConnectTimeout:
            raise RetryableError(self.integration, "connect timeout") from None
        except requests.ReadTimeout:
            raise AmbiguousError(self.integration, "timeout after send") from None
        except requests.exceptions.ChunkedEncodingError:
            raise AmbiguousError(self.integration, "reset after send") from None
        except requests.ConnectionError as exc:
            if connected_before_failing(exc):
                raise AmbiguousError(self.integration, "reset after send") from None
            raise RetryableError(self.integration, "connection error") from None
        elapsed_ms = int((time.monotonic() - started) * 1000)
        logger.debug("%s %s -> %s in %d ms", self.integration, method, response.status_code, elapsed_ms)
        return self.classify(response, allow_statuses)

    def classify(
        self, response: requests.Response, allow_statuses: frozenset[int] = frozenset()
    ) -> requests.Response:
        status = response.status_code
        if status < 400 and status not in self.policy.retryable_statuses:
            return response
        if status in allow_statuses or status in self.policy.passthrough_statuses:
            return response
        code = vendor_error_code(response)
        retry_after = parse_retry_after(response.headers.get(self.policy.retry_after_header))
        should_retry = (
            response.headers.get(self.policy.should_retry_header, "").lower()
            if self.policy.should_retry_header
            else ""
        )
        retryable = status in self.policy.retryable_statuses or (
            code is not None and code in self.policy.retryable_codes
        )
        if should_retry in ("true", "false"):
            retryable = should_retry == "true"
        if retryable:
            raise RetryableError(
                self.integration, f"http {status}" + (f" {code}" if code else ""), retry_after
            )
        raise PermanentError(self.integration, status, code)

    def close(self) -> None:
        self.session.close()
