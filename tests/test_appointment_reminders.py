"""Appointment reminders end to end: host event → flow → Twilio connector → the stand-in (both databases).

Booked: an SMS Twilio schedules (ScheduleType=fixed, SendAt a lead time before, a Messaging Service), or
for people who chose calls a call the hub places when it is due. Moved: the old one canceled, a new one
scheduled. Cancelled: canceled at Twilio, or withdrawn from the delivery engine while it waits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from ennu.db import session_scope
from ennu.models import Appointment, Delivery, SyncLog, as_utc
from flows.appointment_cancelled import appointment_cancelled
from flows.appointment_scheduled import appointment_scheduled
from flows.erase_user import erase_user
from tests.factories import add_appointment, add_event, add_person, zone_at_local_hour

pytestmark = pytest.mark.usefixtures("prefect_server")

AFTERNOON = zone_at_local_hour(14)  # it is 14:00 there now: whole days ahead are 14:00 too
SERVICE = "MG" + "0" * 32


def whole(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def reminder_rows(appointment_id: int) -> list[tuple[str, str | None, str | None]]:
    with session_scope() as session:
        rows = session.execute(
            select(SyncLog.status, SyncLog.remote_id, SyncLog.error)
            .where(SyncLog.connector == "twilio", SyncLog.record_key == f"appointment:{appointment_id}")
            .order_by(SyncLog.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def delivery(event_id: str) -> Delivery:
    with session_scope() as session:
        row = session.execute(
            select(Delivery).where(Delivery.event_id == event_id, Delivery.integration == "twilio")
        ).scalar_one()
        session.expunge(row)
        return row


def messages(sandbox: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sandbox.objects("twilio", "messages")
    return found


def test_a_booked_appointment_schedules_its_sms_a_day_before_through_a_messaging_service(
    database: str, sandbox: Any
) -> None:
    user_id = add_person(phone="(415) 555-0111", timezone=AFTERNOON)
    starts_at = whole(datetime.now(UTC) + timedelta(days=3))
    appointment_id = add_appointment(user_id, starts_at, kind="hormone_follow_up")

    appointment_scheduled(event_ids=[add_event("appointment.scheduled", user_id, appointment_id)])

    [message] = messages(sandbox)
    form = message["received_form"]
    assert message["status"] == "scheduled" and form["ScheduleType"] == "fixed"
    assert form["SendAt"] == (starts_at - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert form["MessagingServiceSid"] == SERVICE and "From" not in form and form["To"] == "+14155550111"
    local = starts_at.astimezone(ZoneInfo(AFTERNOON))
    assert (
        form["Body"]
        == f"ENNU: a reminder of your appointment on {local:%a %d %b at %H:%M}. Reply STOP to opt out."
    )
    assert "hormone" not in str(form)  # the kind of appointment never leaves the hub
    assert reminder_rows(appointment_id) == [("created", message["sid"], None)]


def test_a_moved_appointment_cancels_the_old_reminder_and_schedules_a_new_one_once(
    database: str, sandbox: Any
) -> None:
    user_id = add_person(phone="(415) 555-0112", timezone=AFTERNOON)
    first_time = whole(datetime.now(UTC) + timedelta(days=3))
    appointment_id = add_appointment(user_id, first_time)
    appointment_scheduled(event_ids=[add_event("appointment.scheduled", user_id, appointment_id)])
    [old] = messages(sandbox)

    with session_scope() as session:
        session.get(Appointment, appointment_id).starts_at = first_time + timedelta(days=2)  # type: ignore[union-attr]
    appointment_scheduled(
        event_ids=[add_event("appointment.scheduled", user_id, appointment_id, event_id="moved-1")]
    )
    # The same time again (the host re-sent it): nothing asked of Twilio.
    before = len(sandbox.requests("twilio"))
    appointment_scheduled(
        event_ids=[add_event("appointment.scheduled", user_id, appointment_id, event_id="moved-2")]
    )

    by_sid = {m["sid"]: m for m in messages(sandbox)}
    assert by_sid[old["sid"]]["status"] == "canceled"
    [new] = [m for sid, m in by_sid.items() if sid != old["sid"]]
    assert new["status"] == "scheduled"
    assert new["received_form"]["SendAt"] == (first_time + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(sandbox.requests("twilio")) == before
    assert [s for s, _, _ in reminder_rows(appointment_id)] == ["created", "created", "unchanged"]


def test_a_cancelled_appointment_cancels_the_message_twilio_holds(database: str, sandbox: Any) -> None:
    user_id = add_person(phone="(415) 555-0113", timezone=AFTERNOON)
    appointment_id = add_appointment(user_id, whole(datetime.now(UTC) + timedelta(days=2)))
    appointment_scheduled(event_ids=[add_event("appointment.scheduled", user_id, appointment_id)])
    [scheduled] = messages(sandbox)

    with session_scope() as session:
        session.get(Appointment, appointment_id).status = "cancelled"  # type: ignore[union-attr]
    appointment_cancelled(event_ids=[add_event("appointment.cancelled", user_id, appointment_id)])

    [canceled] = messages(sandbox)
    assert canceled["sid"] == scheduled["sid"] and canceled["status"] == "canceled"
    cancel = [r for r in sandbox.requests("twilio") if r["path"].endswith(f"{scheduled['sid']}.json")]
    assert [r["method"] for r in cancel] == ["POST"]
    assert [s for s, _, _ in reminder_rows(appointment_id)] == ["created", "updated"]


def test_a_voice_reminder_waits_in_the_hub_until_its_time_and_a_cancellation_withdraws_it(
    database: str, sandbox: Any
) -> None:
    user_id = add_person(phone="(415) 555-0114", timezone=AFTERNOON, reminder_channel="voice")
    starts_at = whole(datetime.now(UTC) + timedelta(days=3))
    appointment_id = add_appointment(user_id, starts_at)
    booked = add_event("appointment.scheduled", user_id, appointment_id)

    appointment_scheduled(event_ids=[booked])

    waiting = delivery(booked)
    assert waiting.status == "deferred" and as_utc(waiting.not_before) == starts_at - timedelta(days=1)
    assert waiting.attempts == 0  # a wait by design spends no attempt
    assert sandbox.objects("twilio", "calls") == [] and messages(sandbox) == []

    with session_scope() as session:
        session.get(Appointment, appointment_id).status = "cancelled"  # type: ignore[union-attr]
    appointment_cancelled(event_ids=[add_event("appointment.cancelled", user_id, appointment_id)])

    withdrawn = delivery(booked)
    assert (withdrawn.status, withdrawn.last_error) == ("cancelled", "appointment cancelled")
    assert sandbox.objects("twilio", "calls") == [] and sandbox.requests("twilio") == []


def test_a_voice_reminder_that_is_due_is_a_call_with_fixed_words_and_no_kind(
    database: str, sandbox: Any
) -> None:
    user_id = add_person(phone="(415) 555-0115", timezone=AFTERNOON, reminder_channel="voice")
    appointment_id = add_appointment(user_id, whole(datetime.now(UTC) + timedelta(hours=5)), kind="lab_visit")

    appointment_scheduled(event_ids=[add_event("appointment.scheduled", user_id, appointment_id)])

    [call] = sandbox.objects("twilio", "calls")
    form = call["received_form"]
    assert form["To"] == "+14155550115" and form["From"] == "+15005550006"
    assert form["Twiml"].startswith(
        "<Response><Say>Hello, this is ENNU with a reminder of your appointment on "
    )
    assert "lab" not in form["Twiml"] and "Url" not in form
    assert reminder_rows(appointment_id) == [("created", call["sid"], None)]


def test_an_sms_reminder_too_late_for_scheduling_goes_now_and_one_too_close_is_skipped_with_why(
    database: str, sandbox: Any
) -> None:
    user_id = add_person(phone="(415) 555-0116", timezone=AFTERNOON)
    soon = add_appointment(user_id, whole(datetime.now(UTC) + timedelta(hours=5)))
    too_close = add_appointment(user_id, whole(datetime.now(UTC) + timedelta(minutes=30)))

    appointment_scheduled(
        event_ids=[
            add_event("appointment.scheduled", user_id, soon),
            add_event("appointment.scheduled", user_id, too_close),
        ]
    )

    [sent] = messages(sandbox)
    assert sent["status"] == "sent" and "ScheduleType" not in sent["received_form"]
    assert reminder_rows(too_close) == [("skipped", None, "appointment too close for a reminder")]


def test_an_erased_persons_scheduled_reminder_is_canceled_and_deleted_at_twilio(
    sqlite_database: str, sandbox: Any
) -> None:
    user_id = add_person(phone="(415) 555-0117", timezone=AFTERNOON)
    appointment_id = add_appointment(user_id, whole(datetime.now(UTC) + timedelta(days=2)))
    appointment_scheduled(event_ids=[add_event("appointment.scheduled", user_id, appointment_id)])
    [scheduled] = messages(sandbox)

    erase_user(event_ids=[add_event("user.deletion_requested", user_id)])

    assert messages(sandbox) == []
    paths = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in sandbox.requests("twilio")]
    sid = f"{scheduled['sid']}.json"
    assert paths.index(("POST", sid)) < paths.index(("DELETE", sid))  # canceled, then deleted
    assert all(remote is None for _, remote, _ in reminder_rows(appointment_id))


def test_a_late_cancellation_of_an_appointment_booked_again_leaves_its_waiting_reminder_alone(
    sqlite_database: str, sandbox: Any
) -> None:
    user_id = add_person(phone="(415) 555-0118", timezone=AFTERNOON, reminder_channel="voice")
    appointment_id = add_appointment(user_id, whole(datetime.now(UTC) + timedelta(days=3)))
    booked = add_event("appointment.scheduled", user_id, appointment_id)
    appointment_scheduled(event_ids=[booked])

    # The host cancelled, then booked it again; the cancellation's event is carried only now.
    appointment_cancelled(event_ids=[add_event("appointment.cancelled", user_id, appointment_id)])

    assert delivery(booked).status == "deferred"
    assert sandbox.objects("twilio", "calls") == []
