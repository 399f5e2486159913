"""GA4's settings (`GA4_*`): the Measurement Protocol stream; for user deletion, the Admin API property."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from connectors.request_rate import Rate, parse_rate
from connectors.settings import VendorSettings

NO_KEY_EVENTS = "none"  # GA4_KEY_EVENTS=none: the site marks no key event (empty is unset: the default)


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
    key_events: Annotated[tuple[str, ...], NoDecode] = Field(
        default="goal_completed",  # as the variable is written (README); validated to a tuple
        validate_default=True,
        description=(
            "The event names this site marks as key events (conversions), comma-separated; `none`: none. "
            "GA4 marks an event name in the property, never per event sent: with GA4_PROPERTY_ID and "
            "GA4_SERVICE_ACCOUNT_KEY the connection test creates each one missing (Admin API keyEvents, "
            "counted once per event); without them, mark them in GA4 Admin > Events."
        ),
    )

    @field_validator("key_events", mode="before")
    @classmethod
    def _event_names(cls, value: object) -> object:
        from connectors.ga4.connector import event_name_problem

        if isinstance(value, str):
            names = tuple(name.strip() for name in value.split(",") if name.strip())
            value = () if names == (NO_KEY_EVENTS,) else names
        if isinstance(value, tuple | list):
            if len(set(value)) != len(value):
                raise ValueError("names each event once")
            for name in value:
                problem = event_name_problem(str(name))
                if problem is not None:
                    raise ValueError(f"an event name is {problem}")  # never echoes the value
        return value
