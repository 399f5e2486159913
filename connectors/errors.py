"""One error table per vendor: what each answer status (or vendor code) means, as data.

The shared client (`connectors.http.VendorHttp`) reads a vendor's table to decide, for every answer that is
not a success, whether to retry the request, slow down, hand the answer back to the connector to read
per-record outcomes from, or give up on the request. A connector never keeps status sets of its own: the
answers one call expects (a 404 on a delete means "already gone") are named entries of the same table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Action(StrEnum):
    """What an answer means for the request that got it."""

    RETRY = "retry"  # vendor-side trouble, nothing was done: the same request may succeed later
    RATE_LIMITED = "rate_limited"  # slow down: retried after the vendor's Retry-After
    LATER = "later"  # vendor-side, but not for seconds (a daily quota): offered again later, never now
    RECORD = "record"  # per-record results (or refusals) in the body: the connector reads them
    BATCH = "batch"  # the request is refused for good (validation of the request, not found...)
    AUTH = "auth"  # credentials refused or lacking a permission: the destination waits for an operator


RETRYING = frozenset({Action.RETRY, Action.RATE_LIMITED, Action.LATER})  # the vendor's side: try again
REPEAT_NOW = frozenset({Action.RETRY, Action.RATE_LIMITED})  # ...and the same request may be sent again now

# What HTTP says, before a vendor says otherwise; any other 4xx is BATCH, any other 5xx RETRY.
HTTP_DEFAULTS: Mapping[int, Action] = MappingProxyType(
    {
        401: Action.AUTH,
        403: Action.AUTH,
        408: Action.RETRY,
        425: Action.RETRY,
        429: Action.RATE_LIMITED,
        500: Action.RETRY,
        502: Action.RETRY,
        503: Action.RETRY,
        504: Action.RETRY,
    }
)


@dataclass(frozen=True)
class ErrorTable:
    """One vendor's answers.

    `statuses` adds to or overrides HTTP's defaults; `codes` (the vendor's machine-readable error codes,
    as `connectors.http.vendor_error_code` extracts them) win over the status. `expected` names the
    statuses particular calls read themselves ("gone": a delete of what is not there), so that the call
    site says `TABLE.expect("gone")` and keeps no status set of its own.
    """

    statuses: Mapping[int, Action] = field(default_factory=dict)
    codes: Mapping[str, Action] = field(default_factory=dict)
    expected: Mapping[str, frozenset[int]] = field(default_factory=dict)
    retry_after_header: str = "Retry-After"
    # A header whose value "true"/"false" overrides the classification (Stripe-Should-Retry).
    should_retry_header: str | None = None
    # The vendor's code from an error body (a parsed JSON value), where the shared reader
    # (`connectors.http.vendor_error_code`) does not find it: FHIR's `issue[0].code`, Google's `error.status`.
    code_reader: Callable[[object], str | None] | None = None

    def action(self, status: int, code: str | None = None) -> Action | None:
        """What an answer means; None: a success (below 400 and not declared otherwise)."""
        if code is not None and code in self.codes:
            return self.codes[code]
        if status in self.statuses:
            return self.statuses[status]
        if status in HTTP_DEFAULTS:
            return HTTP_DEFAULTS[status]
        if status >= 500:
            return Action.RETRY
        if status >= 400:
            return Action.BATCH
        return None

    def expect(self, name: str) -> frozenset[int]:
        """The statuses a call named `name` reads itself (a KeyError names a call the table lacks)."""
        return self.expected[name]

    def declared(self) -> dict[int, Action]:
        """Every status this table classifies, HTTP's defaults included (for docs and conformance)."""
        return {**HTTP_DEFAULTS, **self.statuses}


DEFAULT_TABLE = ErrorTable()
