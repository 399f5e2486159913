"""Teams' settings (`TEAMS_*`): the channel's webhook URL, which is its credential."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from connectors.settings import VendorSettings


class TeamsSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="TEAMS_")
    secrets: ClassVar[dict[str, str]] = {
        "TEAMS_WEBHOOK_URL": "the channel's Workflows webhook URL, or a legacy Office 365 connector's "
        "(its `sig` is the credential: a secret)"
    }
