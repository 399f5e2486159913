"""Twilio stand-in: Messages and Calls (create, list, read, cancel, delete), the account; auth, errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.etree import ElementTree

import requests
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from sandbox.config import SandboxConfig
from sandbox.state import SandboxState, VendorState

# Where the stand-in is mounted: the vendor's real paths follow (sandbox.app discovers it by this).
MOUNT = "/twilio"

API_VERSION = "2010-04-01"
SANDBOX_ACCOUNT_SID = "AC00000000000000000000000000000000"
SANDBOX_AUTH_TOKEN = "sandbox-twilio-token"  # noqa: S105 - a published dummy
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
FORM = "application/x-www-form-urlencoded"
# Twilio's magic recipient numbers for test credentials, each answered with its documented error.
MAGIC_INVALID = "+15005550001"  # 21211
MAGIC_UNSUBSCRIBED = "+15005550004"  # 21610
MAGIC_NOT_MOBILE = "+15005550009"  # 21614
UNSUBSCRIBED_ENV = "ENNU_SANDBOX_TWILIO_UNSUBSCRIBED"
MAX_BODY = 1600
GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Messages list: Twilio's page size limits; its date filters, each on the GMT day a message was sent.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DATE_FILTERS = ("DateSent", "DateSent<", "DateSent>")  # that day; on or before it; on or after it
PAGING = ("PageSize", "Page", "PageToken")
# A record still on its way cannot be deleted (20009); a scheduled message or a queued call can be canceled.
MESSAGE_IN_PROGRESS = frozenset({"accepted", "scheduled", "queued", "sending"})
CALL_IN_PROGRESS = frozenset({"queued", "ringing", "in-progress"})
CANCELABLE_CALLS = frozenset({"queued", "ringing"})
# Message Scheduling: SendAt 900 s to 35 days ahead, `YYYY-MM-DDTHH:MM:SSZ` (Twilio's 35114; some newer pages
# say 300 s), through a Messaging Service only (35118); SendAt missing with ScheduleType=fixed is 35111.
SCHEDULE_AT_LEAST = timedelta(seconds=900)
SCHEDULE_AT_MOST = timedelta(seconds=3_024_000)
SEND_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
# The statuses a test may have the stand-in report through a message's or call's StatusCallback.
MESSAGE_STATUSES = frozenset(
    {"queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "canceled"}
)
CALL_STATUSES = frozenset(
    {"initiated", "ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled"}
)
GENERIC_MESSAGES = {
    400: "Bad request",
    403: "Forbidden",
    404: "The requested resource was not found",
    429: "Too Many Requests",
    500: "An internal server error has occurred",
    503: "Service unavailable",
}


def twilio_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content=_error_content(status, code, message))


def _error_content(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def error_body(status: int, retry_after: int | None) -> tuple[dict[str, Any], str, dict[str, str]]:
    """Twilio's `{code, message, more_info, status}` for injected failures and rate limiting (20429 etc.)."""
    code = 20000 + status
    return _error_content(status, code, GENERIC_MESSAGES.get(status, "Error")), "application/json", {}


class Unauthorised(Exception):
    """Raised by the auth dependency; the app turns it into Twilio's 20003."""


def unauthorised_response() -> JSONResponse:
    response = twilio_error(401, 20003, "Authenticate")
    response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    return response


def unsubscribed_numbers(config: SandboxConfig) -> frozenset[str]:
    """Recipients who replied STOP: Twilio's magic number, the config's list and the environment's."""
    configured = getattr(config, "twilio_unsubscribed_numbers", None) or ()
    from_env = [n.strip() for n in os.environ.get(UNSUBSCRIBED_ENV, "").split(",") if n.strip()]
    return frozenset({MAGIC_UNSUBSCRIBED, *configured, *from_env})


def _now() -> str:
    return format_datetime(datetime.now(UTC))


def _segments(body: str) -> int:
    single, part = (160, 153) if set(body) <= GSM7 else (70, 67)
    return 1 if len(body) <= single else math.ceil(len(body) / part)


def _valid_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _public(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "received_form"}


def filter_day(value: str | None) -> date | None:
    """A DateSent filter's GMT day: `YYYY-MM-DD`, or an ISO 8601 date-time (its day; see below).

    Twilio documents `YYYY-MM-DD`; its helper libraries send a datetime as `2026-07-01T00:00:00Z`.
    Whether Twilio also honours the time of day is not documented, so the stand-in keeps only the day.
    ValueError for anything else.
    """
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def sent_at(message: dict[str, Any]) -> datetime | None:
    return parsedate_to_datetime(message["date_sent"]) if message.get("date_sent") else None


def passes_filters(message: dict[str, Any], query: dict[str, str], days: dict[str, date | None]) -> bool:
    """Whether a message passes the list's To, From and DateSent filters (unsent ones pass no date filter)."""
    if "To" in query and message["to"] != query["To"]:
        return False
    if "From" in query and message["from"] != query["From"]:
        return False
    sent = sent_at(message)
    day = sent.astimezone(UTC).date() if sent is not None else None
    if day is None:
        return not any(days.values())
    on, until, since = (days[name] for name in DATE_FILTERS)
    return (on is None or day == on) and (until is None or day <= until) and (since is None or day >= since)


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(token, URL + each parameter's name and value, sorted by name))."""
    text = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), text.encode(), hashlib.sha1).digest()).decode()


def schedule_problem(form: dict[str, str], service: str | None, now: datetime) -> JSONResponse | None:
    """Twilio's refusals of a scheduled message (ScheduleType=fixed)."""
    send_at = form.get("SendAt")
    if not send_at:
        return twilio_error(400, 35111, "SendAt timestamp is missing")
    if not service:
        return twilio_error(400, 35118, "MessagingServiceSid is required to schedule a message")
    if not SEND_AT.match(send_at):
        return twilio_error(400, 35114, "Scheduling does not support this timestamp")
    ahead = datetime.fromisoformat(send_at.replace("Z", "+00:00")) - now
    if not SCHEDULE_AT_LEAST <= ahead <= SCHEDULE_AT_MOST:
        return twilio_error(400, 35114, "Scheduling does not support this timestamp")
    return None


class StatusReport(BaseModel):
    """`POST /twilio/_sandbox/status`: report a status of a message or call through its StatusCallback."""

    sid: str
    status: str
    error_code: str | None = None
    post: bool = True  # False: only build the signed callback and answer it (the test delivers it)


def build_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    account_sid = str(getattr(config, "twilio_account_sid", SANDBOX_ACCOUNT_SID))
    auth_token = str(getattr(config, "twilio_auth_token", SANDBOX_AUTH_TOKEN))
    unsubscribed = unsubscribed_numbers(config)

    def authorised(request: Request) -> None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, password = "", ""
        if scheme.lower() != "basic" or user != account_sid or password != auth_token:
            raise Unauthorised

    router = APIRouter(dependencies=[Depends(authorised)])

    def twilio() -> VendorState:
        return state.vendor("twilio")

    def not_found(path: str) -> JSONResponse:
        return twilio_error(404, 20404, f"The requested resource {path} was not found")

    async def form_of(request: Request) -> dict[str, str]:
        # Twilio reads form fields only; a JSON body reaches it as no parameters at all.
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
            return {}
        return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))

    def recipient_problem(to: str | None, *, sms: bool) -> JSONResponse | None:
        if not to:
            return twilio_error(400, 21604 if sms else 21201, "A 'To' phone number is required.")
        if not E164.match(to) or to == MAGIC_INVALID:
            return twilio_error(400, 21211, "Invalid 'To' Phone Number")
        if sms and to == MAGIC_NOT_MOBILE:
            return twilio_error(400, 21614, "'To' number is not a valid mobile number")
        return None

    def callback_problem(form: dict[str, str]) -> JSONResponse | None:
        callback = form.get("StatusCallback")
        if callback and not _valid_url(callback):
            return twilio_error(400, 21609, "Invalid StatusCallback")
        return None

    @router.get("/2010-04-01/Accounts/{sid}.json")
    async def account(sid: str, request: Request) -> Response:
        if sid != account_sid:
            return not_found(request.url.path)
        return JSONResponse(
            {
                "sid": account_sid,
                "friendly_name": "ENNU sandbox",
                "status": "active",
                "type": "Full",
                "owner_account_sid": account_sid,
                "date_created": _now(),
                "date_updated": _now(),
                "uri": f"/{API_VERSION}/Accounts/{account_sid}.json",
            }
        )

    @router.post("/2010-04-01/Accounts/{sid}/Messages.json")
    async def create_message(sid: str, request: Request) -> Response:
        if sid != account_sid:
            return not_found(request.url.path)
        form = await form_of(request)
        to, sender, service = form.get("To"), form.get("From"), form.get("MessagingServiceSid")
        body = form.get("Body", "")
        problem = recipient_problem(to, sms=True)
        if problem is not None:
            return problem
        if not sender and not service:
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if sender and not E164.match(sender):
            return twilio_error(400, 21212, "Invalid 'From' Phone Number")
        if not body and not form.get("MediaUrl"):
            return twilio_error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return twilio_error(
                400, 21617, f"The concatenated message body exceeds the {MAX_BODY} character limit."
            )
        if to in unsubscribed:
            return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        problem = callback_problem(form)
        if problem is not None:
            return problem
        scheduled = form.get("ScheduleType") == "fixed"
        if "ScheduleType" in form and not scheduled:
            return twilio_error(400, 20001, "Invalid parameter: ScheduleType")
        if scheduled:
            problem = schedule_problem(form, service, datetime.now(UTC))
            if problem is not None:
                return problem
        message_sid = "SM" + uuid.uuid4().hex
        now = _now()
        answer = {
            "sid": message_sid,
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(_segments(body)),
            "price": None,
            "price_unit": "USD",
            # With a messaging service Twilio first accepts the message, then picks a sender and queues it.
            "status": "scheduled" if scheduled else "queued" if sender else "accepted",
            "to": to,
            "send_at": form.get("SendAt") if scheduled else None,
            "uri": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{message_sid}.json",
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{message_sid}/Media.json"
            },
            "received_form": form,
        }
        # The answer is the message as accepted; the stand-in then hands it to the carrier at once.
        with state.lock:
            stored = answer if scheduled else {**answer, "status": "sent", "date_sent": now}
            twilio().kind("messages")[message_sid] = stored
        return JSONResponse(_public(answer), status_code=201)

    @router.get("/2010-04-01/Accounts/{sid}/Messages.json")
    async def list_messages(sid: str, request: Request) -> Response:
        """Most recently sent first, filtered by To, From and the DateSent day; paged (Page, PageToken)."""
        if sid != account_sid:
            return not_found(request.url.path)
        query = dict(request.query_params)
        try:
            days = {name: filter_day(query.get(name)) for name in DATE_FILTERS}
            page_size = int(query.get("PageSize", DEFAULT_PAGE_SIZE))
            page = int(query.get("Page", 0))
        except ValueError:
            return twilio_error(400, 20001, "Invalid parameter")
        if not 1 <= page_size <= MAX_PAGE_SIZE or page < 0:
            return twilio_error(400, 20001, "Invalid parameter")
        with state.lock:
            stored = [_public(m) for m in twilio().kind("messages").values()]
        matching = [
            m for m in reversed(stored) if passes_filters(m, query, days)
        ]  # newest first among equal times
        matching.sort(key=lambda m: sent_at(m) or parsedate_to_datetime(m["date_created"]), reverse=True)
        # A page token names the last message of the page before: pages stay put while messages arrive.
        token = query.get("PageToken", "")
        after = next((i + 1 for i, m in enumerate(matching) if "PA" + m["sid"] == token), None)
        start = after if after is not None else page * page_size
        shown = matching[start : start + page_size]
        filters = [(k, v) for k, v in query.items() if k not in PAGING]
        base = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json?"

        def page_uri(number: int, page_token: str | None = None) -> str:
            paging = [("PageSize", str(page_size)), ("Page", str(number))]
            return base + urlencode(filters + paging + ([("PageToken", page_token)] if page_token else []))

        more = start + page_size < len(matching)
        return JSONResponse(
            {
                "messages": shown,
                "page": page,
                "page_size": page_size,
                "start": start,
                "end": start + max(len(shown) - 1, 0),
                "uri": page_uri(page, token or None),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1, "PA" + shown[-1]["sid"]) if more and shown else None,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            }
        )

    @router.get("/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json")
    async def read_message(sid: str, message_sid: str, request: Request) -> Response:
        with state.lock:
            message = twilio().kind("messages").get(message_sid) if sid == account_sid else None
        if message is None:
            return not_found(request.url.path)
        return JSONResponse(_public(message))

    @router.post("/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json")
    async def update_message(sid: str, message_sid: str, request: Request) -> Response:
        """`Status=canceled` cancels a scheduled message (30409 once it is past `scheduled`)."""
        form = await form_of(request)
        with state.lock:
            message = twilio().kind("messages").get(message_sid) if sid == account_sid else None
            if message is None:
                return not_found(request.url.path)
            if form.get("Status") == "canceled":
                if message["status"] != "scheduled":
                    return twilio_error(400, 30409, "This message cannot be canceled")
                message.update(status="canceled", date_updated=_now())
            elif "Body" in form and form["Body"] == "":
                message.update(body="", date_updated=_now())  # redaction: an empty body
            else:
                return twilio_error(400, 20001, "Invalid parameter")
            return JSONResponse(_public(message))

    @router.delete("/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json")
    async def delete_message(sid: str, message_sid: str, request: Request) -> Response:
        """204; a message still on its way cannot be deleted yet (20009)."""
        with state.lock:
            messages = twilio().kind("messages")
            message = messages.get(message_sid) if sid == account_sid else None
            if message is None:
                return not_found(request.url.path)
            if message["status"] in MESSAGE_IN_PROGRESS:
                return twilio_error(409, 20009, "Cannot delete this resource before it is complete")
            del messages[message_sid]
        return Response(status_code=204)

    @router.get("/2010-04-01/Accounts/{sid}/Calls.json")
    async def list_calls(sid: str, request: Request) -> Response:
        """Calls filtered by To and From, newest first, one page (PageSize)."""
        if sid != account_sid:
            return not_found(request.url.path)
        query = dict(request.query_params)
        try:
            page_size = int(query.get("PageSize", DEFAULT_PAGE_SIZE))
        except ValueError:
            return twilio_error(400, 20001, "Invalid parameter")
        with state.lock:
            stored = [_public(c) for c in twilio().kind("calls").values()]
        matching = [
            c
            for c in reversed(stored)
            if ("To" not in query or c["to"] == query["To"])
            and ("From" not in query or c["from"] == query["From"])
        ]
        shown = matching[:page_size]
        base = f"/{API_VERSION}/Accounts/{account_sid}/Calls.json"
        return JSONResponse(
            {
                "calls": shown,
                "page": 0,
                "page_size": page_size,
                "uri": base,
                "first_page_uri": base,
                "next_page_uri": None,
                "previous_page_uri": None,
            }
        )

    @router.post("/2010-04-01/Accounts/{sid}/Calls/{call_sid}.json")
    async def update_call(sid: str, call_sid: str, request: Request) -> Response:
        """`Status=canceled` ends a queued or ringing call; `Status=completed` one in progress."""
        form = await form_of(request)
        with state.lock:
            call = twilio().kind("calls").get(call_sid) if sid == account_sid else None
            if call is None:
                return not_found(request.url.path)
            wanted = form.get("Status")
            if wanted == "canceled" and call["status"] in CANCELABLE_CALLS:
                call.update(status="canceled", date_updated=_now())
            elif wanted == "completed" and call["status"] == "in-progress":
                call.update(status="completed", date_updated=_now())
            elif wanted not in ("canceled", "completed"):
                return twilio_error(400, 20001, "Invalid parameter")
            return JSONResponse(_public(call))

    @router.delete("/2010-04-01/Accounts/{sid}/Calls/{call_sid}.json")
    async def delete_call(sid: str, call_sid: str, request: Request) -> Response:
        with state.lock:
            calls = twilio().kind("calls")
            call = calls.get(call_sid) if sid == account_sid else None
            if call is None:
                return not_found(request.url.path)
            if call["status"] in CALL_IN_PROGRESS:
                return twilio_error(409, 20009, "Cannot delete this resource before it is complete")
            del calls[call_sid]
        return Response(status_code=204)

    @router.post("/2010-04-01/Accounts/{sid}/Calls.json")
    async def create_call(sid: str, request: Request) -> Response:
        if sid != account_sid:
            return not_found(request.url.path)
        form = await form_of(request)
        to, sender = form.get("To"), form.get("From")
        problem = recipient_problem(to, sms=False)
        if problem is not None:
            return problem
        if not sender:
            return twilio_error(400, 21213, "No 'From' number is specified")
        if not E164.match(sender):
            return twilio_error(400, 21212, "Invalid 'From' Phone Number")
        twiml, url = form.get("Twiml"), form.get("Url")
        if not twiml and not url and not form.get("ApplicationSid"):
            return twilio_error(400, 21205, "Url parameter is required.")
        if twiml:
            try:
                root = ElementTree.fromstring(twiml)  # noqa: S314 - our own test traffic on loopback
            except ElementTree.ParseError:
                root = None
            if root is None or root.tag != "Response":
                return twilio_error(400, 12100, "Document parse failure")
        problem = callback_problem(form)
        if problem is not None:
            return problem
        call_sid = "CA" + uuid.uuid4().hex
        now = _now()
        call = {
            "sid": call_sid,
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "from": sender,
            "to": to,
            "status": "queued",
            "start_time": None,
            "end_time": None,
            "duration": None,
            "price": None,
            "uri": f"/{API_VERSION}/Accounts/{account_sid}/Calls/{call_sid}.json",
            "received_form": form,
        }
        with state.lock:
            twilio().kind("calls")[call_sid] = call
        return JSONResponse(_public(call), status_code=201)

    @router.post("/_sandbox/status")
    async def report_status(report: StatusReport) -> Response:
        """Move a message or call to `status` and report it the way Twilio does: a form POST to its
        StatusCallback, signed with the account's auth token (answers the callback and the hub's answer)."""
        kind = "messages" if report.sid.startswith(("SM", "MM")) else "calls"
        known = MESSAGE_STATUSES if kind == "messages" else CALL_STATUSES
        if report.status not in known:
            return twilio_error(400, 20001, "Invalid parameter: status")
        with state.lock:
            resource = twilio().kind(kind).get(report.sid)
            if resource is None:
                return not_found(report.sid)
            resource.update(status=report.status, date_updated=_now())
            if report.error_code:
                resource["error_code"] = int(report.error_code)
            callback = resource["received_form"].get("StatusCallback")
            params = {
                "AccountSid": account_sid,
                "ApiVersion": API_VERSION,
                "From": str(resource.get("from") or ""),
                "To": str(resource["to"]),
            }
        if kind == "messages":
            params.update(MessageSid=report.sid, MessageStatus=report.status, SmsSid=report.sid)
            params["SmsStatus"] = report.status
        else:
            params.update(CallSid=report.sid, CallStatus=report.status, Direction="outbound-api")
        if report.error_code:
            params["ErrorCode"] = report.error_code
        if not callback:
            return JSONResponse({"callback": None, "params": params})
        signature = twilio_signature(auth_token, callback, params)
        answer: dict[str, Any] = {"callback": callback, "params": params, "signature": signature}
        if report.post:
            response = await run_in_threadpool(
                requests.post, callback, data=params, headers={"X-Twilio-Signature": signature}, timeout=10
            )
            answer["answered"] = response.status_code
        return JSONResponse(answer)

    return router


# The conformance suite's mixed batch (tests/test_conformance.py): Twilio's magic invalid number, refused
# with 21211 for that one message while the batch's others are sent.
CONFORMANCE_REFUSED = {"messages": {"To": MAGIC_INVALID}}
