"""Twilio connector against its sandbox stand-in: SMS form, per-record refusals, quiet hours, voice TwiML."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.base import Outcome, Person, Record
from connectors.http import PermanentError, RetryableError, VendorHttp
from connectors.twilio import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_FROM_NUMBER,
    TwilioConnector,
    spoken_twiml,
    within_sending_hours,
)
from ennu.models import SyncStatus
from ennu.settings import get_settings
from mappings.loader import check_file
from sandbox.server import start_sandbox
from sandbox.twilio import UNSUBSCRIBED_ENV
from tests.factories import zone_at_local_hour

MAPPING = Path(__file__).resolve().parent.parent / "mappings" / "health_goal.completed" / "twilio.yaml"
BODY = "ENNU: congratulations on completing your health goal! Reply STOP to opt out."
CALLBACK = "https://hub.example.org/webhooks/twilio?source=ennu"
TWILIO_ENV = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_KEY_SID",
    "TWILIO_API_KEY_SECRET",
    "TWILIO_BASE_URL",
    "TWILIO_FROM_NUMBER",
    "TWILIO_MESSAGING_SERVICE_SID",
    "TWILIO_STATUS_CALLBACK_URL",
)




DAYTIME = zone_at_local_hour(14)
NIGHT = zone_at_local_hour(2)


def sms(n: int, to: str, timezone: str = DAYTIME) -> Record:
    return Record(f"health_goal:{n}", f"evt-{n}", n, {"To": to, "Body": BODY, "timezone": timezone})


def twilio_for(monkeypatch: pytest.MonkeyPatch, **env: str) -> TwilioConnector:
    for name in TWILIO_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return TwilioConnector.from_settings(get_settings(), rate_limited=False)


@pytest.fixture()
def twilio(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TwilioConnector]:
    connector = twilio_for(monkeypatch, TWILIO_STATUS_CALLBACK_URL=CALLBACK)
    yield connector
    connector.close()


def received_forms(sandbox: Any, kind: str = "messages") -> list[dict[str, str]]:
    return [m["received_form"] for m in sandbox.objects("twilio", kind)]


def test_an_sms_is_sent_with_the_form_fields_twilio_expects(twilio: TwilioConnector, sandbox: Any) -> None:
    [outcome] = twilio.push("messages", "To", [sms(1, "+14155550101")])
    assert outcome.status == SyncStatus.CREATED and str(outcome.remote_id).startswith("SM")
    assert received_forms(sandbox) == [
        {
            "To": "+14155550101",
            "Body": BODY,
            "From": SANDBOX_FROM_NUMBER,
            "StatusCallback": CALLBACK + "&event_id=evt-1&record_key=health_goal%3A1",
        }
    ]
    [request] = sandbox.requests("twilio")
    assert request["method"] == "POST"
    assert request["path"] == f"/twilio/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Messages.json"
    assert sandbox.objects("twilio", "messages")[0]["sid"] == outcome.remote_id


def test_a_messaging_service_replaces_the_sender_number(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = "MG" + "0" * 32
    connector = twilio_for(monkeypatch, TWILIO_MESSAGING_SERVICE_SID=service)
    assert connector.push("messages", "To", [sms(1, "+14155550101")])[0].status == SyncStatus.CREATED
    [form] = received_forms(sandbox)
    assert form["MessagingServiceSid"] == service and "From" not in form and "StatusCallback" not in form


def test_invalid_and_unsubscribed_numbers_fail_per_record_while_the_others_go(
    twilio: TwilioConnector, sandbox: Any
) -> None:
    outcomes = twilio.push(
        "messages",
        "To",
        [sms(1, "+14155550101"), sms(2, "+1555"), sms(3, "+15005550004"), sms(4, "+14155550104")],
    )
    assert [(o.status, o.error) for o in outcomes] == [
        (SyncStatus.CREATED, None),
        (SyncStatus.FAILED, "21211"),
        (SyncStatus.FAILED, "21610"),
        (SyncStatus.CREATED, None),
    ]
    assert [f["To"] for f in received_forms(sandbox)] == ["+14155550101", "+14155550104"]


def test_numbers_configured_as_unsubscribed_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UNSUBSCRIBED_ENV, "+14155550199, +14155550198")
    with start_sandbox() as running:
        connector = TwilioConnector(
            VendorHttp("twilio", f"{running.url}/twilio", auth=(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN)),
            SANDBOX_ACCOUNT_SID,
            from_number=SANDBOX_FROM_NUMBER,
        )
        outcomes = connector.push("messages", "To", [sms(1, "+14155550199"), sms(2, "+14155550101")])
        connector.close()
    assert [(o.status, o.error) for o in outcomes] == [
        (SyncStatus.FAILED, "21610"),
        (SyncStatus.CREATED, None),
    ]


def test_quiet_hours_defer_without_sending(twilio: TwilioConnector, sandbox: Any) -> None:
    outcomes = twilio.push("messages", "To", [sms(1, "+14155550101", NIGHT), sms(2, "+14155550102")])
    assert outcomes[0] == Outcome("health_goal:1", SyncStatus.DEFERRED, error="quiet hours")
    assert outcomes[1].status == SyncStatus.CREATED
    assert [f["To"] for f in received_forms(sandbox)] == ["+14155550102"]


def test_sending_hours_are_eight_to_nine_in_the_persons_zone() -> None:
    new_york = ZoneInfo("America/New_York")

    def at(hour: int, minute: int = 0, month: int = 7) -> datetime:
        return datetime(2026, month, 1, hour, minute, tzinfo=new_york)

    assert not within_sending_hours(at(7, 59), "America/New_York")
    assert within_sending_hours(at(8), "America/New_York")
    assert within_sending_hours(at(20, 59, month=1), "America/New_York")
    assert not within_sending_hours(at(21), "America/New_York")
    assert within_sending_hours(at(12), "Asia/Tokyo") is False  # 01:00 the next day in Tokyo
    assert within_sending_hours(at(12), "Not/AZone")  # an unknown zone falls back to the default one


def test_a_voice_reminder_is_spoken_twiml_with_the_text_escaped(
    twilio: TwilioConnector, sandbox: Any
) -> None:
    record = Record(
        "health_goal:1", "evt-1", 1, {"To": "+14155550101", "Say": "Tom & Jerry <3", "timezone": DAYTIME}
    )
    [outcome] = twilio.push("calls", "To", [record])
    assert outcome.status == SyncStatus.CREATED and str(outcome.remote_id).startswith("CA")
    [form] = received_forms(sandbox, "calls")
    assert (
        form["Twiml"]
        == "<Response><Say>Tom &amp; Jerry &lt;3</Say></Response>"
        == spoken_twiml("Tom & Jerry <3")
    )
    assert form["From"] == SANDBOX_FROM_NUMBER and "Say" not in form and "timezone" not in form


@pytest.mark.parametrize("status", [429, 503])
def test_too_many_requests_and_outages_are_retried(
    twilio: TwilioConnector, sandbox: Any, status: int
) -> None:
    sandbox.fail("twilio", "status", status=status, count=1)
    with pytest.raises(RetryableError) as retry:
        twilio.push("messages", "To", [sms(1, "+14155550101")])
    assert str(20000 + status) in str(retry.value)
    assert twilio.push("messages", "To", [sms(1, "+14155550101")])[0].status == SyncStatus.CREATED


def test_connection_test_reads_the_account_and_a_wrong_token_is_refused(
    twilio: TwilioConnector, sandbox: Any
) -> None:
    assert twilio.test_connection().ok
    assert [r["path"] for r in sandbox.requests("twilio")] == [
        f"/twilio/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}.json"
    ]
    twilio.http.session.auth = (SANDBOX_ACCOUNT_SID, "wrong-token")
    with pytest.raises(PermanentError) as refusal:
        twilio.test_connection()
    assert refusal.value.status == 401 and refusal.value.code == "20003"


def test_erase_reports_that_twilio_holds_no_person_record(twilio: TwilioConnector, sandbox: Any) -> None:
    outcome = twilio.erase(Person(user_id=5, phone="+14155550101"))
    assert outcome == Outcome("user:5", SyncStatus.UNCHANGED, error="no person record at Twilio")
    assert sandbox.requests("twilio") == []


def test_the_mapping_passes_the_linter_with_a_fixed_text() -> None:
    mapping, errors = check_file(MAPPING)
    assert errors == [] and mapping is not None
    assert mapping.fields["Body"].value == BODY and mapping.fields["Body"].source is None
    assert mapping.fields["timezone"].sources == ("user.timezone",)
    assert mapping.upsert_key == "To" and mapping.object == "messages"
