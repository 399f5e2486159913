"""Slack: care-team notices and failure alerts through an incoming webhook, as Block Kit messages."""

from __future__ import annotations

import time
from typing import Any, ClassVar, Self

from connectors.base import ConnectionCheck
from connectors.endpoint import resolve_endpoint
from connectors.http import ErrorPolicy, VendorHttp
from connectors.notices import NoticeConnector
from connectors.rate_limit import RateLimit
from ennu.settings import Settings

SANDBOX_HOOK = "services/T00000000/B00000000/sandboxsandboxsandbox"
# Slack answers plain-text codes: these say the hook itself is gone or refused, for every message.
POLICY = ErrorPolicy()


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

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        endpoint = resolve_endpoint(
            cls.name,
            credential_env="SLACK_WEBHOOK_URL",
            vendor_base_url="https://hooks.slack.com",
            configured_base_url=None,
            sandbox_path=f"slack/{SANDBOX_HOOK}",
            sandbox_secret="",
        )
        # The webhook URL is the secret: with real credentials it is the whole URL.
        url = endpoint.secret.get_secret_value() if not endpoint.sandbox else endpoint.base_url
        http = VendorHttp(
            cls.name,
            url,
            timeout=settings.http_timeout_seconds,
            policy=POLICY,
            rate_limit=RateLimit(cls.name, 3600) if rate_limited else None,
        )
        return cls(http)

    def send(self, title: str, text: str, facts: dict[str, Any] | None = None) -> None:
        """Post one notice (alerts use this directly)."""
        self.http.request("POST", "", json={"text": f"{title}: {text}", "blocks": blocks(title, text, facts)})

    def test_connection(self) -> ConnectionCheck:
        # Incoming webhooks have no read endpoint: a live hook answers an empty payload with 400 no_text.
        started = time.monotonic()
        response = self.http.request("POST", "", json={}, allow_statuses=frozenset({400}))
        live = response.status_code == 400 and response.text.strip() == "no_text"
        return ConnectionCheck(
            self.name,
            live,
            "webhook answered" if live else "unexpected answer",
            int((time.monotonic() - started) * 1000),
        )
