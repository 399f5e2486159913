"""Twilio reminders without a flow: when each goes (the pure decision), the stand-in's scheduling rules,
and a lost answer reconciled for a scheduled message and for a call."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from twilio.request_validator import RequestValidator

from connectors.base import Outcome, Record
from connectors.twilio.connector import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, TwilioConnector
from connectors.twilio.reminders import TOO_CLOSE, Step, plan_reminder, reminder_time
from ennu.models import SyncStatus
from ennu.settings import get_settings
from tests.factories import zone_at_local_hour

NEW_YORK = "America/New_York"
LEAD = timedelta(hours=24)
NOON = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)  # 12:00 in New York (EDT)
SERVICE = "MG" + "0" * 32
TEXT = "ENNU: a reminder of your appointment on {time}. Reply STOP to opt out."


def fields(starts_at: datetime, *, channel: str = "sms", status: str = "scheduled") -> dict[str, Any]:
    return {"starts_at": starts_at, "status": status, "channel": channel, "timezone": NEW_YORK}


def plan(starts_at: datetime, **kwargs: str) -> Step:
    return plan_reminder(fields(starts_at, **kwargs), NOON, LEAD, NEW_YORK)


def test_an_sms_reminder_is_scheduled_a_lead_time_before_and_at_night_the_evening_before() -> None:
    assert plan(NOON + timedelta(days=3)) == Step("schedule", "sms", send_at=NOON + timedelta(days=2))
    # A 07:00 appointment: 07:00 the day before is night there; 20:00 the evening before instead.
    seven = datetime(2026, 7, 5, 11, 0, tzinfo=UTC)
    assert reminder_time(seven, LEAD, NEW_YORK, NEW_YORK) == datetime(2026, 7, 4, 0, 0, tzinfo=UTC)
    # 23:00 there: 20:00 the same evening.
    late = datetime(2026, 7, 6, 3, 0, tzinfo=UTC)  # 23:00 on the 5th in New York
    assert reminder_time(late + LEAD, LEAD, NEW_YORK, NEW_YORK) == datetime(2026, 7, 6, 0, 0, tzinfo=UTC)


def test_beyond_twilios_35_days_the_reminder_waits_here_and_is_scheduled_once_within_them() -> None:
    step = plan(NOON + timedelta(days=60))
    assert step.action == "wait" and step.reason == "reminder beyond 35 days"
    assert step.not_before is not None
    later = plan_reminder(fields(NOON + timedelta(days=60)), step.not_before, LEAD, NEW_YORK)
    assert later.action == "schedule"


def test_too_late_to_schedule_goes_now_by_day_next_morning_by_night_and_too_close_is_skipped() -> None:
    assert plan(NOON + timedelta(hours=5)) == Step("send_now", "sms")
    assert plan(NOON + timedelta(minutes=59)) == Step("skip", "sms", reason=TOO_CLOSE)
    assert plan(NOON - timedelta(hours=1)) == Step("skip", "sms", reason=TOO_CLOSE)  # already past
    night = datetime(2026, 7, 2, 4, 0, tzinfo=UTC)  # 00:00 in New York
    step = plan_reminder(fields(night + timedelta(hours=14)), night, LEAD, NEW_YORK)
    assert step == Step(
        "wait", "sms", not_before=datetime(2026, 7, 2, 12, 0, tzinfo=UTC), reason="quiet hours"
    )
    # The next morning would be less than an hour before it: skipped.
    assert plan_reminder(fields(night + timedelta(hours=8)), night, LEAD, NEW_YORK).action == "skip"


def test_a_voice_reminder_waits_for_its_time_then_calls_and_a_cancelled_appointment_only_withdraws() -> None:
    starts_at = NOON + timedelta(days=3)
    step = plan(starts_at, channel="voice")
    assert step == Step(
        "wait", "voice", not_before=NOON + timedelta(days=2), reason="reminder call at its time"
    )
    assert plan_reminder(fields(starts_at, channel="voice"), step.not_before, LEAD, NEW_YORK).action == "call"  # type: ignore[arg-type]
    assert plan(starts_at, status="cancelled").action == "withdraw"
    assert plan(starts_at, channel="pigeon").channel == "sms"  # an unknown channel: SMS


# ----------------------------------------------------------------------------------- against the stand-in


@pytest.fixture()
def twilio(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TwilioConnector]:
    for name in ("TWILIO_MESSAGING_SERVICE_SID", "TWILIO_FROM_NUMBER", "TWILIO_STATUS_CALLBACK_URL"):
        monkeypatch.delenv(name, raising=False)
    connector = TwilioConnector.from_settings(get_settings(), rate_limited=False)
    yield connector
    connector.close()


def post_message(sandbox_url: str, **form: str) -> requests.Response:
    return requests.post(
        f"{sandbox_url}/twilio/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Messages.json",
        data={"To": "+14155550121", "Body": "ENNU reminder", **form},
        auth=(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN),
        timeout=10,
    )


def send_at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"ScheduleType": "fixed", "MessagingServiceSid": SERVICE}, 35111),  # no SendAt
        ({"ScheduleType": "fixed", "SendAt": "in a day", "MessagingServiceSid": SERVICE}, 35114),
        ({"ScheduleType": "fixed", "SendAt": "+10m", "MessagingServiceSid": SERVICE}, 35114),  # too soon
        ({"ScheduleType": "fixed", "SendAt": "+36d", "MessagingServiceSid": SERVICE}, 35114),  # too far
        ({"ScheduleType": "fixed", "SendAt": "+1d", "From": "+15005550006"}, 35118),  # no service
    ],
)
def test_the_stand_in_refuses_what_twilio_refuses_of_a_scheduled_message(
    sandbox: Any, sandbox_url: str, form: dict[str, str], code: int
) -> None:
    offsets = {"+10m": timedelta(minutes=10), "+36d": timedelta(days=36), "+1d": timedelta(days=1)}
    if form.get("SendAt") in offsets:
        form = {**form, "SendAt": send_at(offsets[form["SendAt"]])}
    refused = post_message(sandbox_url, **form)
    assert (refused.status_code, refused.json()["code"]) == (400, code)
    accepted = post_message(
        sandbox_url, ScheduleType="fixed", SendAt=send_at(timedelta(days=1)), MessagingServiceSid=SERVICE
    )
    assert accepted.status_code == 201 and accepted.json()["status"] == "scheduled"


def reminder(n: int, starts_at: datetime, channel: str = "sms") -> Record:
    zone = zone_at_local_hour(14)
    record_fields = {
        "To": f"+1415555013{n}",
        "Body": TEXT,
        "Say": "ENNU reminder on {time}.",
        "appointment": n,
        "starts_at": starts_at,
        "status": "scheduled",
        "channel": channel,
        "timezone": zone,
    }
    return Record(f"appointment:{n}", f"evt-{n}", n, record_fields)


@pytest.mark.parametrize("channel", ["sms", "voice"])
def test_a_lost_answer_for_a_reminder_is_found_by_reconcile_and_not_sent_twice(
    twilio: TwilioConnector, sandbox: Any, channel: str
) -> None:
    twilio.http.timeout = 0.5
    since = datetime.now(UTC)
    # A voice reminder is due now (its call is placed); an SMS one is three days ahead (scheduled).
    ahead = timedelta(hours=5) if channel == "voice" else timedelta(days=3)
    records = [
        reminder(1, datetime.now(UTC) + ahead, channel),
        reminder(2, datetime.now(UTC) + ahead, channel),
    ]
    sandbox.fail("twilio", "commit_then_reset", count=1)

    lost, sent = twilio.push("reminders", "appointment", records)

    assert lost.status == SyncStatus.UNKNOWN and sent.status == SyncStatus.CREATED
    kind = "calls" if channel == "voice" else "messages"
    [stored] = [m for m in sandbox.objects("twilio", kind) if m["to"] == "+14155550131"]
    found = twilio.reconcile("reminders", [records[0]], since)
    assert found == {"appointment:1": Outcome("appointment:1", SyncStatus.CREATED, remote_id=stored["sid"])}
    assert twilio.reconcile("reminders", [records[0]], datetime.now(UTC) + timedelta(minutes=5)) == {}


def test_the_stand_in_posts_a_status_callback_signed_as_the_twilio_sdk_validates_it(
    sandbox: Any, sandbox_url: str, endpoint: Any
) -> None:
    callback = f"{endpoint.url}/webhooks/twilio?event_id=evt-9&record_key=appointment%3A9"
    endpoint.answer("POST", "/webhooks/twilio", 200, {"received": 1})
    created = post_message(sandbox_url, From="+15005550006", StatusCallback=callback).json()

    answer = requests.post(
        f"{sandbox_url}/twilio/_sandbox/status",
        json={"sid": created["sid"], "status": "undelivered", "error_code": "30003"},
        auth=(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN),
        timeout=10,
    ).json()

    assert answer["answered"] == 200
    [posted] = endpoint.take()
    form = dict(posted.form)
    assert form["MessageSid"] == created["sid"] and form["MessageStatus"] == "undelivered"
    assert form["ErrorCode"] == "30003" and dict(posted.query) == {
        "event_id": "evt-9",
        "record_key": "appointment:9",
    }
    validator = RequestValidator(SANDBOX_AUTH_TOKEN)
    assert validator.validate(callback, form, posted.headers["x-twilio-signature"])
    [stored] = [m for m in sandbox.objects("twilio", "messages") if m["sid"] == created["sid"]]
    assert (stored["status"], stored["error_code"]) == ("undelivered", 30003)
