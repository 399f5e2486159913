"""HubSpot CRM stand-in: contacts batch upsert (100), read, GDPR delete, account details; bearer auth."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from sandbox.config import SandboxConfig
from sandbox.state import SandboxState

BATCH_LIMIT = 100
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def error_body(status: int, retry_after: int | None) -> tuple[dict[str, Any], str, dict[str, str]]:
    """HubSpot's error shapes for injected failures and rate limiting."""
    correlation = str(uuid.uuid4())
    if status == 429:
        return (
            {
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": correlation,
                "policyName": "SECONDLY",
            },
            "application/json",
            {
                "X-HubSpot-RateLimit-Max": "100",
                "X-HubSpot-RateLimit-Remaining": "0",
                "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            },
        )
    return (
        {
            "status": "error",
            "message": "internal error" if status >= 500 else "request failed",
            "correlationId": correlation,
            "category": "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR",
        },
        "application/json",
        {},
    )


def _error(status: int, category: str, message: str) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
        },
    )


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def build_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    def authorised(request: Request) -> None:
        header = request.headers.get("authorization", "")
        if header != f"Bearer {config.hubspot_token}":
            raise Unauthorised

    router = APIRouter(dependencies=[Depends(authorised)])
    vendor = state.vendor

    @router.post("/crm/v3/objects/{object_type}/batch/upsert")
    async def batch_upsert(object_type: str, request: Request) -> Response:
        body = await request.json()
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not inputs:
            return _error(400, "VALIDATION_ERROR", "inputs is required")
        if len(inputs) > BATCH_LIMIT:
            return _error(400, "VALIDATION_ERROR", f"Batch input must not exceed {BATCH_LIMIT} inputs")
        ids = [str(i.get("id", "")).lower() for i in inputs if isinstance(i, dict)]
        if len(set(ids)) != len(ids):
            return _error(400, "VALIDATION_ERROR", "Duplicate IDs found in batch input")
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        with state.lock:
            store = vendor("hubspot").kind(object_type)
            for item in inputs:
                if not isinstance(item, dict):
                    return _error(400, "VALIDATION_ERROR", "each input is an object")
                id_property = item.get("idProperty")
                key = str(item.get("id", ""))
                properties = dict(item.get("properties") or {})
                if not id_property or not key:
                    errors.append(_input_error("id and idProperty are required", key))
                    continue
                if object_type == "contacts":
                    if id_property != "email":
                        errors.append(_input_error("idProperty must be a unique-value property", key))
                        continue
                    properties.setdefault("email", key)
                    if (
                        not EMAIL.match(str(properties["email"]))
                        or str(properties["email"]).lower() != key.lower()
                    ):
                        errors.append(_input_error("Property values were not valid: email", key))
                        continue
                    properties["email"] = str(properties["email"]).lower()
                existing = store.get(key.lower())
                now = _now()
                if existing is None:
                    object_id = vendor("hubspot").new_id()
                    existing = {"id": object_id, "properties": {}, "createdAt": now, "archived": False}
                    store[key.lower()] = existing
                    new = True
                else:
                    new = False
                existing["properties"].update({k: v for k, v in properties.items()})
                existing["properties"]["hs_object_id"] = existing["id"]
                existing["updatedAt"] = now
                results.append({**existing, "properties": dict(existing["properties"]), "new": new})
        payload: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": _now(),
            "completedAt": _now(),
        }
        if errors:
            payload.update(errors=errors, numErrors=len(errors))
            return JSONResponse(status_code=207, content=payload)
        return JSONResponse(status_code=200, content=payload)

    @router.get("/crm/v3/objects/{object_type}/{object_id}")
    async def read_object(object_type: str, object_id: str, idProperty: str | None = None) -> Response:
        with state.lock:
            store = vendor("hubspot").kind(object_type)
            if idProperty:
                found = store.get(object_id.lower())
            else:
                found = next((o for o in store.values() if o["id"] == object_id), None)
        if found is None:
            return _error(404, "OBJECT_NOT_FOUND", "resource not found")
        return JSONResponse(found)

    @router.post("/crm/v3/objects/contacts/gdpr-delete")
    async def gdpr_delete(request: Request) -> Response:
        body = await request.json()
        key = str(body.get("objectId", "")).lower()
        with state.lock:
            store = vendor("hubspot").kind("contacts")
            if body.get("idProperty") == "email":
                removed = store.pop(key, None)
            else:
                match = next((k for k, o in store.items() if o["id"] == key), None)
                removed = store.pop(match, None) if match else None
        if removed is None:
            return _error(404, "OBJECT_NOT_FOUND", "resource not found")
        return Response(status_code=204)

    @router.get("/account-info/v3/details")
    async def account_details() -> dict[str, Any]:
        return {
            "portalId": 62515,
            "accountType": "STANDARD",
            "timeZone": "US/Eastern",
            "companyCurrency": "USD",
            "utcOffset": "-05:00",
            "utcOffsetMilliseconds": -18000000,
            "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        }

    return router


def _input_error(message: str, key: str) -> dict[str, Any]:
    return {"status": "error", "category": "VALIDATION_ERROR", "message": message, "context": {"ids": [key]}}


class Unauthorised(Exception):
    """Raised by the auth dependency; the app turns it into HubSpot's 401."""


def unauthorised_response() -> JSONResponse:
    return _error(
        401,
        "INVALID_AUTHENTICATION",
        "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
    )
