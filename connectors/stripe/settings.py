"""Stripe's settings (`STRIPE_*`): where its API is, the API version we speak, how fast we may call it."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from connectors.settings import VendorSettings


class StripeSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="STRIPE_")
    secrets: ClassVar[dict[str, str]] = {
        "STRIPE_API_KEY": "a secret or restricted API key (`sk_...`, `rk_...`)"
    }

    base_url: str | None = Field(
        default=None,
        description="API base URL instead of Stripe's (a proxy); unset: https://api.stripe.com/v1.",
    )
    api_version: str | None = Field(
        default=None,
        pattern=r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$",
        description="The Stripe-Version every request asks for (`2025-03-31.basil`); unset: the account's "
        "default version.",
    )
    requests_per_hour: int = Field(
        default=36_000,
        ge=1,
        description="Request budget shared by every worker. Stripe allows 100 requests a second in live "
        "mode and 25 in test mode; 36,000 an hour is 10 a second.",
    )
