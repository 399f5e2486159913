"""Stripe's answers: `{"error": {type, code, message, param}}`, and the `Stripe-Should-Retry` header, which
overrides the status where Stripe sends it (as stripe-python honours it).

HTTP's defaults say the rest: 401 (a wrong key) and 403 (a restricted key without the permission) wait for
an operator, 429 (`rate_limit`, `lock_timeout`) slows down, 5xx is tried again (every write carries an
idempotency key, so a repeat replays the first answer instead of writing twice).
"""

from __future__ import annotations

from connectors.errors import Action, ErrorTable

TABLE = ErrorTable(
    statuses={
        # idempotency_key_in_use: another request with the same key is still in flight; it settles.
        409: Action.RETRY,
    },
    should_retry_header="Stripe-Should-Retry",
    expected={
        # The calls about one customer read these as that record's outcome: 400 invalid_request_error
        # (a value refused; idempotency_error: the key reused with other parameters), 402 card_error /
        # request_failed (a declined card), 404 resource_missing (the customer deleted meanwhile).
        "record": frozenset({400, 402, 404}),
        "gone": frozenset({404}),  # a delete of a customer that is not there (any more)
    },
)
