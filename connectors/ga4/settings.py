"""GA4's settings (`GA4_*`): the Measurement Protocol stream; for user deletion, the Admin API property."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from connectors.request_rate import Rate, parse_rate
from connectors.settings import VendorSettings


class Ga4Settings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="GA4_")
    secrets: ClassVar[dict[str, str]] = {
        "GA4_API_SECRET": "the data stream's Measurement Protocol API secret",
        "GA4_SERVICE_ACCOUNT_KEY": "a service account's JSON key file (its text), for user deletion "
        "(scope analytics.edit)",
    }

    base_url: str | None = Field(
        default=None,
        description="Measurement Protocol base URL instead of Google's (a proxy); unset: "
        "www.google-analytics.com.",
    )
    measurement_id: str | None = Field(
        default=None, description="The web data stream's measurement id (G-...), needed with an API secret."
    )
    rate_limit: Rate = Field(
        default=parse_rate("36000/1h"),
        description=(
            "Requests to the Measurement Protocol shared by every worker (Google publishes no rate for "
            "it; ten a second)."
        ),
    )
    property_id: str | None = Field(
        default=None,
        description="The GA4 property whose user data is deleted on erasure (with GA4_SERVICE_ACCOUNT_KEY); "
        "unset: erasure is skipped.",
    )
    admin_base_url: str | None = Field(
        default=None,
        description="Admin API base URL instead of Google's (a proxy); unset: analyticsadmin.googleapis.com.",
    )
