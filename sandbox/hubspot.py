"""HubSpot CRM stand-in: batch upsert (100 inputs), read, GDPR delete, account details; bearer auth."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from sandbox.config import SandboxConfig
from sandbox.emails import looks_like_email
from sandbox.state import SandboxState, VendorState
from sandbox.vendor import ErrorBody, VendorError, iso_now, json_body

BATCH_LIMIT = 100
# Properties HubSpot returns on a read that names none, and the ones it always adds.
DEFAULT_READ_PROPERTIES = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")
ALWAYS_READ_PROPERTIES = ("createdate", "hs_object_id", "lastmodifieddate")
CATEGORIES = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "VALIDATION_ERROR",
}
ACCOUNT = {
    "portalId": 62515,
    "accountType": "STANDARD",
    "timeZone": "US/Eastern",
    "companyCurrency": "USD",
    "additionalCurrencies": [],
    "utcOffset": "-05:00",
    "utcOffsetMilliseconds": -18000000,
    "uiDomain": "app.hubspot.com",
    "dataHostingLocation": "na1",
}


MESSAGES = {
    400: "Invalid input.",
    401: "Authentication credentials not found.",
    404: "resource not found",
    405: "Method not allowed.",
    413: "The request body is too large.",
}
RATE_LIMIT_HEADERS = {
    "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    "X-HubSpot-RateLimit-Max": "100",
    "X-HubSpot-RateLimit-Remaining": "0",
    "X-HubSpot-RateLimit-Secondly": "10",
    "X-HubSpot-RateLimit-Secondly-Remaining": "0",
}


def error_json(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """HubSpot's error body: status, message, correlationId, category."""
    category = CATEGORIES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    return {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
        **extra,
    }


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(error_json(status, message, **extra), status_code=status)


def error_body(status: int, retry_after: int | None) -> ErrorBody:
    """Injected failures, unknown paths and the secondly limit's 429 (with X-HubSpot-RateLimit-*)."""
    if status == 429:
        body = {
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": "SECONDLY",
        }
        return body, "application/json", dict(RATE_LIMIT_HEADERS)
    message = MESSAGES.get(
        status, "internal error" if status >= 500 else "The request could not be completed."
    )
    return error_json(status, message), "application/json", {}


def as_property_value(value: Any) -> str:
    """HubSpot keeps every property value as a string ("" clears one)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def input_error(message: str, key: str) -> dict[str, Any]:
    return {"status": "error", "category": "VALIDATION_ERROR", "message": message, "context": {"ids": [key]}}


def invalid_input(object_type: str, item: Any) -> dict[str, Any] | None:
    """The errors[] entry for one batch input HubSpot would refuse, or None when it is acceptable."""
    key = str(item.get("id", "")) if isinstance(item, dict) else ""
    if not isinstance(item, dict) or not key or not item.get("idProperty"):
        return input_error("Each input needs an id and an idProperty.", key)
    if not isinstance(item.get("properties", {}), dict):
        return input_error("properties must be an object of property names to values.", key)
    if object_type != "contacts":
        return None
    if item["idProperty"] != "email":
        return input_error("idProperty must be a unique-value property of contacts (email).", key)
    email = (item.get("properties") or {}).get("email", key)
    if not looks_like_email(key) or not looks_like_email(email):
        return input_error("Property values were not valid: email (INVALID_EMAIL).", key)
    if str(email).lower() != key.lower():
        return input_error("The email property does not match the id of the input.", key)
    return None


def upsert_one(store: VendorState, object_type: str, item: dict[str, Any]) -> dict[str, Any]:
    """Create or update the object keyed by the input's id value; its batch result."""
    key = str(item["id"]).lower() if object_type == "contacts" else str(item["id"])
    properties = {k: as_property_value(v) for k, v in (item.get("properties") or {}).items()}
    if object_type == "contacts":
        properties["email"] = key
    now = iso_now()
    objects = store.kind(object_type)
    existing = objects.get(key)
    new = existing is None
    if existing is None:
        object_id = store.new_id()
        existing = {
            "id": object_id,
            "properties": {"hs_object_id": object_id, "createdate": now},
            "createdAt": now,
            "archived": False,
        }
        objects[key] = existing
    existing["properties"].update(properties, lastmodifieddate=now)
    existing["updatedAt"] = now
    return {**existing, "properties": dict(existing["properties"]), "new": new}


def readable(found: dict[str, Any], wanted: str | None) -> dict[str, Any]:
    """The object as a read returns it: the named properties (or the defaults) only."""
    names = [p for p in wanted.split(",") if p] if wanted else list(DEFAULT_READ_PROPERTIES)
    names += [p for p in ALWAYS_READ_PROPERTIES if p not in names]
    properties = {name: found["properties"].get(name) for name in names}
    return {**found, "properties": properties}


def build_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    def authorised(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if not token:
            raise VendorError(
                error(
                    401,
                    "Authentication credentials not found. This API supports OAuth 2.0 authentication and "
                    "you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                )
            )
        if scheme.lower() != "bearer" or token.strip() != config.hubspot_token:
            raise VendorError(error(401, "The access token provided is invalid or has been revoked."))

    def bad_json() -> JSONResponse:
        return error(400, "Invalid input JSON: the request body is not valid JSON.")

    router = APIRouter(dependencies=[Depends(authorised)])

    @router.post("/crm/v3/objects/{object_type}/batch/upsert")
    async def batch_upsert(object_type: str, request: Request) -> Response:
        body = await json_body(request, bad_json)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not inputs:
            return error(400, "Invalid input: inputs must be a non-empty list.")
        if len(inputs) > BATCH_LIMIT:
            return error(400, f"Batch input must contain at most {BATCH_LIMIT} inputs.")
        keys = [str(i.get("id", "")).lower() for i in inputs if isinstance(i, dict)]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            return error(
                400, "Duplicate IDs found in batch input. IDs must be unique.", context={"ids": duplicates}
            )
        started = iso_now()
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        with state.lock:
            store = state.vendor("hubspot")
            for item in inputs:
                problem = invalid_input(object_type, item)
                if problem is not None:
                    errors.append(problem)
                else:
                    results.append(upsert_one(store, object_type, item))
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started}
        if errors:
            answer.update(errors=errors, numErrors=len(errors))
        answer["completedAt"] = iso_now()
        return JSONResponse(answer, status_code=207 if errors else 200)

    @router.get("/crm/v3/objects/{object_type}/{object_id}")
    async def read(
        object_type: str, object_id: str, idProperty: str | None = None, properties: str | None = None
    ) -> Response:
        with state.lock:
            objects = state.vendor("hubspot").kind(object_type)
            if idProperty:
                found = objects.get(object_id.lower() if object_type == "contacts" else object_id)
            else:
                found = next((o for o in objects.values() if o["id"] == object_id), None)
            if found is None:
                return error(404, "resource not found")
            return JSONResponse(readable(found, properties))

    @router.post("/crm/v3/objects/contacts/gdpr-delete")
    async def gdpr_delete(request: Request) -> Response:
        body = await json_body(request, bad_json)
        if not isinstance(body, dict) or not body.get("objectId"):
            return error(400, "Invalid input: objectId is required.")
        object_id = str(body["objectId"])
        with state.lock:
            contacts = state.vendor("hubspot").kind("contacts")
            if body.get("idProperty") == "email":
                key: str | None = object_id.lower()
            else:
                key = next((k for k, o in contacts.items() if o["id"] == object_id), None)
            if key is None or contacts.pop(key, None) is None:
                return error(404, "resource not found")
        return Response(status_code=204)

    @router.get("/account-info/v3/details")
    async def account_details() -> dict[str, Any]:
        return ACCOUNT

    return router
