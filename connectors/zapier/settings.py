"""Zapier's settings (`ZAPIER_*`): how fast we may post to the subscribed hooks.

The hooks' URLs are their own credentials, kept in the hub's database (`ennu.zapier_subscriptions`);
the connector has no secret. ZAPIER_TOKEN (the Zapier app's token for our subscribe routes) and
ZAPIER_HOOK_HOSTS belong to those routes (`intake/zapier.py`, the hub's settings), not to the connector.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from connectors.settings import VendorSettings


class ZapierSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="ZAPIER_")

    requests_per_hour: int = Field(
        default=20_000,
        ge=1,
        description="Request budget shared by every worker, for the posts to every subscribed hook "
        "(each record costs one per hook).",
    )
