"""Slack: care-team notices and failure alerts through an incoming webhook, as Block Kit messages.

Slack answers an incoming webhook with plain text: `ok`, or an error code (`connectors.slack.errors`):
a refused message's outcome is FAILED with the code as its error; a refused token (`invalid_token`)
defers the batch for an operator; 429 `rate_limited` and 5xx are sent again by the shared client after
Slack's Retry-After. Slack allows one message a second per webhook; the shared rate limit holds that
across processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

from connectors.http import ConnectorError
from connectors.notices import NoticeConnector
from connectors.request_rate import RequestRate
from connectors.slack.errors import TABLE
from connectors.slack.settings import SlackSettings
from ennu.settings import Settings

SANDBOX_HOOK = "services/T00000000/B00000000/sandboxsandboxsandbox"
# Exactly what slack_sdk's WebhookClient sends.
JSON_UTF8 = {"Content-Type": "application/json;charset=utf-8"}


ONE_A_SECOND = RequestRate(1, 1.0)  # Slack's webhook limit: one message a second


def blocks(title: str, text: str, *fact_sets: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A header, a text section and a fields section per fact set: the Block Kit shape of every notice."""
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
    ]
    for fields in fact_sets:
        if fields:
            shown = list(fields.items())[:10]  # Slack: at most 10 fields a section
            out.append(
                {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in shown]}
            )
    return out


class SlackConnector(NoticeConnector):
    """One message per record to the configured webhook (Slack allows about one a second)."""

    name: ClassVar[str] = "slack"
    settings_class = SlackSettings
    table = TABLE

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        SlackSettings.load()  # nothing but the secret today; a bad variable would stop here
        url = cls.webhook_url("SLACK_WEBHOOK_URL", "https://hooks.slack.com", f"slack/{SANDBOX_HOOK}")
        http = cls.client(url, rate=ONE_A_SECOND, rate_limited=rate_limited)
        return cls(http)

    def notify_many(self, title: str, text: str, fact_sets: Sequence[dict[str, Any]]) -> None:
        body = {"text": f"{title}: {text}", "blocks": blocks(title, text, *fact_sets)}
        self.http.request("POST", "", json=body, headers=JSON_UTF8)

    def check_connection(self) -> str:
        # Incoming webhooks have no read endpoint: a live hook answers an empty payload with 400 no_text.
        response = self.http.request(
            "POST", "", json={}, headers=JSON_UTF8, allow_statuses=TABLE.expect("probe")
        )
        if response.status_code == 400 and response.text.strip() != "no_text":
            self.http.classify(response)  # another refusal: the shared client's PermanentError
        if response.status_code != 400:
            raise ConnectorError(
                self.name, f"unexpected answer to an empty message (http {response.status_code})"
            )
        return "webhook answered"
