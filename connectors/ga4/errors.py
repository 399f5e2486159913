"""GA4's answers: the Measurement Protocol's, the Admin API's (user deletion) and Google's token endpoint's.

The collect endpoint answers 2xx even for an event it drops (a bad name, a wrong secret): there is no
per-event refusal to read, so the connector checks each event against the published limits before it sends
(`connector.wire_problem`), and the connection test asks the validation endpoint, whose 200 answer lists
`validationMessages`. What HTTP says is all the collect endpoint can add: 429 and 5xx, try later.

The Admin API answers Google's JSON errors, `{"error": {"code", "message", "status"}}`, whose `status`
maps one to one onto the HTTP status (google.rpc.Code): UNAUTHENTICATED 401 and PERMISSION_DENIED 403 are
auth failures, RESOURCE_EXHAUSTED 429 is a quota to wait for, INVALID_ARGUMENT / FAILED_PRECONDITION 400
and NOT_FOUND 404 refuse the request, UNAVAILABLE 503 / INTERNAL 500 / DEADLINE_EXCEEDED 504 may pass later.
"""

from __future__ import annotations

from connectors.errors import Action, ErrorTable

TABLE = ErrorTable()  # the Measurement Protocol: HTTP's defaults


def google_status(body: object) -> str | None:
    """Google's canonical error name (`error.status`, e.g. RESOURCE_EXHAUSTED), not its numeric `code`."""
    error = body.get("error") if isinstance(body, dict) else None
    status = error.get("status") if isinstance(error, dict) else None
    return str(status) if status else None


ADMIN_TABLE = ErrorTable(
    code_reader=google_status,
    codes={
        "UNAUTHENTICATED": Action.AUTH,
        "PERMISSION_DENIED": Action.AUTH,
        "RESOURCE_EXHAUSTED": Action.RATE_LIMITED,
        "ABORTED": Action.RETRY,
        "UNAVAILABLE": Action.RETRY,
        "DEADLINE_EXCEEDED": Action.RETRY,
        "INTERNAL": Action.RETRY,
    },
    statuses={
        401: Action.AUTH,  # UNAUTHENTICATED: the token was refused
        403: Action.AUTH,  # PERMISSION_DENIED: the service account lacks the property (or analytics.edit)
        409: Action.RETRY,  # ABORTED: a concurrency conflict; a deletion request is safe to send again
        429: Action.RATE_LIMITED,  # RESOURCE_EXHAUSTED: the property's or project's quota
    },
    # ALREADY_EXISTS 409 to a key event's create: another process marked it first (the connector reads it).
    expected={"key event exists": frozenset({409})},
)

# Google's OAuth token endpoint (RFC 6749 §5.2): a 400 (invalid_grant: a bad assertion, a key revoked;
# unauthorized_client) or 401 refuses the service account: nothing goes until an operator fixes it.
TOKEN_TABLE = ErrorTable(statuses={400: Action.AUTH})
