"""HubSpot's settings (`HUBSPOT_*`): where its API is, how fast we may call it, the deal pipeline's ids."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from connectors.request_rate import Rate, parse_rate
from connectors.settings import VendorSettings


class HubSpotSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="HUBSPOT_")
    secrets: ClassVar[dict[str, str]] = {"HUBSPOT_ACCESS_TOKEN": "a private app's access token"}

    base_url: str | None = Field(
        default=None, description="API base URL instead of HubSpot's (a proxy); unset: api.hubapi.com."
    )
    rate_limit: Rate = Field(
        default=parse_rate("100/10s"),
        description=(
            "Requests allowed by the vendor, shared by every worker: HubSpot private apps get 100 per 10 "
            "s (Free, Starter) or 190 (Professional, Enterprise: set `190/10s`). `6000/1h` is the "
            "conservative option of earlier releases."
        ),
    )
    deal_pipeline: str = Field(default="default", description="Pipeline id of the deals of health goals.")
    deal_stage_open: str = Field(
        default="appointmentscheduled", description="Stage id of a deal whose goal is open."
    )
    deal_stage_won: str = Field(
        default="closedwon", description="Stage id of a deal whose goal is completed."
    )
