"""HubSpot's settings (`HUBSPOT_*`): where its API is, how fast we may call it, the deal pipeline's ids."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from connectors.settings import VendorSettings


class HubSpotSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="HUBSPOT_")
    secrets: ClassVar[dict[str, str]] = {"HUBSPOT_ACCESS_TOKEN": "a private app's access token"}

    base_url: str | None = Field(
        default=None, description="API base URL instead of HubSpot's (a proxy); unset: api.hubapi.com."
    )
    requests_per_hour: int = Field(
        default=6_000,
        ge=1,
        description="Request budget shared by every worker. HubSpot allows private apps 100 (or 190) "
        "requests per 10 s; 6,000 an hour is a burst of 100 at 1.7 a second.",
    )
    deal_pipeline: str = Field(default="default", description="Pipeline id of the deals of health goals.")
    deal_stage_open: str = Field(
        default="appointmentscheduled", description="Stage id of a deal whose goal is open."
    )
    deal_stage_won: str = Field(
        default="closedwon", description="Stage id of a deal whose goal is completed."
    )
