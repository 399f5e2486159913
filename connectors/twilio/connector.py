"""Twilio: SMS and voice reminders, one request each, in daytime hours; lost answers found by look-up."""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from connectors.base import AmbiguousSends, HttpConnector, ObjectSpec, Outcome, Person, Record
from connectors.endpoint import NotConfigured, resolve_endpoint
from connectors.http import AmbiguousError, ConnectorError, VendorHttp
from connectors.twilio.errors import TABLE
from connectors.twilio.hours import DEFAULT_TIMEZONE, SEND_FROM_HOUR, SEND_UNTIL_HOUR, person_zone
from connectors.twilio.reminders import (
    REMINDER_LOCAL_FIELDS,
    Step,
    as_utc_time,
    plan_reminder,
    rendered,
    send_at_text,
    spoken_twiml,
)
from connectors.twilio.settings import CREDENTIALS, TwilioSettings
from ennu.models import SyncStatus
from ennu.settings import Settings

VENDOR_BASE_URL = "https://api.twilio.com"
API_VERSION = "2010-04-01"
SANDBOX_ACCOUNT_SID = "AC00000000000000000000000000000000"
SANDBOX_AUTH_TOKEN = "sandbox-twilio-token"  # noqa: S105 - the sandbox's published dummy token
SANDBOX_FROM_NUMBER = "+15005550006"  # Twilio's magic "valid sender" number of test credentials
RESOURCES = {"messages": "Messages.json", "calls": "Calls.json"}
# Fields the mapping gives the connector for its own use; they never leave the system.
LOCAL_FIELDS = frozenset({"timezone"})
SPOKEN_FIELD = "Say"  # calls: the text of the reminder, sent as TwiML
# The create parameters a mapping may give (Twilio's Message and Call resources), besides LOCAL_FIELDS.
MESSAGE_FIELDS = frozenset(
    {
        "To", "From", "MessagingServiceSid", "Body", "MediaUrl", "ContentSid", "ContentVariables",
        "StatusCallback", "ValidityPeriod", "ScheduleType", "SendAt", "ShortenUrls", "SendAsMms",
        "Attempt", "MaxPrice", "ProvideFeedback", "SmartEncoded", "PersistentAction", "RiskCheck",
    }
)  # fmt: skip
CALL_FIELDS = frozenset(
    {
        "To", "From", "Url", "Method", "Twiml", SPOKEN_FIELD, "ApplicationSid", "StatusCallback",
        "StatusCallbackEvent", "StatusCallbackMethod", "FallbackUrl", "FallbackMethod", "SendDigits",
        "Timeout", "Record", "MachineDetection", "TimeLimit", "CallerId",
    }
)  # fmt: skip
BATCH_SIZE = 20  # about 20 s of sending at a long code's one message a second
# Appointment reminders: what a mapping gives (the texts of both channels, the person's number) besides
# the local fields the connector decides with (connectors/twilio/reminders.py).
REMINDER_FIELDS = frozenset({"To", "Body", SPOKEN_FIELD})
SANDBOX_MESSAGING_SERVICE_SID = "MG00000000000000000000000000000000"
# Outcomes after which sending the whole batch again (the delivery engine's next offer) could send a
# message twice.
MAY_HAVE_SENT = frozenset({SyncStatus.CREATED, SyncStatus.UNKNOWN})
# The StatusCallback URL's own query: which delivery a status is about (caller ids may not replace them).
CALLBACK_IDS = ("event_id", "record_key")
# A reconciliation compares Twilio's date_created with our clock: allow for the two to differ.
CLOCK_SKEW = timedelta(minutes=2)
LIST_PAGE_SIZE = 100  # Twilio's default is 50, its maximum 1000
# Erasure: a scheduled message and a queued or ringing call are canceled, then deleted; a record still on
# its way cannot be deleted yet (20009) and is left for the erasure's next attempt.
CANCEL_FIRST = {"messages": frozenset({"scheduled"}), "calls": frozenset({"queued", "ringing"})}
STILL_ON_ITS_WAY = frozenset({"accepted", "queued", "sending", "in-progress"})


def e164_number(phone: str | None) -> str | None:
    """The host's phone as Twilio stores it (E.164, the mappings' default country), None when unusable."""
    from mappings.transforms import E164Params, e164_1

    value = e164_1(phone, E164Params()) if phone else None
    return str(value) if value else None


def within_sending_hours(
    now: datetime, timezone: str | None, default_timezone: str = DEFAULT_TIMEZONE
) -> bool:
    """True between 08:00 and 21:00 in the person's IANA time zone (the default one when unknown)."""
    return SEND_FROM_HOUR <= now.astimezone(person_zone(timezone, default_timezone)).hour < SEND_UNTIL_HOUR


def next_sending_start(
    now: datetime, timezone: str | None, default_timezone: str = DEFAULT_TIMEZONE
) -> datetime:
    """The next 08:00 after `now` in the person's zone, in UTC (the wall clock's, across DST changes)."""
    zone = person_zone(timezone, default_timezone)
    local = now.astimezone(zone)
    day = local.date() if local.hour < SEND_FROM_HOUR else local.date() + timedelta(days=1)
    return datetime.combine(day, clock_time(SEND_FROM_HOUR), tzinfo=zone).astimezone(UTC)


def twilio_time(value: Any) -> datetime | None:
    """Twilio's RFC 2822 timestamps ("Fri, 24 May 2019 17:44:46 +0000") as aware datetimes (GMT if unsaid)."""
    try:
        moment = email.utils.parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError):
        return None
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def with_query(url: str, extra: dict[str, str]) -> str:
    """The URL with `extra` added to its query string."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(extra.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class TwilioConnector(HttpConnector):
    """Messages and calls; Twilio keeps no idempotency key, so the returned SID is kept as the remote id."""

    name: ClassVar[str] = "twilio"
    # Outcomes are per record and `send` never raises once a message may have gone, so the batch offered
    # again cannot send one twice. The recipient's number is the key (the mappings' `To`).
    objects: ClassVar[tuple[ObjectSpec, ...]] = (
        ObjectSpec("messages", BATCH_SIZE, upsert_keys=("To",), fields=MESSAGE_FIELDS | LOCAL_FIELDS),
        ObjectSpec("calls", BATCH_SIZE, upsert_keys=("To",), fields=CALL_FIELDS | LOCAL_FIELDS),
        # One appointment's reminder, as the host holds the appointment now: scheduled, moved (the old one
        # canceled, a new one scheduled) or withdrawn. Keyed by the appointment: one person may have several.
        ObjectSpec(
            "reminders",
            BATCH_SIZE,
            upsert_keys=("appointment",),
            fields=REMINDER_FIELDS | REMINDER_LOCAL_FIELDS,
        ),
    )
    settings_class = TwilioSettings
    table = TABLE
    requests_per_record: ClassVar[int] = 1
    ambiguous_sends: ClassVar[AmbiguousSends] = "reconcile"

    def __init__(
        self,
        http: VendorHttp,
        account_sid: str,
        *,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        status_callback_url: str | None = None,
        default_timezone: str = DEFAULT_TIMEZONE,
        reminder_lead: timedelta = timedelta(hours=24),
        reminder_service_sid: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(http)
        self.account_sid = account_sid
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.status_callback_url = status_callback_url
        self.default_timezone = default_timezone
        self.reminder_lead = reminder_lead
        # Scheduling needs a Messaging Service even where other messages come from a number.
        self.reminder_service_sid = reminder_service_sid or messaging_service_sid
        self.clock = clock
        # record key -> the SID of the reminder message Twilio holds for it (the sync log's), given by the
        # pipeline (tasks/host_biomarkers.provide_host_data); unset: no earlier reminder is known.
        self.scheduled_reminders: Callable[[Sequence[str]], dict[str, str]] | None = None

    @classmethod
    def has_credentials(cls) -> bool:
        """An auth token or an API key secret: the SIDs alone (also `secrets`) authenticate nothing."""
        return any(TwilioSettings.secret(name) for name in CREDENTIALS)

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        own = TwilioSettings.load()
        # An API key (SK...:secret) is preferred to the account's auth token when both are configured.
        api_key_sid = TwilioSettings.secret("TWILIO_API_KEY_SID")
        use_api_key = api_key_sid is not None and TwilioSettings.secret("TWILIO_API_KEY_SECRET") is not None
        endpoint = resolve_endpoint(
            cls.name,
            credential_env="TWILIO_API_KEY_SECRET" if use_api_key else "TWILIO_AUTH_TOKEN",
            vendor_base_url=VENDOR_BASE_URL,
            configured_base_url=own.base_url,
            sandbox_path="twilio",
            sandbox_secret=SANDBOX_AUTH_TOKEN,
        )
        configured_sid = TwilioSettings.secret("TWILIO_ACCOUNT_SID")
        if endpoint.sandbox:
            account_sid = SANDBOX_ACCOUNT_SID
            username = SANDBOX_ACCOUNT_SID
        else:
            if configured_sid is None:
                raise NotConfigured("twilio: credentials configured without TWILIO_ACCOUNT_SID")
            account_sid = configured_sid.get_secret_value()
            username = api_key_sid.get_secret_value() if use_api_key and api_key_sid else account_sid
        http = cls.client(
            endpoint.base_url,
            auth=(username, endpoint.secret.get_secret_value()),
            rate=own.rate_limit,
            rate_limited=rate_limited,
        )
        return cls(
            http,
            account_sid,
            from_number=own.from_number or (SANDBOX_FROM_NUMBER if endpoint.sandbox else None),
            messaging_service_sid=own.messaging_service_sid,
            status_callback_url=own.status_callback_url,
            default_timezone=own.default_timezone,
            reminder_lead=timedelta(hours=own.reminder_lead_hours),
            reminder_service_sid=own.messaging_service_sid
            or (SANDBOX_MESSAGING_SERVICE_SID if endpoint.sandbox else None),
        )

    @property
    def account_path(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}"

    def send(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """One request per record; once a message may have gone, trouble becomes outcomes, never a raise.

        The shared client sends a request again where that is safe (429 / 20429, 5xx: nothing was sent).
        A lost answer (AmbiguousError) makes that record UNKNOWN: `reconcile` it before sending again.
        Other trouble (RetryableError outlasting those retries, a refusal of the whole request) defers
        that record and leaves the rest unsent, DEFERRED; before anything may have gone it raises, and
        the delivery engine offers the whole batch again later.
        Quiet hours defer a record to 08:00 in the person's zone (`not_before`: no attempt spent).
        """
        if object_name == "reminders":
            return self.send_reminders(records)
        now = self.clock()
        outcomes: list[Outcome] = []
        trouble: str | None = None
        for record in records:
            timezone = record.fields.get("timezone")
            if not within_sending_hours(now, timezone, self.default_timezone):
                wait = next_sending_start(now, timezone, self.default_timezone)
                outcomes.append(
                    Outcome(record.record_key, SyncStatus.DEFERRED, error="quiet hours", not_before=wait)
                )
                continue
            if trouble is not None:
                outcomes.append(Outcome(record.record_key, SyncStatus.DEFERRED, error=trouble))
                continue
            form = self.form(object_name, record)
            if form is None:
                outcomes.append(
                    Outcome(record.record_key, SyncStatus.FAILED, error="no caller number configured")
                )
                continue
            try:
                response = self.http.request(
                    "POST",
                    f"{self.account_path}/{RESOURCES[object_name]}",
                    data=form,
                    allow_statuses=TABLE.expect("send"),
                )
            except AmbiguousError as lost:
                outcomes.append(Outcome(record.record_key, SyncStatus.UNKNOWN, error=lost.reason))
                continue
            except ConnectorError as failure:
                if not any(o.status in MAY_HAVE_SENT for o in outcomes):
                    raise
                trouble = failure.reason
                outcomes.append(Outcome(record.record_key, SyncStatus.DEFERRED, error=trouble))
                continue
            outcomes.append(self.outcome(record, response))
        return outcomes

    def reconcile(self, object_name: str, records: Sequence[Record], since: datetime) -> dict[str, Outcome]:
        """The messages of `records` Twilio already has: record key -> CREATED with the message's SID.

        A message matches a record when it went to the record's `To` with the record's `Body` and was
        created at or after `since` less `CLOCK_SKEW`; each message matches one record at most, oldest
        first. A record not found has no entry (the caller sends it). Messages only: a call's TwiML is
        not listed back, so calls are not reconciled here.
        """
        cutoff = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC) - CLOCK_SKEW
        if object_name == "reminders":
            return self.reconcile_reminders(records, cutoff)
        if object_name != "messages":
            raise NotImplementedError(f"twilio: {object_name} cannot be reconciled")
        wanted: dict[str, list[Record]] = {}
        for record in records:
            if record.fields.get("To") and record.fields.get("Body") is not None:
                wanted.setdefault(str(record.fields["To"]), []).append(record)
        found: dict[str, Outcome] = {}
        for to, theirs in wanted.items():
            candidates = self.messages_to(to, cutoff)
            for record in theirs:
                match = next((m for m in candidates if m.get("body") == str(record.fields["Body"])), None)
                if match is not None:
                    candidates.remove(match)
                    found[record.record_key] = Outcome(
                        record.record_key, SyncStatus.CREATED, remote_id=str(match["sid"])
                    )
        return found

    def messages_to(self, to: str, cutoff: datetime) -> list[dict[str, Any]]:
        """Outbound messages to `to` created at or after `cutoff`, oldest first, through every page needed.

        Twilio filters by the day a message was sent (`DateSent>`: on or after that day, GMT) and lists
        the most recently sent first, so paging stops at a page that reaches back before the cutoff.
        """
        path: str | None = f"{self.account_path}/Messages.json"
        params: dict[str, Any] | None = {
            "To": to,
            "DateSent>": cutoff.strftime("%Y-%m-%dT00:00:00Z"),
            "PageSize": LIST_PAGE_SIZE,
        }
        found: list[dict[str, Any]] = []
        while path:
            page: dict[str, Any] = self.http.request("GET", path, params=params).json()
            listed: list[dict[str, Any]] = page.get("messages") or []
            for message in listed:
                created = twilio_time(message.get("date_created"))
                outbound = str(message.get("direction", "")).startswith("outbound")
                if outbound and created is not None and created >= cutoff:
                    found.append(message)
            oldest_sent = twilio_time(listed[-1].get("date_sent")) if listed else None
            if oldest_sent is not None and oldest_sent < cutoff:
                break
            path, params = page.get("next_page_uri"), None  # the next page's URI carries the query
        return found[::-1]

    def send_reminders(self, records: Sequence[Record]) -> list[Outcome]:
        """Each appointment's reminder brought in line with the appointment (connectors/twilio/reminders.py).

        A reminder Twilio holds for the record (its SID from `scheduled_reminders`) is canceled first when the
        appointment was cancelled or changed (the pipeline sends a record only when its fields changed).
        Trouble is handled as in `send`: a lost answer is UNKNOWN (reconciled), later trouble defers the rest.
        """
        now = self.clock()
        keys = [r.record_key for r in records]
        earlier = self.scheduled_reminders(keys) if self.scheduled_reminders is not None else {}
        outcomes: list[Outcome] = []
        trouble: str | None = None
        for record in records:
            if trouble is not None:
                outcomes.append(Outcome(record.record_key, SyncStatus.DEFERRED, error=trouble))
                continue
            step = plan_reminder(record.fields, now, self.reminder_lead, self.default_timezone)
            try:
                outcomes.append(self.carry_out(record, step, earlier.get(record.record_key)))
            except AmbiguousError as lost:
                outcomes.append(Outcome(record.record_key, SyncStatus.UNKNOWN, error=lost.reason))
            except ConnectorError as failure:
                if not any(o.status in MAY_HAVE_SENT for o in outcomes):
                    raise
                trouble = failure.reason
                outcomes.append(Outcome(record.record_key, SyncStatus.DEFERRED, error=trouble))
        return outcomes

    def carry_out(self, record: Record, step: Step, earlier_sid: str | None) -> Outcome:
        """One reminder's step: cancel what Twilio holds of an earlier one, then schedule, send or call."""
        key = record.record_key
        canceled = (
            earlier_sid is not None and earlier_sid.startswith("SM") and self.cancel_message(earlier_sid)
        )
        if step.action == "withdraw":
            if canceled:
                return Outcome(key, SyncStatus.UPDATED)
            return Outcome(key, SyncStatus.UNCHANGED, error="no reminder held at Twilio")
        if step.action == "skip":
            return Outcome(key, SyncStatus.SKIPPED, error=step.reason)
        if step.action == "wait":
            return Outcome(key, SyncStatus.DEFERRED, error=step.reason, not_before=step.not_before)
        fields = record.fields
        starts_at = as_utc_time(fields.get("starts_at"))
        zone = fields.get("timezone")
        form: dict[str, str] = {"To": str(fields.get("To") or "")}
        if step.action == "call":
            if not self.from_number:
                return Outcome(key, SyncStatus.FAILED, error="no caller number configured")
            spoken = rendered(str(fields.get(SPOKEN_FIELD) or ""), starts_at, zone, self.default_timezone)
            form.update(From=self.from_number, Twiml=spoken_twiml(spoken))
            resource = RESOURCES["calls"]
        else:
            form["Body"] = rendered(str(fields.get("Body") or ""), starts_at, zone, self.default_timezone)
            if step.action == "schedule":
                if not self.reminder_service_sid:
                    return Outcome(key, SyncStatus.FAILED, error="no messaging service to schedule with")
                assert step.send_at is not None
                form.update(
                    MessagingServiceSid=self.reminder_service_sid,
                    ScheduleType="fixed",
                    SendAt=send_at_text(step.send_at),
                )
            elif self.reminder_service_sid:
                form["MessagingServiceSid"] = self.reminder_service_sid
            elif self.from_number:
                form["From"] = self.from_number
            resource = RESOURCES["messages"]
        form.update(self.callback(record))
        response = self.http.request(
            "POST", f"{self.account_path}/{resource}", data=form, allow_statuses=TABLE.expect("send")
        )
        return self.outcome(record, response)

    def cancel_message(self, sid: str) -> bool:
        """`Status=canceled` on a scheduled message: True when Twilio canceled it, False when it was past
        canceling (30409: sent or canceled already) or gone (404)."""
        response = self.http.request(
            "POST",
            f"{self.account_path}/Messages/{sid}.json",
            data={"Status": "canceled"},
            allow_statuses=TABLE.expect("cancel"),
        )
        return response.status_code < 400

    def reconcile_reminders(self, records: Sequence[Record], cutoff: datetime) -> dict[str, Outcome]:
        """The reminders Twilio already has since `cutoff`: a message to the record's `To` with its text
        (scheduled or sent, not canceled), or for a voice reminder any outbound call to that number (TwiML
        is not listed back; no other route calls). Cancellations have no entry: canceling again is harmless.
        """
        found: dict[str, Outcome] = {}
        taken: set[str] = set()
        for record in records:
            fields = record.fields
            to = str(fields.get("To") or "")
            if not to or str(fields.get("status") or "") == "cancelled":
                continue
            if str(fields.get("channel") or "sms") == "voice":
                candidates = [c for c in self.records_to("calls", to) if self.outbound_since(c, cutoff)]
            else:
                starts_at = as_utc_time(fields.get("starts_at"))
                text = rendered(
                    str(fields.get("Body") or ""), starts_at, fields.get("timezone"), self.default_timezone
                )
                candidates = [
                    m
                    for m in self.records_to("messages", to)
                    if self.outbound_since(m, cutoff)
                    and m.get("body") == text
                    and m.get("status") != "canceled"
                ]
            match = next((c for c in candidates if str(c["sid"]) not in taken), None)
            if match is not None:
                taken.add(str(match["sid"]))
                found[record.record_key] = Outcome(
                    record.record_key, SyncStatus.CREATED, remote_id=str(match["sid"])
                )
        return found

    @staticmethod
    def outbound_since(listed: dict[str, Any], cutoff: datetime) -> bool:
        created = twilio_time(listed.get("date_created"))
        outbound = str(listed.get("direction", "")).startswith("outbound")
        return outbound and created is not None and created >= cutoff

    def callback(self, record: Record) -> dict[str, str]:
        """`StatusCallback` with the delivery's ids in its query, when a callback URL is configured.

        Twilio signs the full callback URL, query included: the delivery's ids come back with every status,
        even for a send whose answer (and SID) was lost.
        """
        if not self.status_callback_url:
            return {}
        ids = {"event_id": record.event_id or "", "record_key": record.record_key}
        extra = {k: v for k, v in record.delivery_ids.items() if k not in CALLBACK_IDS}
        return {"StatusCallback": with_query(self.status_callback_url, {**ids, **extra})}

    def form(self, object_name: str, record: Record) -> dict[str, str] | None:
        """The request's form fields; None when a call has no caller number to come from."""
        form = {
            name: str(value)
            for name, value in record.fields.items()
            if value is not None and name not in LOCAL_FIELDS
        }
        if object_name == "calls":
            if not self.from_number:
                return None
            spoken = form.pop(SPOKEN_FIELD, None)
            if spoken is not None:
                form["Twiml"] = spoken_twiml(spoken)
            form.setdefault("From", self.from_number)
        elif self.messaging_service_sid:
            form.setdefault("MessagingServiceSid", self.messaging_service_sid)
        elif self.from_number:
            form.setdefault("From", self.from_number)
        form.update(self.callback(record))
        return form

    @staticmethod
    def outcome(record: Record, response: requests.Response) -> Outcome:
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            return Outcome(
                record.record_key, SyncStatus.FAILED, error=str(body.get("code") or response.status_code)
            )
        return Outcome(record.record_key, SyncStatus.CREATED, remote_id=str(body.get("sid")))

    def check_connection(self) -> str:
        self.http.request("GET", f"{self.account_path}.json")
        return "account read"

    def erase(self, person: Person) -> Outcome:
        """Delete every message and call record to the person's number (canceling scheduled/queued first).

        ERASED with a count as the reference; DEFERRED while some record is still on its way (an attempt of
        the erasure's delivery is spent and it is tried again).
        """
        key = f"user:{person.user_id}"
        to = e164_number(person.phone)
        if to is None:
            return Outcome(key, SyncStatus.UNCHANGED, error="no phone number to look up")
        deleted = {"messages": 0, "calls": 0}
        pending = 0
        for resource in deleted:
            for record in self.records_to(resource, to):
                sid, status = str(record["sid"]), str(record.get("status") or "")
                path = f"{self.account_path}/{RESOURCES[resource].removesuffix('.json')}/{sid}.json"
                if status in CANCEL_FIRST[resource]:
                    self.http.request("POST", path, data={"Status": "canceled"})
                elif status in STILL_ON_ITS_WAY:
                    pending += 1
                    continue
                response = self.http.request("DELETE", path, allow_statuses=TABLE.expect("delete"))
                if response.status_code == 409:  # 20009: on its way after all (it was listed before)
                    pending += 1
                else:
                    deleted[resource] += 1
        reference = f"{deleted['messages']} messages, {deleted['calls']} calls deleted"
        if pending:
            waiting = f"{pending} records still on their way; {reference}"
            return Outcome(key, SyncStatus.DEFERRED, error=waiting)
        return Outcome(key, SyncStatus.ERASED, remote_id=reference)

    def records_to(self, resource: str, to: str) -> list[dict[str, Any]]:
        """Every message or call record to `to`, through every page."""
        path: str | None = f"{self.account_path}/{RESOURCES[resource]}"
        params: dict[str, Any] | None = {"To": to, "PageSize": LIST_PAGE_SIZE}
        found: list[dict[str, Any]] = []
        while path:
            page: dict[str, Any] = self.http.request("GET", path, params=params).json()
            found += page.get(resource) or []
            path, params = page.get("next_page_uri"), None
        return found
