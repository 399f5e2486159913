"""Stripe's settings (`STRIPE_*`): where its API is, the API version we speak, how fast we may call it."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from connectors.request_rate import Rate, parse_rate
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
    rate_limit: Rate = Field(
        default=parse_rate("100/1s"),
        description=(
            "Requests shared by every worker: Stripe allows 100 a second in live mode, 25 in test mode "
            "(set `25/1s` with a test key). `36000/1h` is the conservative option of earlier releases."
        ),
    )
