"""Mailchimp Marketing stand-in: batch subscribe (500), member PUT/GET/tags/archive/delete-permanent, ping."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from sandbox.config import SandboxConfig
from sandbox.state import SandboxState

BATCH_LIMIT = 500
EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
STATUSES = {"subscribed", "unsubscribed", "cleaned", "pending", "transactional"}
PROBLEM = "application/problem+json"
ERRORS_DOC = "https://mailchimp.com/developer/marketing/docs/errors/"


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


def problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        media_type=PROBLEM,
        content={
            "type": ERRORS_DOC,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": str(uuid.uuid4()),
        },
    )


def error_body(status: int, retry_after: int | None) -> tuple[dict[str, Any], str, dict[str, str]]:
    titles = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
    return (
        {
            "type": ERRORS_DOC,
            "title": titles.get(status, "Error"),
            "status": status,
            "detail": "You have exceeded the limit of 10 simultaneous connections."
            if status == 429
            else "An unexpected internal error has occurred.",
            "instance": str(uuid.uuid4()),
        },
        PROBLEM,
        {},
    )


class Unauthorised(Exception):
    pass


def unauthorised_response() -> JSONResponse:
    return problem(
        401,
        "API Key Invalid",
        "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
    )


def _member_view(member: dict[str, Any]) -> dict[str, Any]:
    return {**member, "tags": [{"id": i + 1, "name": t} for i, t in enumerate(member["tags"])]}


def build_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    def authorised(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            _, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            password = ""
        if scheme.lower() != "basic" or password != config.mailchimp_api_key:
            raise Unauthorised

    router = APIRouter(dependencies=[Depends(authorised)])

    def members(list_id: str) -> dict[str, Any] | None:
        if list_id != config.mailchimp_list_id:
            return None
        return state.vendor("mailchimp").kind("members")

    @router.get("/ping")
    async def ping() -> dict[str, str]:
        return {"health_status": "Everything's Chimpy!"}

    @router.post("/lists/{list_id}")
    async def batch_subscribe(list_id: str, request: Request) -> Response:
        body = await request.json()
        store = members(list_id)
        if store is None:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        batch = body.get("members") if isinstance(body, dict) else None
        if not isinstance(batch, list):
            return problem(400, "Invalid Resource", "The resource submitted could not be validated: members.")
        if len(batch) > BATCH_LIMIT:
            return problem(400, "Invalid Resource", f"members: a batch holds at most {BATCH_LIMIT} members.")
        update_existing = bool(body.get("update_existing"))
        created: list[dict[str, Any]] = []
        updated: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        with state.lock:
            for item in batch:
                email = str(item.get("email_address", "")) if isinstance(item, dict) else ""
                status = item.get("status") if isinstance(item, dict) else None
                if not EMAIL.match(email):
                    errors.append(
                        {
                            "email_address": email,
                            "error": "Please provide a valid email address.",
                            "error_code": "ERROR_GENERIC",
                        }
                    )
                    continue
                if status not in STATUSES:
                    errors.append(
                        {"email_address": email, "error": "Invalid status.", "error_code": "ERROR_GENERIC"}
                    )
                    continue
                key = subscriber_hash(email)
                existing = store.get(key)
                if existing is not None and not update_existing:
                    errors.append(
                        {
                            "email_address": email,
                            "error": f"{email} is already a list member.",
                            "error_code": "ERROR_CONTACT_EXISTS",
                        }
                    )
                    continue
                member = existing or {
                    "id": key,
                    "email_address": email.lower(),
                    "unique_email_id": uuid.uuid4().hex,
                    "list_id": list_id,
                    "merge_fields": {},
                    "tags": [],
                }
                member["status"] = status
                member["merge_fields"].update(item.get("merge_fields") or {})
                for tag in item.get("tags") or []:
                    if tag not in member["tags"]:
                        member["tags"].append(tag)
                store[key] = member
                (created if existing is None else updated).append(_member_view(member))
        return JSONResponse(
            {
                "new_members": created,
                "updated_members": updated,
                "errors": errors,
                "total_created": len(created),
                "total_updated": len(updated),
                "error_count": len(errors),
            }
        )

    @router.put("/lists/{list_id}/members/{member_hash}")
    async def put_member(list_id: str, member_hash: str, request: Request) -> Response:
        body = await request.json()
        store = members(list_id)
        if store is None:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        email = str(body.get("email_address", ""))
        if not EMAIL.match(email) or subscriber_hash(email) != member_hash:
            return problem(
                400, "Invalid Resource", "The resource submitted could not be validated: email_address."
            )
        with state.lock:
            existing = store.get(member_hash)
            status = body.get("status") or (existing or {}).get("status") or body.get("status_if_new")
            if (
                existing is None
                and body.get("status_if_new") not in STATUSES
                and body.get("status") not in STATUSES
            ):
                return problem(400, "Invalid Resource", "status_if_new is required for a new member.")
            member = existing or {
                "id": member_hash,
                "email_address": email.lower(),
                "list_id": list_id,
                "unique_email_id": uuid.uuid4().hex,
                "merge_fields": {},
                "tags": [],
            }
            member["status"] = status
            member["merge_fields"].update(body.get("merge_fields") or {})
            store[member_hash] = member
            return JSONResponse(_member_view(member))

    @router.get("/lists/{list_id}/members/{member_hash}")
    async def get_member(list_id: str, member_hash: str) -> Response:
        store = members(list_id)
        member = store.get(member_hash) if store is not None else None
        if member is None:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        return JSONResponse(_member_view(member))

    @router.post("/lists/{list_id}/members/{member_hash}/tags")
    async def tags(list_id: str, member_hash: str, request: Request) -> Response:
        body = await request.json()
        store = members(list_id)
        with state.lock:
            member = store.get(member_hash) if store is not None else None
            if member is None:
                return problem(404, "Resource Not Found", "The requested resource could not be found.")
            for tag in body.get("tags") or []:
                name, status = tag.get("name"), tag.get("status")
                if status == "active" and name not in member["tags"]:
                    member["tags"].append(name)
                elif status == "inactive" and name in member["tags"]:
                    member["tags"].remove(name)
        return Response(status_code=204)

    @router.delete("/lists/{list_id}/members/{member_hash}")
    async def archive(list_id: str, member_hash: str) -> Response:
        store = members(list_id)
        with state.lock:
            member = store.get(member_hash) if store is not None else None
            if member is None:
                return problem(404, "Resource Not Found", "The requested resource could not be found.")
            member["status"] = "archived"
        return Response(status_code=204)

    @router.post("/lists/{list_id}/members/{member_hash}/actions/delete-permanent")
    async def delete_permanent(list_id: str, member_hash: str) -> Response:
        store = members(list_id)
        with state.lock:
            removed = store.pop(member_hash, None) if store is not None else None
        if removed is None:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        return Response(status_code=204)

    return router
