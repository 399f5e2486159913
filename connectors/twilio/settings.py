"""Twilio's settings (`TWILIO_*`): where its API is, how fast we may call it, who messages come from."""

from __future__ import annotations

from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from connectors.request_rate import Rate, parse_rate
from connectors.settings import VendorSettings

# The secrets whose presence means this site configured Twilio (either one authenticates); the two SIDs
# are read by name like them (a Secret block or the environment) but identify, they do not authenticate.
CREDENTIALS = ("TWILIO_AUTH_TOKEN", "TWILIO_API_KEY_SECRET")


class TwilioSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="TWILIO_")
    secrets: ClassVar[dict[str, str]] = {
        "TWILIO_ACCOUNT_SID": "the account's SID (AC...); needed with either credential",
        "TWILIO_AUTH_TOKEN": "the account's auth token",
        "TWILIO_API_KEY_SID": "an API key's SID (SK...), preferred to the auth token with its secret",
        "TWILIO_API_KEY_SECRET": "that API key's secret",
    }
    own_urls: ClassVar[frozenset[str]] = frozenset({"status_callback_url"})  # the hub's, not Twilio's

    base_url: str | None = Field(
        default=None, description="API base URL instead of Twilio's (a proxy); unset: api.twilio.com."
    )
    rate_limit: Rate = Field(
        default=parse_rate("1/1s"),
        description=(
            "Requests shared by every worker: one message a second, a US long code's throughput (a "
            "toll-free number or short code sends faster: e.g. `3/1s`, `100/1s`)."
        ),
    )
    from_number: str | None = Field(
        default=None,
        description="Sender number (E.164) of messages without a messaging service, and of every call; "
        "unset with the sandbox: Twilio's test number +15005550006.",
    )
    messaging_service_sid: str | None = Field(
        default=None,
        description="Messaging service (MG...) that sends the messages instead of a number, and schedules "
        "appointment reminders (Twilio schedules through one only); unset with the sandbox: reminders use "
        "its MG000... service, other messages the number.",
    )
    status_callback_url: str | None = Field(
        default=None,
        description="Where Twilio posts delivery statuses (the hub's /webhooks/twilio); unset: none asked.",
    )
    reminder_lead_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 35,
        description="How long before an appointment its reminder goes (hours; a reminder due at night goes "
        "at 20:00 the evening before). Messages are scheduled at Twilio (a messaging service is needed: "
        "TWILIO_MESSAGING_SERVICE_SID), calls wait in the hub.",
    )
    default_timezone: str = Field(
        default="America/New_York",
        description="IANA zone of a person whose own is missing or unknown: messages and calls go "
        "between 08:00 and 21:00 there.",
    )

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone") from None
        return value
