"""The one HTTP client every connector uses: pooled session, timeouts, rate limit, the vendor's error table,
retries of the request that failed where repeating it is safe."""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
import tenacity
import urllib3
from requests.adapters import HTTPAdapter

from connectors.errors import DEFAULT_TABLE, REPEAT_NOW, RETRYING, Action, ErrorTable
from connectors.rate_limit import RateLimit
from ennu.settings import loopback_refused

logger = logging.getLogger(__name__)

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
    `now` False: not worth repeating within seconds (a daily quota); the delivery engine offers it later.
    """

    def __init__(
        self, integration: str, reason: str, retry_after: float | None = None, *, now: bool = True
    ) -> None:
        super().__init__(integration, reason)
        self.retry_after = retry_after
        self.now = now


class AmbiguousError(RetryableError):
    """The request may have reached the vendor (read timeout, reset after sending): it may have been done.

    Safe to retry where the vendor de-duplicates (upserts, idempotency keys); elsewhere look it up first.
    """


class PermanentError(ConnectorError):
    """The vendor refused the request and would refuse it again (validation, not found)."""

    def __init__(self, integration: str, status: int, code: str | None) -> None:
        super().__init__(integration, f"http {status}" + (f" {code}" if code else ""))
        self.status = status
        self.code = code


class AuthError(PermanentError):
    """The vendor refused the credentials (or a permission): nothing goes until an operator fixes them."""


class RedirectRefused(PermanentError):
    """The vendor answered a redirect (3xx). Never followed: a redirect from a vendor-supplied URL (a Zapier
    hook, a webhook) could send the body, health data included, anywhere, an internal address included."""

    def __init__(self, integration: str, status: int) -> None:
        ConnectorError.__init__(self, integration, f"http {status} redirect not followed")
        self.status = status
        self.code = "redirect"


class InvalidTarget(PermanentError):
    """The request was not sent: its URL is not one HTTP can send to (a stored target with a space, no
    scheme...). The reason never repeats the URL (a hook's URL is its secret)."""

    def __init__(self, integration: str) -> None:
        ConnectorError.__init__(self, integration, "invalid target url, not sent")
        self.status = 0
        self.code = "invalid_url"


class RefusedDestination(PermanentError):
    """Not sent: a loopback address outside local mode is never a vendor's (a stand-in, or a stale hook)."""

    def __init__(self, integration: str) -> None:
        ConnectorError.__init__(self, integration, LOOPBACK_REFUSED)
        self.status = 0
        self.code = None


LOOPBACK_REFUSED = "loopback address refused outside local mode"


def vendor_error_code(
    response: requests.Response, reader: Callable[[object], str | None] | None = None
) -> str | None:
    """The vendor's machine-readable error code from a JSON error body (never its free-text message).

    `reader`: the vendor's own way to find it in the parsed body (its error table's `code_reader`).
    """
    try:
        body: Any = response.json()
    except ValueError:
        text = response.text.strip()
        # Slack-style plain-text codes are short snake_case words; anything else may carry data.
        return text if text and len(text) <= 60 and text.replace("_", "").isalnum() else None
    if reader is not None:
        found = reader(body)
        return found if found is None or len(found) <= 80 else None
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


@dataclass
class CallCounter:
    """Requests sent by one client, for the benchmark and the cost tests."""

    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self) -> None:
        with self._lock:
            self.calls += 1


# Called once just before the next request's bytes leave (after its rate-limit slot), then cleared: a
# connector marks what a request carries as possibly sent (`Connector.sending`), so that a worker killed
# while it waited for the slot has marked nothing.
_before_send: ContextVar[Callable[[], None] | None] = ContextVar("before_send", default=None)


@contextmanager
def before_next_send(callback: Callable[[], None]) -> Iterator[None]:
    """Within this block, `callback` runs once, just before the first request's bytes leave."""
    token = _before_send.set(callback)
    try:
        yield
    finally:
        _before_send.reset(token)


class VendorHttp:
    """A pooled, rate-limited client for one integration's API, classifying answers by its error table.

    A request that failed in a way that is safe to repeat (the vendor answered "try later", or the
    connection failed before the request went out) is sent again, up to `retries` times, after the
    vendor's Retry-After or an exponential, jittered wait. A wait longer than `max_retry_wait` is not
    waited for here: the error is raised with its `retry_after`, and the delivery engine offers the
    records again then. A send that may have reached the vendor (`AmbiguousError`) is never repeated
    here: the engine decides (upsert again, look it up, or send at least once; `Connector.ambiguous_sends`).
    """

    def __init__(
        self,
        integration: str,
        base_url: str,
        *,
        auth: requests.auth.AuthBase | tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        table: ErrorTable = DEFAULT_TABLE,
        rate_limit: RateLimit | None = None,
        pool_size: int = 10,
        retries: int = 2,
        max_retry_wait: float = 10.0,
    ) -> None:
        self.integration = integration
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.table = table
        self.rate_limit = rate_limit
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.counter = CallCounter()
        self.session = requests.Session()
        self.session.auth = auth
        # requests reads the environment again for every request (proxies, a CA bundle, ~/.netrc: a twentieth
        # of a bulk run's CPU); the client reads it once, for its vendor's base URL. ~/.netrc is never read:
        # a vendor's credentials come from the secret store, never from a file that would replace them.
        self.session.trust_env = False
        self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle and self.base_url.startswith("https://"):  # requests stats a bundle path every request
            self.session.verify = bundle
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
        """Send one request (again where that is safe, see the class) and classify the answer.

        Returns the response for a success, for the table's RECORD statuses and for `allow_statuses`
        (answers the caller reads itself, named in the vendor's table: `TABLE.expect(...)`); raises
        `RetryableError`, `AuthError` or `PermanentError` otherwise, and `AmbiguousError` when the request
        may have reached the vendor without an answer (read timeout, reset after sending).
        """
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(1 + self.retries),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self._safe_to_repeat),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._send(method, path, json, data, params, headers, allow_statuses, timeout)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _safe_to_repeat(self, exc: BaseException) -> bool:
        if not isinstance(exc, RetryableError) or isinstance(exc, AmbiguousError) or not exc.now:
            return False
        return exc.retry_after is None or exc.retry_after <= self.max_retry_wait

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return exc.retry_after
        return float(_BACKOFF(state))

    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        data: Any,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        allow_statuses: frozenset[int],
        timeout: float | None,
    ) -> requests.Response:
        url = self.url(path)
        if loopback_refused(url):  # checked at every request, whatever built the client
            raise RefusedDestination(self.integration)
        if self.rate_limit is not None:
            self.rate_limit.acquire()
        callback = _before_send.get()
        if callback is not None:
            _before_send.set(None)  # once: a retry of the request is covered by the first call
            callback()
        self.counter.add()
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                url,
                json=json,
                data=data,
                params=params,
                headers=dict(headers) if headers else None,
                timeout=timeout or self.timeout,
                # Never follow a redirect: it would re-send the body to wherever the answer points.
                allow_redirects=False,
            )
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ):
            raise InvalidTarget(self.integration) from None
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
        """The response when the table says it is an answer to read; else the error it means, raised.

        A redirect is never followed (`_send`) and, unless the table or the call reads it, raises
        `RedirectRefused`: the body is not sent again anywhere."""
        status = response.status_code
        if status >= 400 or self.table.statuses.get(status):
            code = vendor_error_code(response, self.table.code_reader)
        else:
            code = None
        action = self.table.action(status, code)
        if status in allow_statuses or action is Action.RECORD:
            return response
        if 300 <= status < 400:  # a 3xx the vendor's table does not read (Salesforce's 300) is a failure
            raise RedirectRefused(self.integration, status)
        if action is None:
            return response
        should_retry = (
            response.headers.get(self.table.should_retry_header, "").lower()
            if self.table.should_retry_header
            else ""
        )
        retryable = action in RETRYING if should_retry not in ("true", "false") else should_retry == "true"
        reason = f"http {status}" + (f" {code}" if code else "")
        if retryable:
            retry_after = parse_retry_after(response.headers.get(self.table.retry_after_header))
            raise RetryableError(self.integration, reason, retry_after, now=action in REPEAT_NOW)
        if action is Action.AUTH:
            raise AuthError(self.integration, status, code)
        raise PermanentError(self.integration, status, code)

    def close(self) -> None:
        self.session.close()


_BACKOFF = tenacity.wait_exponential_jitter(initial=0.5, max=4.0, jitter=0.5)
