"""Slack's incoming-webhook answers: `ok`, or a plain-text error code (read by `vendor_error_code`).

- 400 `invalid_payload`, `no_text`, `too_many_attachments`, `invalid_blocks`: this message is refused.
- 403 `action_prohibited`, `posting_to_general_channel_denied`: the channel's posting rules refuse it
  (not our credential: the URL is the credential); 403 `invalid_token`: the URL's token is refused.
- 404 `channel_not_found`, `no_service` (the hook was removed or disabled); 410 `channel_is_archived`:
  refused (HTTP's default for a 4xx).
- 429 `rate_limited` with Retry-After (one message a second per webhook), 5xx: try later (the defaults).
"""

from __future__ import annotations

from connectors.errors import Action, ErrorTable

TABLE = ErrorTable(
    statuses={403: Action.BATCH},
    codes={"invalid_token": Action.AUTH},
    expected={
        "probe": frozenset({400}),  # the connection test's empty message: a live hook answers no_text
    },
)
