"""Slack's settings (`SLACK_*`): the incoming webhook's URL, which is its credential."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from connectors.settings import VendorSettings


class SlackSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="SLACK_")
    secrets: ClassVar[dict[str, str]] = {
        "SLACK_WEBHOOK_URL": "the channel's incoming webhook URL (whoever has it can post: a secret)"
    }
