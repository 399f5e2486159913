"""Salesforce's answers (REST API errors: a JSON array `[{"message", "errorCode", "fields"}]`, whose first
`errorCode` the shared client reads), and its token endpoint's (OAuth 2.0 `{"error": "invalid_grant"}`)."""

from __future__ import annotations

from connectors.errors import Action, ErrorTable

TABLE = ErrorTable(
    statuses={
        # An upsert by external id that matches several records (sObject Rows by External ID): that
        # record's outcome, read by the connector; Salesforce's body lists the matching records' URLs.
        300: Action.RECORD,
    },
    codes={
        # The org's API request limit (rolling 24 hours) answers 403, not 429: try later, not a refusal,
        # and not again within seconds (each retry would spend more of the day's allocation).
        "REQUEST_LIMIT_EXCEEDED": Action.LATER,
        "SERVER_UNAVAILABLE": Action.RETRY,
        # An expired or revoked session (401): the connector fetches a new token once, then gives up.
        "INVALID_SESSION_ID": Action.AUTH,
    },
    expected={
        "record": frozenset({400}),  # a single-record upsert refused for that record (errorCode)
        "gone": frozenset({404}),  # a delete by external id of a record that is not there
    },
)

TOKEN_TABLE = ErrorTable(
    expected={
        # The token endpoint refuses the grant with an OAuth error code the connector reads and reports
        # as an auth failure (invalid_grant, invalid_client, ...).
        "refused": frozenset({400, 401}),
    },
)
