"""Zapier's settings (`ZAPIER_*`): how fast we may post to the subscribed hooks.

The hooks' URLs are their own credentials, kept in the hub's database (`ennu.zapier_subscriptions`);
the connector has no secret. ZAPIER_TOKEN (the Zapier app's token for our subscribe routes) and
ZAPIER_HOOK_HOSTS belong to those routes (`intake/zapier.py`, the hub's settings), not to the connector.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from connectors.request_rate import Rate, parse_rate
from connectors.settings import VendorSettings


class ZapierSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="ZAPIER_")

    rate_limit: Rate = Field(
        default=parse_rate("10000/5m"),
        description=(
            "Posts to every subscribed hook shared by every worker (each record costs one per hook): "
            "Zapier answers 429 past 10,000 requests per 5 minutes per user (and about 30 a second per "
            "hook). `20000/1h` is the conservative option of earlier releases."
        ),
    )
