"""Slack: care-team notices and failure alerts through an incoming webhook, as Block Kit messages.

Slack answers an incoming webhook with plain text: `ok`, or an error code. Through the shared client:
- 400 `invalid_payload`, `no_text`, `too_many_attachments`, `invalid_blocks`; 403 `action_prohibited`,
  `posting_to_general_channel_denied`, `invalid_token`; 404 `channel_not_found`, `no_service`;
  410 `channel_is_archived` are permanent: the message's outcome is FAILED with the code as its error.
- 429 `rate_limited` (with Retry-After) and 5xx are retryable: the push task retries after Retry-After.
Slack allows one message a second per webhook; `ONE_PER_SECOND` holds that across processes (a Prefect
global limit of one slot refilled each second, so no burst).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from connectors.base import AmbiguousSends, ConnectionCheck
from connectors.http import ErrorPolicy, VendorHttp
from connectors.notices import NoticeConnector
from connectors.rate_limit import RateLimit
from ennu.settings import Settings

SANDBOX_HOOK = "services/T00000000/B00000000/sandboxsandboxsandbox"
# Slack's plain-text codes are read by the shared client (`vendor_error_code`); the default statuses
# already split them: 429 and 5xx retryable, every other 4xx permanent.
POLICY = ErrorPolicy()
# Exactly what slack_sdk's WebhookClient sends.
JSON_UTF8 = {"Content-Type": "application/json;charset=utf-8"}


@dataclass(frozen=True)
class OneMessagePerSecond(RateLimit):
    """Slack's webhook limit: one message a second and no burst (the shared limit allows a minute's)."""

    per_hour: int = 3600

    @property
    def burst(self) -> int:
        return 1


def blocks(title: str, text: str, fields: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A header, a text section and optional fields: the Block Kit shape of every notice."""
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
    ]
    if fields:
        out.append(
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(fields.items())[:10]],
            }
        )
    return out


class SlackConnector(NoticeConnector):
    """One message per record to the configured webhook (Slack allows about one a second)."""

    name: ClassVar[str] = "slack"
    consent_category: ClassVar[str] = "notifications"
    batch_sizes: ClassVar[dict[str, int]] = {"messages": 1}
    # A lost answer is posted again: an incoming webhook has nothing to read back, so this errs toward a
    # notice shown twice, which a reader sees through, rather than an alert nobody saw.
    ambiguous_sends: ClassVar[AmbiguousSends] = "resend"
    credential_names: ClassVar[tuple[str, ...]] = ("SLACK_WEBHOOK_URL",)

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        url = cls.webhook_url("SLACK_WEBHOOK_URL", "https://hooks.slack.com", f"slack/{SANDBOX_HOOK}")
        http = VendorHttp(
            cls.name,
            url,
            timeout=settings.http_timeout_seconds,
            policy=POLICY,
            rate_limit=OneMessagePerSecond(cls.name) if rate_limited else None,
        )
        return cls(http)

    def send(self, title: str, text: str, facts: dict[str, Any] | None = None) -> None:
        """Post one notice (alerts use this directly)."""
        body = {"text": f"{title}: {text}", "blocks": blocks(title, text, facts)}
        self.http.request("POST", "", json=body, headers=JSON_UTF8)

    def test_connection(self) -> ConnectionCheck:
        # Incoming webhooks have no read endpoint: a live hook answers an empty payload with 400 no_text.
        started = time.monotonic()
        response = self.http.request("POST", "", json={}, headers=JSON_UTF8, allow_statuses=frozenset({400}))
        live = response.status_code == 400 and response.text.strip() == "no_text"
        return ConnectionCheck(
            self.name,
            live,
            "webhook answered" if live else "unexpected answer",
            int((time.monotonic() - started) * 1000),
        )
