"""Microsoft Teams: notices through a Workflows (Power Automate) webhook as an Adaptive Card.

A legacy Office 365 connector URL (webhook.office.com) gets the MessageCard it understands. Teams'
answers are in `connectors.teams.errors`: a refused card fails that message with Teams' code; 429 and
5xx are sent again by the shared client after Retry-After.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

from connectors.http import VendorHttp
from connectors.notices import NoticeConnector
from connectors.request_rate import RequestRate
from connectors.teams.errors import TABLE
from connectors.teams.settings import TeamsSettings
from ennu.settings import Settings

SANDBOX_FLOW = "workflows/sandbox-flow/triggers/manual/paths/invoke"
# Teams refuses messages above about 28 KB; notices stay far below by capping the free text.
TITLE_LIMIT = 200
TEXT_LIMIT = 10_000
FACTS_LIMIT = 20
ONE_A_SECOND = RequestRate(1, 1.0)  # one card a second, well inside a flow's throttling


def adaptive_card(title: str, text: str, *fact_sets: dict[str, Any] | None) -> dict[str, Any]:
    """The Workflows webhook message: one Adaptive Card 1.2 attachment, a FactSet per fact set."""
    heading = {"type": "TextBlock", "text": title[:TITLE_LIMIT], "weight": "Bolder", "size": "Medium"}
    body: list[dict[str, Any]] = [
        {**heading, "wrap": True},
        {"type": "TextBlock", "text": text[:TEXT_LIMIT], "wrap": True},
    ]
    for facts in fact_sets:
        if facts:
            shown = list(facts.items())[:FACTS_LIMIT]
            body.append(
                {
                    "type": "FactSet",
                    "facts": [{"title": str(k)[:100], "value": str(v)[:500]} for k, v in shown],
                }
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
    """One card per record to the configured webhook."""

    name: ClassVar[str] = "teams"
    settings_class = TeamsSettings
    table = TABLE

    def __init__(self, http: VendorHttp, legacy: bool = False) -> None:
        super().__init__(http)
        self.legacy = legacy

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        TeamsSettings.load()  # nothing but the secret today; a bad variable would stop here
        url = cls.webhook_url(
            "TEAMS_WEBHOOK_URL", "https://prod.westus.logic.azure.com", f"teams/{SANDBOX_FLOW}"
        )
        legacy = "webhook.office.com" in url or "outlook.office.com" in url
        http = cls.client(url, rate=ONE_A_SECOND, rate_limited=rate_limited)
        return cls(http, legacy)

    def notify_many(self, title: str, text: str, fact_sets: Sequence[dict[str, Any]]) -> None:
        body = message_card(title, text) if self.legacy else adaptive_card(title, text, *fact_sets)
        self.http.request("POST", "", json=body)

    def check_connection(self) -> str:
        # A Workflows webhook has no read endpoint: the test is a card the channel shows.
        self.notify("ENNU connection test", "The ENNU integration hub can reach this channel.")
        return "card accepted"
