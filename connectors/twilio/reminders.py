"""Appointment reminders: when each goes, and how (a message Twilio schedules, a call the hub places).

The decision is a pure function of the appointment as the host holds it now (time, status, the person's
channel and zone), the lead time and the clock; `TwilioConnector` carries it out. Twilio schedules
messages (`ScheduleType=fixed`, `SendAt` 15 minutes to 35 days ahead, through a Messaging Service) but not
calls: a call waits in the delivery engine (a deferral with `not_before`, which spends no attempt, survives
restarts and is cancelled with the person's other deliveries) and is placed when it comes due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any, Literal
from xml.sax.saxutils import escape

import pandas as pd

from connectors.twilio.hours import SEND_FROM_HOUR, SEND_UNTIL_HOUR, person_zone

# Twilio's scheduling window (its docs state 900 s at the least; newer pages 300 s) with a minute's margin
# for the request's own way, and its 35 days at the most, less an hour.
SCHEDULE_AT_LEAST = timedelta(minutes=16)
SCHEDULE_AT_MOST = timedelta(days=35) - timedelta(hours=1)
# A reminder that could only arrive in the last hour before the appointment is not sent (skipped, with why).
LAST_USEFUL = timedelta(hours=1)
EVENING_BEFORE = clock_time(SEND_UNTIL_HOUR - 1)  # a reminder due at night goes at 20:00 the evening before
TIME_PLACEHOLDER = "{time}"
TIME_FORMAT = "%a %d %b at %H:%M"  # "Wed 02 Dec at 10:00", in the person's zone
CHANNELS = ("sms", "voice")
# The mapping's fields the connector reads for itself; they never leave the system.
REMINDER_LOCAL_FIELDS = frozenset({"appointment", "starts_at", "status", "channel", "timezone"})
TOO_CLOSE = "appointment too close for a reminder"
CANCELLED = "cancelled"

Action = Literal["schedule", "send_now", "call", "wait", "skip", "withdraw"]


@dataclass(frozen=True)
class Step:
    """What to do for one reminder now: `withdraw` only cancels; the others cancel a previous one first."""

    action: Action
    channel: str
    send_at: datetime | None = None  # schedule: Twilio's SendAt
    not_before: datetime | None = None  # wait: when the delivery engine offers it again
    reason: str | None = None  # wait and skip: why (no value)


def as_utc_time(value: Any) -> datetime | None:
    """An aware UTC datetime from what the frame held (datetime, pandas Timestamp or ISO text), or None."""
    if value is None or (not isinstance(value, str | datetime) and pd.isna(value)):
        return None
    try:
        moment = pd.Timestamp(value).to_pydatetime()
    except (TypeError, ValueError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def in_sending_hours(moment: datetime, timezone: str | None, default_timezone: str) -> bool:
    return SEND_FROM_HOUR <= moment.astimezone(person_zone(timezone, default_timezone)).hour < SEND_UNTIL_HOUR


def reminder_time(
    starts_at: datetime, lead: timedelta, timezone: str | None, default_timezone: str
) -> datetime:
    """`lead` before the appointment; at night (21:00 to 08:00 there) 20:00 the evening before instead."""
    zone = person_zone(timezone, default_timezone)
    local = (starts_at - lead).astimezone(zone)
    if SEND_FROM_HOUR <= local.hour < SEND_UNTIL_HOUR:
        return local.astimezone(UTC)
    day = local.date() if local.hour >= SEND_UNTIL_HOUR else local.date() - timedelta(days=1)
    return datetime.combine(day, EVENING_BEFORE, tzinfo=zone).astimezone(UTC)


def next_morning(now: datetime, timezone: str | None, default_timezone: str) -> datetime:
    zone = person_zone(timezone, default_timezone)
    local = now.astimezone(zone)
    day = local.date() if local.hour < SEND_FROM_HOUR else local.date() + timedelta(days=1)
    return datetime.combine(day, clock_time(SEND_FROM_HOUR), tzinfo=zone).astimezone(UTC)


def rendered(text: str, starts_at: datetime | None, timezone: str | None, default_timezone: str) -> str:
    """The mapping's fixed text with `{time}` as the appointment's local time (no kind, nothing clinical)."""
    if TIME_PLACEHOLDER not in text or starts_at is None:
        return text
    local = starts_at.astimezone(person_zone(timezone, default_timezone))
    return text.replace(TIME_PLACEHOLDER, local.strftime(TIME_FORMAT))


def plan_reminder(fields: dict[str, Any], now: datetime, lead: timedelta, default_timezone: str) -> Step:
    """The step for one reminder record (see the module's docstring)."""
    channel = str(fields.get("channel") or "sms")
    channel = channel if channel in CHANNELS else "sms"
    starts_at = as_utc_time(fields.get("starts_at"))
    if str(fields.get("status") or "") == CANCELLED:
        return Step("withdraw", channel)
    if starts_at is None or starts_at - now < LAST_USEFUL:
        return Step("skip", channel, reason=TOO_CLOSE)
    zone = fields.get("timezone")
    at = reminder_time(starts_at, lead, zone, default_timezone)
    if channel == "sms" and at - now > SCHEDULE_AT_MOST:
        # Beyond Twilio's window: it waits here and is scheduled once the window reaches it.
        return Step("wait", channel, not_before=at - SCHEDULE_AT_MOST, reason="reminder beyond 35 days")
    if channel == "sms" and at - now >= SCHEDULE_AT_LEAST:
        return Step("schedule", channel, send_at=at)
    if channel == "voice" and at > now:
        return Step("wait", channel, not_before=at, reason="reminder call at its time")
    # Due now (or too soon for Twilio to schedule): now in daytime, else the next morning if still useful.
    if in_sending_hours(now, zone, default_timezone):
        return Step("call" if channel == "voice" else "send_now", channel)
    morning = next_morning(now, zone, default_timezone)
    if starts_at - morning < LAST_USEFUL:
        return Step("skip", channel, reason=TOO_CLOSE)
    return Step("wait", channel, not_before=morning, reason="quiet hours")


def spoken_twiml(text: str) -> str:
    """`<Response><Say>text</Say></Response>`, the text XML-escaped."""
    return f"<Response><Say>{escape(text)}</Say></Response>"


def send_at_text(moment: datetime) -> str:
    """Twilio's SendAt: ISO 8601 in UTC, `YYYY-MM-DDTHH:MM:SSZ`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
