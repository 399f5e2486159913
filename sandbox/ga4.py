"""GA4 Measurement Protocol stand-in: /mp/collect (204, keeps valid events), /debug/mp/collect (messages)."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.config import SandboxConfig
from sandbox.state import SandboxState

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
RESERVED_PREFIXES = ("google_", "ga_", "firebase_")
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


def _name_problems(path: str, name: Any, limit: int, what: str) -> list[dict[str, str]]:
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
    if name.startswith(RESERVED_PREFIXES):
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
        problems += _name_problems(where, key, MAX_NAME, "Parameter")
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
            problems += _name_problems(
                f"user_properties.{name}", name, MAX_USER_PROPERTY_NAME, "User property"
            )
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
            for event in body["events"]:
                events[str(uuid.uuid4())] = {
                    "measurement_id": params.get("measurement_id"),
                    "client_id": body["client_id"],
                    "user_id": body.get("user_id"),
                    "timestamp_micros": body.get("timestamp_micros"),
                    "name": event["name"],
                    "params": event.get("params", {}),
                }
        return Response(status_code=204)

    @router.post("/debug/mp/collect")
    async def debug_collect(request: Request) -> JSONResponse:
        """The validation server: 200 with validationMessages; it does not check the api_secret."""
        problems = request_problems(request.query_params.get("measurement_id"), await request.body())
        return JSONResponse({"validationMessages": problems})

    return router
