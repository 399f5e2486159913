"""Twilio connector against its stand-in: SMS form, refusals, quiet hours, voice TwiML, lost answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import pytest

from connectors.base import Outcome, Person, Record, UnsupportedObject
from connectors.errors import Action
from connectors.http import AuthError, PermanentError, RetryableError, VendorHttp
from connectors.settings import SettingsError
from connectors.twilio import connector as twilio_module
from connectors.twilio.connector import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_FROM_NUMBER,
    TwilioConnector,
    next_sending_start,
    spoken_twiml,
    within_sending_hours,
)
from connectors.twilio.errors import TABLE
from connectors.twilio.settings import TwilioSettings
from ennu.models import SyncStatus
from ennu.settings import get_settings
from mappings.loader import check_file
from sandbox.faults import FaultMode
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
    "TWILIO_RATE_LIMIT",
    "TWILIO_DEFAULT_TIMEZONE",
)
MESSAGES = f"/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Messages.json"
LOST_ANSWERS = [
    pytest.param("commit_then_reset", "reset after send", id="commit_then_reset"),
    pytest.param("commit_then_late", "timeout after send", id="commit_then_late"),
]

DAYTIME = zone_at_local_hour(14)
NIGHT = zone_at_local_hour(2)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


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
            VendorHttp(
                "twilio",
                f"{running.url}/twilio",
                auth=(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN),
                table=TABLE,
            ),
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
    assert (outcomes[0].status, outcomes[0].error) == (SyncStatus.DEFERRED, "quiet hours")
    assert outcomes[0].not_before is not None and outcomes[0].not_before > datetime.now(UTC)
    assert outcomes[1].status == SyncStatus.CREATED
    assert [f["To"] for f in received_forms(sandbox)] == ["+14155550102"]


def test_quiet_hours_defer_to_the_next_eight_oclock_in_the_persons_zone(
    twilio: TwilioConnector, sandbox: Any
) -> None:
    # 06:00 UTC: 02:00 in New York, 23:00 (the evening before) in Los Angeles, 08:00 in Berlin.
    twilio.clock = lambda: utc(2026, 7, 1, 6)
    records = [
        sms(1, "+14155550101", "America/New_York"),
        sms(2, "+14155550102", "America/Los_Angeles"),
        sms(3, "+14155550103", "Europe/Berlin"),
    ]
    first, second, third = twilio.push("messages", "To", records)
    quiet = SyncStatus.DEFERRED
    assert first == Outcome("health_goal:1", quiet, error="quiet hours", not_before=utc(2026, 7, 1, 12))
    assert second == Outcome("health_goal:2", quiet, error="quiet hours", not_before=utc(2026, 7, 1, 15))
    assert third.status == SyncStatus.CREATED and third.not_before is None
    assert [f["To"] for f in received_forms(sandbox)] == ["+14155550103"]


def test_the_next_eight_oclock_keeps_the_wall_clock_across_daylight_saving_changes() -> None:
    # 00:00 EST on the day clocks go forward: 08:00 is EDT, 12:00 UTC (not 13:00).
    assert next_sending_start(utc(2026, 3, 8, 5), "America/New_York") == utc(2026, 3, 8, 12)
    # 21:30 EDT the evening before clocks go back: the next 08:00 is EST, 13:00 UTC.
    assert next_sending_start(utc(2026, 11, 1, 1, 30), "America/New_York") == utc(2026, 11, 1, 13)
    # An unknown zone: the default one (New York).
    assert next_sending_start(utc(2026, 7, 1, 6), "Not/AZone") == utc(2026, 7, 1, 12)


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
def test_too_many_requests_and_outages_are_sent_again_by_the_client(
    twilio: TwilioConnector, sandbox: Any, status: int
) -> None:
    sandbox.fail("twilio", "status", status=status, count=1)
    [outcome] = twilio.push("messages", "To", [sms(1, "+14155550101")])
    assert outcome.status == SyncStatus.CREATED
    assert [r["status"] for r in sandbox.requests("twilio")] == [status, 201]
    assert len(sandbox.objects("twilio", "messages")) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_trouble_outlasting_the_retries_raises_while_nothing_was_sent(
    twilio: TwilioConnector, sandbox: Any, status: int
) -> None:
    retries = get_settings().http_retries
    sandbox.fail("twilio", "status", status=status, count=retries + 1)
    with pytest.raises(RetryableError) as retry:
        twilio.push("messages", "To", [sms(1, "+14155550101"), sms(2, "+14155550102")])
    assert str(20000 + status) in str(retry.value)
    assert len(sandbox.requests("twilio")) == retries + 1 and sandbox.objects("twilio", "messages") == []


def test_the_error_table_reads_twilios_codes_over_its_statuses() -> None:
    assert TABLE.action(400, "20429") is Action.RATE_LIMITED  # too many concurrent requests, any status
    assert TABLE.action(429, "20429") is Action.RATE_LIMITED
    assert TABLE.action(401, "20003") is Action.AUTH
    assert TABLE.action(400, "21211") is Action.BATCH  # read per record by `send` only (its "send")
    assert TABLE.expect("send") == {400} and TABLE.expect("delete") == {404, 409}


@pytest.mark.parametrize(("mode", "reason"), LOST_ANSWERS)
def test_a_lost_answer_makes_that_message_unknown_and_reconcile_finds_it(
    twilio: TwilioConnector, sandbox: Any, mode: FaultMode, reason: str
) -> None:
    twilio.http.timeout = 0.5  # commit_then_late answers after 30 s: the client gives up long before
    since = datetime.now(UTC)
    sandbox.fail("twilio", mode, count=1)
    lost, sent = twilio.push("messages", "To", [sms(1, "+14155550101"), sms(2, "+14155550102")])
    assert lost == Outcome("health_goal:1", SyncStatus.UNKNOWN, error=reason)  # no raise: the next one went
    assert sent.status == SyncStatus.CREATED
    [stored] = [m for m in sandbox.objects("twilio", "messages") if m["to"] == "+14155550101"]
    assert [r["fault"] for r in sandbox.stored_but_unanswered("twilio")] == [mode]

    found = twilio.reconcile("messages", [sms(1, "+14155550101"), sms(3, "+14155550103")], since)
    assert found == {"health_goal:1": Outcome("health_goal:1", SyncStatus.CREATED, remote_id=stored["sid"])}
    listed = [r for r in sandbox.requests("twilio") if r["method"] == "GET"]
    assert [r["path"] for r in listed] == [f"/twilio{MESSAGES}"] * 2  # one look-up per recipient


def test_a_message_matches_one_record_only_and_never_one_from_before(
    twilio: TwilioConnector, sandbox: Any
) -> None:
    twilio.http.timeout = 0.5
    since = datetime.now(UTC)
    sandbox.fail("twilio", "commit_then_reset", count=1)
    assert twilio.push("messages", "To", [sms(1, "+14155550101")])[0].status == SyncStatus.UNKNOWN
    sandbox.fail("twilio", "reset", count=1)  # dropped before the stand-in acted: nothing stored
    assert twilio.push("messages", "To", [sms(2, "+14155550101")])[0].status == SyncStatus.UNKNOWN
    [stored] = sandbox.objects("twilio", "messages")

    both = twilio.reconcile("messages", [sms(1, "+14155550101"), sms(2, "+14155550101")], since)
    assert both == {"health_goal:1": Outcome("health_goal:1", SyncStatus.CREATED, remote_id=stored["sid"])}
    later = since + timedelta(minutes=10)  # the message was created before this attempt (and its skew)
    assert twilio.reconcile("messages", [sms(1, "+14155550101")], later) == {}
    other_text = Record("health_goal:1", "evt-1", 1, {"To": "+14155550101", "Body": "Another text"})
    assert twilio.reconcile("messages", [other_text], since) == {}


def test_reconcile_follows_the_pages_of_the_list(
    twilio: TwilioConnector, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(twilio_module, "LIST_PAGE_SIZE", 1)
    since = datetime.now(UTC)
    texts = ["First reminder", "Second reminder", "Third reminder"]
    records = [
        Record(f"health_goal:{n}", f"evt-{n}", n, {"To": "+14155550101", "Body": t, "timezone": DAYTIME})
        for n, t in enumerate(texts)
    ]
    assert all(o.status == SyncStatus.CREATED for o in twilio.push("messages", "To", records))
    sids = {m["body"]: m["sid"] for m in sandbox.objects("twilio", "messages")}

    found = twilio.reconcile("messages", records[:1], since)  # the oldest: on the last page
    assert found == {
        "health_goal:0": Outcome("health_goal:0", SyncStatus.CREATED, remote_id=sids["First reminder"])
    }
    pages = [r["query"] for r in sandbox.requests("twilio") if r["method"] == "GET"]
    assert len(pages) == 3 and "PageToken=PA" in pages[-1]


def test_the_look_up_reaches_back_a_day_when_the_attempt_was_just_after_midnight(
    twilio: TwilioConnector, sandbox: Any
) -> None:
    assert twilio.reconcile("messages", [sms(1, "+14155550101")], utc(2026, 7, 1, 0, 1)) == {}
    [lookup] = sandbox.requests("twilio")
    assert parse_qs(lookup["query"]) == {
        "To": ["+14155550101"],
        "DateSent>": ["2026-06-30T00:00:00Z"],  # the day of `since` less the clock-skew allowance
        "PageSize": ["100"],
    }
    with pytest.raises(NotImplementedError):
        twilio.reconcile("calls", [sms(1, "+14155550101")], utc(2026, 7, 1))


def test_trouble_after_a_send_defers_the_rest_unsent_instead_of_raising(
    twilio: TwilioConnector, sandbox: Any
) -> None:
    twilio.http.timeout = 0.5
    sandbox.set_rate("twilio", per_second=0.001, retry_after=30)  # the first request only, then 429s
    sandbox.fail("twilio", "commit_then_reset", count=1)
    records = [
        sms(1, "+14155550101"),
        sms(2, "+14155550102"),
        sms(3, "+14155550103", NIGHT),
        sms(4, "+14155550104"),
    ]
    lost, limited, night, after = twilio.push("messages", "To", records)
    assert lost.status == SyncStatus.UNKNOWN
    # Vendor trouble: DEFERRED without not_before (an attempt spent), for it and every record after.
    assert limited == Outcome("health_goal:2", SyncStatus.DEFERRED, error="http 429 20429")
    assert night.error == "quiet hours" and night.not_before is not None
    assert after == Outcome("health_goal:4", SyncStatus.DEFERRED, error="http 429 20429")
    assert [r["status"] for r in sandbox.requests("twilio")] == [201, 429]  # the fourth was never sent
    assert [m["to"] for m in sandbox.objects("twilio", "messages")] == ["+14155550101"]


def test_the_status_callback_carries_the_callers_delivery_ids_after_its_own(
    twilio: TwilioConnector, sandbox: Any
) -> None:
    record = Record(
        "health_goal:1",
        "evt-1",
        1,
        {"To": "+14155550101", "Body": BODY, "timezone": DAYTIME},
        delivery_ids={"delivery_id": "d-812", "record_key": "not-this-one"},
    )
    assert twilio.push("messages", "To", [record])[0].status == SyncStatus.CREATED
    [form] = received_forms(sandbox)
    assert form["StatusCallback"] == CALLBACK + "&event_id=evt-1&record_key=health_goal%3A1&delivery_id=d-812"


def test_the_stand_in_lists_messages_newest_first_by_recipient_and_day_sent(
    twilio: TwilioConnector, sandbox: Any
) -> None:
    records = [sms(n, to) for n, to in enumerate(["+14155550101", "+14155550102", "+14155550101"])]
    first, _, third = twilio.push("messages", "To", records)
    today = parsedate_to_datetime(sandbox.objects("twilio", "messages")[0]["date_sent"]).date()

    def listing(**query: Any) -> dict[str, Any]:
        page: dict[str, Any] = twilio.http.request("GET", MESSAGES, params=query).json()
        return page

    page = listing(To="+14155550101", PageSize=1)
    assert [m["sid"] for m in page["messages"]] == [third.remote_id]
    assert (page["page"], page["page_size"], page["start"], page["end"]) == (0, 1, 0, 0)
    assert page["next_page_uri"].startswith(MESSAGES + "?To=%2B14155550101&PageSize=1&Page=1&PageToken=PA")
    rest = twilio.http.request("GET", page["next_page_uri"]).json()
    assert [m["sid"] for m in rest["messages"]] == [first.remote_id] and rest["next_page_uri"] is None
    assert len(listing(**{"DateSent": today.isoformat()})["messages"]) == 3
    assert listing(**{"DateSent>": (today + timedelta(days=1)).isoformat()})["messages"] == []
    assert len(listing(**{"DateSent<": today.isoformat(), "To": "+14155550102"})["messages"]) == 1
    with pytest.raises(PermanentError) as invalid:
        listing(**{"DateSent>": "next tuesday"})
    assert (invalid.value.status, invalid.value.code) == (400, "20001")

    message = twilio.http.request("GET", f"{MESSAGES[:-5]}/{first.remote_id}.json").json()
    assert message["status"] == "sent" and message["body"] == BODY
    assert parsedate_to_datetime(message["date_sent"]) >= parsedate_to_datetime(message["date_created"])
    assert message["date_created"].endswith("+0000")  # RFC 2822, GMT, as Twilio writes it


def test_connection_test_reads_the_account_and_a_wrong_token_is_refused(
    twilio: TwilioConnector, sandbox: Any
) -> None:
    assert twilio.test_connection().ok
    assert [r["path"] for r in sandbox.requests("twilio")] == [
        f"/twilio/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}.json"
    ]
    twilio.http.session.auth = (SANDBOX_ACCOUNT_SID, "wrong-token")
    with pytest.raises(AuthError) as refusal:
        twilio.test_connection()
    assert refusal.value.status == 401 and refusal.value.code == "20003"


def test_erase_deletes_the_persons_messages_and_calls_and_cancels_queued_ones_first(
    twilio: TwilioConnector, sandbox: Any, sandbox_url: str
) -> None:
    import requests

    mine, theirs = "+14155550101", "+14155550202"
    twilio.push("messages", "To", [sms(1, mine), sms(2, mine), sms(3, theirs)])
    account = f"{sandbox_url}/twilio/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}"
    auth = (SANDBOX_ACCOUNT_SID, "sandbox-twilio-token")
    scheduled = requests.post(
        f"{account}/Messages.json",
        data={
            "To": mine,
            "MessagingServiceSid": "MG" + "0" * 32,
            "Body": BODY,
            "ScheduleType": "fixed",
            "SendAt": (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        auth=auth,
        timeout=10,
    ).json()
    assert scheduled["status"] == "scheduled"
    call = requests.post(
        f"{account}/Calls.json",
        data={"To": mine, "From": "+15005550006", "Url": CALLBACK},
        auth=auth,
        timeout=10,
    ).json()
    # A record on its way cannot be deleted (Twilio's 20009): canceled first.
    refused = requests.delete(f"{account}/Calls/{call['sid']}.json", auth=auth, timeout=10)
    assert (refused.status_code, refused.json()["code"]) == (409, 20009)

    outcome = twilio.erase(Person(user_id=5, phone="(415) 555-0101"))

    assert outcome == Outcome("user:5", SyncStatus.ERASED, remote_id="3 messages, 1 calls deleted")
    assert [m["to"] for m in sandbox.objects("twilio", "messages")] == [theirs]
    assert sandbox.objects("twilio", "calls") == []
    calls = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in sandbox.requests("twilio")]
    assert ("POST", f"{scheduled['sid']}.json") in calls and ("POST", f"{call['sid']}.json") in calls
    assert twilio.erase(Person(user_id=5, phone=mine)).remote_id == "0 messages, 0 calls deleted"


def test_the_mapping_passes_the_linter_with_a_fixed_text() -> None:
    mapping, errors = check_file(MAPPING)
    assert errors == [] and mapping is not None
    assert mapping.fields["Body"].value == BODY and mapping.fields["Body"].source is None
    assert mapping.fields["timezone"].sources == ("user.timezone",)
    assert mapping.upsert_key == "To" and mapping.object == "messages"


def test_settings_keep_their_variable_names_and_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connector = twilio_for(
        monkeypatch,
        TWILIO_FROM_NUMBER="+14155550000",
        TWILIO_STATUS_CALLBACK_URL=CALLBACK,
        TWILIO_DEFAULT_TIMEZONE="America/Chicago",
        TWILIO_MESSAGING_SERVICE_SID="",  # empty is unset
    )
    assert (connector.from_number, connector.status_callback_url) == ("+14155550000", CALLBACK)
    assert connector.default_timezone == "America/Chicago" and connector.messaging_service_sid is None
    assert TwilioSettings.variable("rate_limit") == "TWILIO_RATE_LIMIT"
    for name, value in (("TWILIO_RATE_LIMIT", "lots"), ("TWILIO_DEFAULT_TIMEZONE", "Mars/Olympus")):
        monkeypatch.setenv(name, value)
        with pytest.raises(SettingsError, match=name) as bad:
            TwilioSettings.load()
        assert value not in str(bad.value)
        monkeypatch.delenv(name)


def test_only_a_token_or_an_api_key_secret_counts_as_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TWILIO_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    monkeypatch.setenv("TWILIO_API_KEY_SID", "SK" + "1" * 32)
    assert not TwilioConnector.has_credentials()
    monkeypatch.setenv("TWILIO_API_KEY_SECRET", "a-secret")
    assert TwilioConnector.has_credentials()


def test_an_object_twilio_does_not_write_is_refused_before_any_request(
    twilio: TwilioConnector, sandbox: Any
) -> None:
    with pytest.raises(UnsupportedObject, match="messages, calls, reminders"):
        twilio.push("faxes", "To", [sms(1, "+14155550101")])
    assert sandbox.requests("twilio") == []
    assert TwilioConnector.batch_sizes == {"messages": 20, "calls": 20, "reminders": 20}
