"""Twilio's sending hours: a person is messaged or called between 08:00 and 21:00 in their own zone."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SEND_FROM_HOUR = 8
SEND_UNTIL_HOUR = 21
DEFAULT_TIMEZONE = "America/New_York"


def person_zone(timezone: str | None, default_timezone: str = DEFAULT_TIMEZONE) -> ZoneInfo:
    """The person's IANA time zone, the default one when it is missing or unknown."""
    try:
        return ZoneInfo(timezone or default_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default_timezone)
