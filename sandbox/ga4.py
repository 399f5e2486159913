"""GA4 stand-in: /mp/collect (204, keeps valid events), /debug/mp/collect, Admin API user deletion and
key events."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ennu import local_mode
from sandbox.config import SandboxConfig
from sandbox.state import SandboxState

# Where the stand-in is mounted: the vendor's real paths follow (sandbox.app discovers it by this).
MOUNT = "/ga4"

VENDOR = "ga4"
API_SECRET = "sandbox-ga4-secret"  # noqa: S105 - a published dummy
MEASUREMENT_ID = re.compile(r"^G-[A-Z0-9]{4,16}$")
MAX_EVENTS = 25
MAX_PARAMS = 25
MAX_USER_PROPERTIES = 25
MAX_NAME = 40
MAX_USER_PROPERTY_NAME = 24
MAX_PARAM_VALUE = 100
MAX_USER_PROPERTY_VALUE = 36
MAX_USER_ID = 256
MAX_BODY_BYTES = 130 * 1000
MAX_BACKDATE_SECONDS = 72 * 3600
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Reserved prefixes, per kind of name (Google's GA4 event naming rules): parameters also may not begin with
# "_" or "gtag.", user properties not with "_". Those two never pass NAME anyway (a letter first, no dot),
# so the validation code for them is NAME_INVALID, as the connector predicts (tests/test_standin_facts.py).
RESERVED_PREFIXES = ("google_", "ga_", "firebase_")  # event names
RESERVED_PARAM_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
RESERVED_USER_PROPERTY_PREFIXES = ("_", "firebase_", "ga_", "google_")
RESERVED_USER_PROPERTY_NAMES = frozenset(
    {"first_open_after_install", "first_open_time", "first_visit_time", "last_deep_link_referrer", "user_id"}
)
RESERVED_EVENT_NAMES = frozenset(
    {
        "ad_activeview", "ad_click", "ad_exposure", "ad_query", "ad_reward", "adunit_exposure",
        "app_background", "app_clear_data", "app_exception", "app_install", "app_remove",
        "app_store_refund", "app_store_subscription_cancel", "app_store_subscription_convert",
        "app_store_subscription_renew", "app_update", "app_upgrade", "dynamic_link_app_open",
        "dynamic_link_app_update", "dynamic_link_first_open", "error", "first_open", "first_visit",
        "in_app_purchase", "notification_dismiss", "notification_foreground", "notification_open",
        "notification_receive", "notification_send", "os_update", "screen_view", "session_start",
        "user_engagement",
    }
)  # fmt: skip


def error_body(status: int, retry_after: int | None) -> tuple[dict[str, Any], str, dict[str, str]]:
    """Google's API error shape, for injected failures and limits (the real collect answers 2xx)."""
    statuses = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 404: "NOT_FOUND", 413: "INVALID_ARGUMENT"}
    body = {
        "error": {
            "code": status,
            "message": "The service is currently unavailable." if status >= 500 else "Request refused.",
            "status": statuses.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT"),
        }
    }
    return body, "application/json", {}


def message(field_path: str, description: str, code: str) -> dict[str, str]:
    return {"fieldPath": field_path, "description": description, "validationCode": code}


def _name_problems(
    path: str, name: Any, limit: int, what: str, reserved: tuple[str, ...] = RESERVED_PREFIXES
) -> list[dict[str, str]]:
    if not isinstance(name, str) or not name:
        return [message(path, f"{what} name is required.", "VALUE_REQUIRED")]
    if len(name) > limit or not NAME.match(name):
        return [
            message(
                path,
                f"{what} name [{name}] is invalid: at most {limit} letters, digits and underscores, "
                "starting with a letter.",
                "NAME_INVALID",
            )
        ]
    if name.startswith(reserved):
        return [message(path, f"{what} name [{name}] uses a reserved prefix.", "NAME_RESERVED")]
    return []


def event_problems(index: int, event: Any) -> list[dict[str, str]]:
    """The validation messages for one event of a request."""
    path = f"events[{index}]"
    if not isinstance(event, dict):
        return [message(path, "An event is an object with a name and params.", "VALUE_INVALID")]
    problems = _name_problems(f"{path}.name", event.get("name"), MAX_NAME, "Event")
    if not problems and event["name"] in RESERVED_EVENT_NAMES:
        problems.append(
            message(f"{path}.name", f"Event name [{event['name']}] is reserved.", "NAME_RESERVED")
        )
    params = event.get("params", {})
    if not isinstance(params, dict):
        return [*problems, message(f"{path}.params", "params is an object.", "VALUE_INVALID")]
    if len(params) > MAX_PARAMS:
        problems.append(
            message(
                f"{path}.params", f"An event has at most {MAX_PARAMS} parameters.", "EXCEEDED_MAX_ENTITIES"
            )
        )
    for key, value in params.items():
        where = f"{path}.params.{key}"
        problems += _name_problems(where, key, MAX_NAME, "Parameter", RESERVED_PARAM_PREFIXES)
        if isinstance(value, str) and len(value) > MAX_PARAM_VALUE:
            problems.append(
                message(
                    where, f"Parameter value is longer than {MAX_PARAM_VALUE} characters.", "VALUE_INVALID"
                )
            )
        elif not isinstance(value, str | int | float | bool) and not (
            key == "items" and isinstance(value, list)
        ):
            problems.append(message(where, "Parameter value has an unsupported type.", "VALUE_INVALID"))
    return problems


def request_problems(measurement_id: str | None, raw: bytes) -> list[dict[str, str]]:
    """Every validation message for one request, as the validation server words them (codes exact)."""
    problems: list[dict[str, str]] = []
    if not measurement_id:
        problems.append(
            message(
                "measurement_id", "Unable to find non-empty parameter [measurement_id].", "VALUE_REQUIRED"
            )
        )
    elif not MEASUREMENT_ID.match(measurement_id):
        problems.append(message("measurement_id", "Measurement id is not valid.", "VALUE_INVALID"))
    if len(raw) >= MAX_BODY_BYTES:
        problems.append(message("", f"The body must be under {MAX_BODY_BYTES} bytes.", "VALUE_OUT_OF_BOUNDS"))
    try:
        body = json.loads(raw)
    except ValueError:
        return [*problems, message("", "The body is not valid JSON.", "VALUE_INVALID")]
    if not isinstance(body, dict):
        return [*problems, message("", "The body is a JSON object.", "VALUE_INVALID")]
    client_id = body.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        problems.append(message("client_id", "client_id is required (a string).", "VALUE_REQUIRED"))
    user_id = body.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or len(user_id) > MAX_USER_ID):
        problems.append(message("user_id", f"user_id is a string of at most {MAX_USER_ID}.", "VALUE_INVALID"))
    micros = body.get("timestamp_micros")
    if micros is not None:
        age = (
            time.time() - int(micros) / 1e6
            if isinstance(micros, int | str) and str(micros).isdigit()
            else None
        )
        if age is None or age > MAX_BACKDATE_SECONDS or age < -60:
            problems.append(
                message(
                    "timestamp_micros", "timestamp_micros is at most 72 hours ago.", "VALUE_OUT_OF_BOUNDS"
                )
            )
    events = body.get("events")
    if not isinstance(events, list) or not events:
        return [*problems, message("events", "At least one event is required.", "VALUE_REQUIRED")]
    if len(events) > MAX_EVENTS:
        problems.append(
            message("events", f"A request has at most {MAX_EVENTS} events.", "EXCEEDED_MAX_ENTITIES")
        )
    for index, event in enumerate(events):
        problems += event_problems(index, event)
    properties = body.get("user_properties") or {}
    if isinstance(properties, dict):
        if len(properties) > MAX_USER_PROPERTIES:
            problems.append(message("user_properties", "Too many user properties.", "EXCEEDED_MAX_ENTITIES"))
        for name, prop in properties.items():
            where = f"user_properties.{name}"
            named = _name_problems(
                where, name, MAX_USER_PROPERTY_NAME, "User property", RESERVED_USER_PROPERTY_PREFIXES
            )
            if not named and name in RESERVED_USER_PROPERTY_NAMES:
                named = [message(where, f"User property name [{name}] is reserved.", "NAME_RESERVED")]
            problems += named
            value = prop.get("value") if isinstance(prop, dict) else None
            if isinstance(value, str) and len(value) > MAX_USER_PROPERTY_VALUE:
                problems.append(
                    message(f"user_properties.{name}", "User property value is too long.", "VALUE_INVALID")
                )
    return problems


def build_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    router = APIRouter()

    @router.post("/mp/collect")
    async def collect(request: Request) -> Response:
        """Always 204, like the real endpoint; only valid requests with the right secret are kept."""
        raw = await request.body()
        params = request.query_params
        problems = request_problems(params.get("measurement_id"), raw)
        with state.lock:
            vendor = state.vendor(VENDOR)
            if problems or params.get("api_secret") != API_SECRET:
                dropped = vendor.kind("dropped")
                codes = sorted({p["validationCode"] for p in problems}) or ["API_SECRET_INVALID"]
                dropped[str(uuid.uuid4())] = {"codes": codes}
                return Response(status_code=204)
            body = json.loads(raw)
            events = vendor.kind("events")
            # GA4 counts an event as a key event when its name is one of the property's key events.
            key_names = {k["eventName"] for k in vendor.kind("key_events").values()}
            for event in body["events"]:
                events[str(uuid.uuid4())] = {
                    "measurement_id": params.get("measurement_id"),
                    "client_id": body["client_id"],
                    "user_id": body.get("user_id"),
                    "timestamp_micros": body.get("timestamp_micros"),
                    "name": event["name"],
                    "params": event.get("params", {}),
                    "key_event": event["name"] in key_names,
                }
        return Response(status_code=204)

    @router.post("/debug/mp/collect")
    async def debug_collect(request: Request) -> JSONResponse:
        """The validation server: 200 with validationMessages; it does not check the api_secret."""
        problems = request_problems(request.query_params.get("measurement_id"), await request.body())
        return JSONResponse({"validationMessages": problems})

    router.include_router(build_admin_router(state))
    return router


# --------------------------------------------------------------------------- the Admin API: user deletion

# The sandbox's published service account and property: the product's local mode (ennu/local_mode.py).
SANDBOX_SERVICE_ACCOUNT = local_mode.GA4_SERVICE_ACCOUNT
SANDBOX_KEY_ID = local_mode.GA4_KEY_ID
SANDBOX_PROPERTY_ID = local_mode.GA4_PROPERTY_ID
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
EDIT_SCOPE = "https://www.googleapis.com/auth/analytics.edit"
TOKEN_LIFETIME_SECONDS = 3600
MAX_ASSERTION_SECONDS = 3600  # Google refuses an assertion valid for more than an hour
USER_IDENTIFIERS = ("userId", "clientId", "appInstanceId", "userProvidedData")
COUNTING_METHODS = ("ONCE_PER_EVENT", "ONCE_PER_SESSION")
MAX_KEY_EVENTS_PAGE = 200
MAX_CUSTOM_KEY_EVENTS = 30  # a standard property's custom key events (check: 360 properties have more)


def google_error(status: int, message_text: str, reason: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"code": status, "message": message_text, "status": reason}}
    )


def oauth_error(error: str, description: str) -> JSONResponse:
    return JSONResponse(status_code=400, content={"error": error, "error_description": description})


def assertion_problem(assertion: str, token_url: str) -> str | None:
    """None for a good service-account assertion (RS256, iss, scope, aud = the token URI, ≤ 1 h)."""
    import jwt

    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(
            assertion,
            local_mode.local_public_key_pem(),
            algorithms=["RS256"],
            audience=token_url,
            options={"require": ["iss", "aud", "exp", "iat", "scope"]},
        )
    except jwt.ExpiredSignatureError:
        return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
    except jwt.InvalidAudienceError:
        return "Invalid JWT: aud must be the token URI."
    except jwt.PyJWTError:
        return "Invalid JWT Signature."
    if header.get("kid") != SANDBOX_KEY_ID or claims["iss"] != SANDBOX_SERVICE_ACCOUNT:
        return "Invalid JWT Signature."
    if int(claims["exp"]) - int(claims["iat"]) > MAX_ASSERTION_SECONDS:
        return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
    if EDIT_SCOPE not in str(claims["scope"]).split():
        return "Invalid scope: analytics.edit is needed for user deletion."
    return None


def build_admin_router(state: SandboxState) -> APIRouter:
    """Google's OAuth token endpoint for service accounts and `properties.submitUserDeletion`."""
    router = APIRouter()

    @router.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        if form.get("grant_type") != JWT_BEARER_GRANT or not form.get("assertion"):
            return oauth_error("unsupported_grant_type", "Invalid grant_type.")
        problem = assertion_problem(form["assertion"], str(request.url).split("?", 1)[0])
        if problem is not None:
            return oauth_error("invalid_grant", problem)
        access_token = "ya29." + uuid.uuid4().hex
        with state.lock:
            state.vendor(VENDOR).kind("tokens")[access_token] = {
                "expires_at": time.time() + TOKEN_LIFETIME_SECONDS,
                "scope": EDIT_SCOPE,
            }
        return JSONResponse(
            {"access_token": access_token, "expires_in": TOKEN_LIFETIME_SECONDS, "token_type": "Bearer"}
        )

    def refused(request: Request, property_id: str) -> JSONResponse | None:
        """Google's answer to a call without a live token (401) or on a property the account lacks (403)."""
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        with state.lock:
            grant = state.vendor(VENDOR).kind("tokens").get(bearer) if scheme.lower() == "bearer" else None
        if grant is None or grant["expires_at"] <= time.time():
            return google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        if property_id != SANDBOX_PROPERTY_ID:
            return google_error(403, "The caller does not have permission", "PERMISSION_DENIED")
        return None

    @router.get("/v1beta/properties/{property_id}/keyEvents")
    async def list_key_events(property_id: str, request: Request) -> JSONResponse:
        """The property's key events, a page at a time (pageSize ≤ 200, nextPageToken)."""
        problem = refused(request, property_id)
        if problem is not None:
            return problem
        try:
            size = min(int(request.query_params.get("pageSize") or 50), MAX_KEY_EVENTS_PAGE)
            start = int(request.query_params.get("pageToken") or 0)
        except ValueError:
            return google_error(400, "Invalid page size or token.", "INVALID_ARGUMENT")
        if size < 1 or start < 0:
            return google_error(400, "Invalid page size or token.", "INVALID_ARGUMENT")
        with state.lock:
            marked = [dict(k) for k in state.vendor(VENDOR).kind("key_events").values()]
        page: dict[str, Any] = {"keyEvents": marked[start : start + size]}
        if start + size < len(marked):
            page["nextPageToken"] = str(start + size)
        return JSONResponse(page)

    @router.post("/v1beta/properties/{property_id}/keyEvents")
    async def create_key_event(property_id: str, request: Request) -> JSONResponse:
        """Mark an event name a key event: eventName (an event name GA4 accepts) and countingMethod."""
        problem = refused(request, property_id)
        if problem is not None:
            return problem
        try:
            body = json.loads(await request.body())
        except ValueError:
            return google_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        name = body.get("eventName") if isinstance(body, dict) else None
        counting = body.get("countingMethod") if isinstance(body, dict) else None
        if not isinstance(name, str) or _name_problems("eventName", name, MAX_NAME, "Event"):
            return google_error(400, "eventName is not a valid event name.", "INVALID_ARGUMENT")
        if counting not in COUNTING_METHODS:
            return google_error(
                400, "countingMethod is ONCE_PER_EVENT or ONCE_PER_SESSION.", "INVALID_ARGUMENT"
            )
        with state.lock:
            marked = state.vendor(VENDOR).kind("key_events")
            if any(k["eventName"] == name for k in marked.values()):
                return google_error(409, "A key event with this event name already exists.", "ALREADY_EXISTS")
            if len(marked) >= MAX_CUSTOM_KEY_EVENTS:
                return google_error(400, "The property has its maximum of key events.", "FAILED_PRECONDITION")
            key = str(uuid.uuid4().int % 10**10)
            created = {
                "name": f"properties/{property_id}/keyEvents/{key}",
                "eventName": name,
                "createTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "deletable": True,
                "custom": True,
                "countingMethod": counting,
            }
            marked[key] = created
        return JSONResponse(created)

    @router.post("/v1alpha/properties/{property_id}:submitUserDeletion")
    async def submit_user_deletion(property_id: str, request: Request) -> JSONResponse:
        """Exactly one user identifier; the property's events of that user (or client) are deleted."""
        problem = refused(request, property_id)
        if problem is not None:
            return problem
        try:
            body = json.loads(await request.body())
        except ValueError:
            return google_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        given = [k for k in USER_IDENTIFIERS if isinstance(body, dict) and body.get(k)]
        extra = set(body) - {*USER_IDENTIFIERS, "name"} if isinstance(body, dict) else set()
        if len(given) != 1 or extra:
            return google_error(
                400, "Exactly one of userId, clientId, appInstanceId, userProvidedData.", "INVALID_ARGUMENT"
            )
        kind, value = given[0], body[given[0]]
        field = {"userId": "user_id", "clientId": "client_id"}.get(kind)
        requested = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        with state.lock:
            vendor = state.vendor(VENDOR)
            events = vendor.kind("events")
            if field is not None:
                for event_key in [k for k, e in events.items() if e.get(field) == value]:
                    del events[event_key]
            vendor.kind("user_deletions")[str(uuid.uuid4())] = {
                "property": property_id,
                "identifier": kind,
                "value": value,
                "deletionRequestTime": requested,
            }
        return JSONResponse({"deletionRequestTime": requested})

    return router
