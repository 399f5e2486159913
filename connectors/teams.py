"""Microsoft Teams: notices through a Workflows (Power Automate) webhook as an Adaptive Card."""

from __future__ import annotations

import time
from typing import Any, ClassVar, Self

from connectors.base import AmbiguousSends, ConnectionCheck
from connectors.http import VendorHttp
from connectors.notices import NoticeConnector
from connectors.rate_limit import RateLimit
from ennu.settings import Settings

SANDBOX_FLOW = "workflows/sandbox-flow/triggers/manual/paths/invoke"
# Teams refuses messages above about 28 KB; notices stay far below by capping the free text.
TITLE_LIMIT = 200
TEXT_LIMIT = 10_000
FACTS_LIMIT = 20


def adaptive_card(title: str, text: str, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Workflows webhook message: one Adaptive Card 1.2 attachment."""
    heading = {"type": "TextBlock", "text": title[:TITLE_LIMIT], "weight": "Bolder", "size": "Medium"}
    body: list[dict[str, Any]] = [
        {**heading, "wrap": True},
        {"type": "TextBlock", "text": text[:TEXT_LIMIT], "wrap": True},
    ]
    if facts:
        shown = list(facts.items())[:FACTS_LIMIT]
        body.append(
            {"type": "FactSet", "facts": [{"title": str(k)[:100], "value": str(v)[:500]} for k, v in shown]}
        )
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.2",
                    "body": body,
                },
            }
        ],
    }


def message_card(title: str, text: str) -> dict[str, Any]:
    """The legacy Office 365 connector MessageCard, for clinics that still have one."""
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": title[:80] or "ENNU notice",
        "title": title[:TITLE_LIMIT],
        "text": text[:TEXT_LIMIT],
    }


class TeamsConnector(NoticeConnector):
    name: ClassVar[str] = "teams"
    consent_category: ClassVar[str] = "notifications"
    batch_sizes: ClassVar[dict[str, int]] = {"messages": 1}
    # A lost answer is posted again: a Workflows webhook only starts a flow and has nothing to read back,
    # so this errs toward a card shown twice, which a reader sees through, rather than an alert nobody saw.
    ambiguous_sends: ClassVar[AmbiguousSends] = "resend"
    credential_names: ClassVar[tuple[str, ...]] = ("TEAMS_WEBHOOK_URL",)

    def __init__(self, http: VendorHttp, legacy: bool = False) -> None:
        super().__init__(http)
        self.legacy = legacy

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        url = cls.webhook_url(
            "TEAMS_WEBHOOK_URL", "https://prod.westus.logic.azure.com", f"teams/{SANDBOX_FLOW}"
        )
        legacy = "webhook.office.com" in url or "outlook.office.com" in url
        http = VendorHttp(
            cls.name,
            url,
            timeout=settings.http_timeout_seconds,
            rate_limit=RateLimit(cls.name, 3600) if rate_limited else None,
        )
        return cls(http, legacy)

    def send(self, title: str, text: str, facts: dict[str, Any] | None = None) -> None:
        body = message_card(title, text) if self.legacy else adaptive_card(title, text, facts)
        self.http.request("POST", "", json=body)

    def test_connection(self) -> ConnectionCheck:
        started = time.monotonic()
        self.send("ENNU connection test", "The ENNU integration hub can reach this channel.")
        return ConnectionCheck(self.name, True, "card accepted", int((time.monotonic() - started) * 1000))
