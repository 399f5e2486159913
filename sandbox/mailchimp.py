"""Mailchimp Marketing 3.0 stand-in: ping, batch subscribe (500), members, tags, erasure; basic auth."""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from sandbox.config import SandboxConfig
from sandbox.emails import looks_like_email
from sandbox.state import SandboxState, VendorState
from sandbox.vendor import ErrorBody, VendorError, iso_now, json_body

BATCH_LIMIT = 500
STATUSES = frozenset({"subscribed", "unsubscribed", "cleaned", "pending", "transactional"})
PROBLEM_JSON = "application/problem+json; charset=utf-8"
ERRORS_DOC = "https://mailchimp.com/developer/marketing/docs/errors/"
TITLES = {
    400: "Invalid Resource",
    401: "API Key Invalid",
    403: "Forbidden",
    404: "Resource Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
NOT_FOUND = "The requested resource could not be found."
NOT_VALID = (
    "The resource submitted could not be validated. For field-specific details, see the 'errors' array."
)


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: the MD5 of the lower-cased e-mail address."""
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


def problem_json(status: int, detail: str, title: str | None = None, **extra: Any) -> dict[str, Any]:
    """Mailchimp's application/problem+json body: type, title, status, detail, instance."""
    return {
        "type": ERRORS_DOC,
        "title": title or TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": str(uuid.uuid4()),
        **extra,
    }


def problem(status: int, detail: str, title: str | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(
        problem_json(status, detail, title, **extra), status_code=status, media_type=PROBLEM_JSON
    )


def error_body(status: int, retry_after: int | None) -> ErrorBody:
    """Injected failures, unknown paths and the 429 (Mailchimp's limit is 10 simultaneous connections)."""
    details = {
        404: NOT_FOUND,
        405: "The requested method and resource are not compatible.",
        413: "The request body is too large.",
        429: "You have exceeded the limit of 10 simultaneous connections.",
    }
    detail = details.get(status, "An unexpected internal error has occurred." if status >= 500 else NOT_VALID)
    return problem_json(status, detail), PROBLEM_JSON, {}


def invalid(field: str, message: str) -> JSONResponse:
    return problem(400, NOT_VALID, errors=[{"field": field, "message": message}])


def forgotten(email: str) -> str:
    return (
        f"{email} was permanently deleted and cannot be re-imported. "
        "The contact must re-subscribe to get back on the list."
    )


class Audience:
    """The list's members by subscriber hash, under the store's lock (callers hold it)."""

    def __init__(self, store: VendorState, list_id: str, block_forgotten: bool) -> None:
        self.store = store
        self.list_id = list_id
        self.block_forgotten = block_forgotten

    @property
    def members(self) -> dict[str, dict[str, Any]]:
        return self.store.kind("members")

    def is_forgotten(self, member_hash: str) -> bool:
        return self.block_forgotten and member_hash in self.store.kind("forgotten")

    def new_member(self, email: str, status: str) -> dict[str, Any]:
        now = iso_now()
        member_hash = subscriber_hash(email)
        member = {
            "id": member_hash,
            "email_address": email,
            "unique_email_id": uuid.uuid4().hex[:10],
            "contact_id": uuid.uuid4().hex,
            "email_type": "html",
            "status": status,
            "merge_fields": {},
            "tags": [],
            "list_id": self.list_id,
            "timestamp_opt": now,
            "last_changed": now,
        }
        self.members[member_hash] = member
        return member

    def apply(self, member: dict[str, Any], fields: dict[str, Any], status: str | None) -> None:
        if status:
            member["status"] = status
        member["merge_fields"].update(fields.get("merge_fields") or {})
        for name in fields.get("tags") or []:
            self.tag(member, str(name), active=True)
        member["last_changed"] = iso_now()

    def tag(self, member: dict[str, Any], name: str, active: bool) -> None:
        if active and name not in member["tags"]:
            member["tags"].append(name)
        elif not active and name in member["tags"]:
            member["tags"].remove(name)

    def tag_id(self, name: str) -> int:
        tags = self.store.kind("tags")
        if name not in tags:
            tags[name] = {"id": int(self.store.new_id()), "name": name}
        return int(tags[name]["id"])

    def view(self, member: dict[str, Any]) -> dict[str, Any]:
        """A member as the API returns it: tags as {id, name}, with a count."""
        tags = [{"id": self.tag_id(name), "name": name} for name in member["tags"]]
        return {**member, "merge_fields": dict(member["merge_fields"]), "tags": tags, "tags_count": len(tags)}

    def forget(self, member_hash: str) -> bool:
        if self.members.pop(member_hash, None) is None:
            return False
        self.store.kind("forgotten")[member_hash] = {"id": member_hash, "list_id": self.list_id}
        return True


def batch_error(email: str, error: str, code: str = "ERROR_GENERIC") -> dict[str, Any]:
    return {"email_address": email, "error": error, "error_code": code, "field": "", "field_message": ""}


def subscribe_one(audience: Audience, item: Any, update_existing: bool) -> tuple[str, dict[str, Any]]:
    """("new" | "updated" | "error", member view or errors[] entry) for one batch member."""
    email = str(item.get("email_address", "")) if isinstance(item, dict) else ""
    if not isinstance(item, dict) or not looks_like_email(email):
        return "error", batch_error(email, "Please provide a valid email address.")
    status, status_if_new = item.get("status"), item.get("status_if_new")
    given = [s for s in (status, status_if_new) if s is not None]
    if not given or any(s not in STATUSES for s in given):
        return "error", batch_error(email, "Please provide a valid status for this member.")
    member_hash = subscriber_hash(email)
    if audience.is_forgotten(member_hash):
        return "error", batch_error(email, forgotten(email))
    existing = audience.members.get(member_hash)
    if existing is None:
        member = audience.new_member(email, str(status_if_new or status))
        audience.apply(member, item, None)
        return "new", audience.view(member)
    if not update_existing and existing["status"] != "archived":
        return "error", batch_error(email, f"{email} is already a list member.", "ERROR_CONTACT_EXISTS")
    audience.apply(existing, item, status or (status_if_new if existing["status"] == "archived" else None))
    return "updated", audience.view(existing)


def build_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    def authorised(request: Request) -> None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            _, _, key = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            key = ""
        if scheme.lower() != "basic" or key != config.mailchimp_api_key:
            raise VendorError(
                problem(
                    401, "Your API key may be invalid, or you've attempted to access the wrong datacenter."
                )
            )

    def bad_json() -> JSONResponse:
        return problem(400, "We encountered an unspecified JSON parsing error.", title="JSON Parse Error")

    def audience(list_id: str) -> Audience:
        if list_id != config.mailchimp_list_id:
            raise VendorError(problem(404, NOT_FOUND))
        return Audience(state.vendor("mailchimp"), list_id, config.mailchimp_block_forgotten)

    def member_of(list_id: str, member_hash: str) -> tuple[Audience, dict[str, Any]]:
        chosen = audience(list_id)
        member = chosen.members.get(member_hash)
        if member is None:
            raise VendorError(problem(404, NOT_FOUND))
        return chosen, member

    router = APIRouter(dependencies=[Depends(authorised)])

    @router.get("/ping")
    async def ping() -> dict[str, str]:
        return {"health_status": "Everything's Chimpy!"}

    @router.post("/lists/{list_id}")
    async def batch_subscribe(list_id: str, request: Request) -> Response:
        body = await json_body(request, bad_json)
        chosen = audience(list_id)
        batch = body.get("members") if isinstance(body, dict) else None
        if not isinstance(batch, list):
            return invalid("members", "This value should be an array of members.")
        if len(batch) > BATCH_LIMIT:
            return invalid("members", f"You may submit at most {BATCH_LIMIT} members a request.")
        outcomes: dict[str, list[dict[str, Any]]] = {"new": [], "updated": [], "error": []}
        with state.lock:
            for item in batch:
                kind, entry = subscribe_one(chosen, item, bool(body.get("update_existing")))
                outcomes[kind].append(entry)
        return JSONResponse(
            {
                "new_members": outcomes["new"],
                "updated_members": outcomes["updated"],
                "errors": outcomes["error"],
                "total_created": len(outcomes["new"]),
                "total_updated": len(outcomes["updated"]),
                "error_count": len(outcomes["error"]),
            }
        )

    @router.put("/lists/{list_id}/members/{member_hash}")
    async def put_member(list_id: str, member_hash: str, request: Request) -> Response:
        body = await json_body(request, bad_json)
        chosen = audience(list_id)
        if not isinstance(body, dict):
            return invalid("", "The request body must be a member object.")
        email = body.get("email_address")
        if not looks_like_email(email):
            return invalid("email_address", "Please provide a valid email address.")
        if subscriber_hash(str(email)) != member_hash:
            return invalid(
                "email_address", "The email address does not match the subscriber hash in the URL."
            )
        for field in ("status", "status_if_new"):
            if body.get(field) is not None and body[field] not in STATUSES:
                return invalid(field, "The status must be one of: " + ", ".join(sorted(STATUSES)) + ".")
        with state.lock:
            if chosen.is_forgotten(member_hash):
                return problem(400, forgotten(str(email)), title="Forgotten Email Not Subscribed")
            member = chosen.members.get(member_hash)
            if member is None:
                if not body.get("status_if_new"):
                    return invalid("status_if_new", "This value should not be blank for a new member.")
                member = chosen.new_member(str(email), str(body["status_if_new"]))
                chosen.apply(member, body, None)
            else:
                chosen.apply(member, body, body.get("status"))
            return JSONResponse(chosen.view(member))

    @router.get("/lists/{list_id}/members/{member_hash}")
    async def get_member(list_id: str, member_hash: str) -> Response:
        with state.lock:
            chosen, member = member_of(list_id, member_hash)
            return JSONResponse(chosen.view(member))

    @router.post("/lists/{list_id}/members/{member_hash}/tags")
    async def tags(list_id: str, member_hash: str, request: Request) -> Response:
        body = await json_body(request, bad_json)
        changes = body.get("tags") if isinstance(body, dict) else None
        if not isinstance(changes, list) or not all(
            isinstance(t, dict) and t.get("name") and t.get("status") in ("active", "inactive")
            for t in changes
        ):
            return invalid("tags", "Each tag needs a name and a status of active or inactive.")
        with state.lock:
            chosen, member = member_of(list_id, member_hash)
            for change in changes:
                chosen.tag(member, str(change["name"]), active=change["status"] == "active")
        return Response(status_code=204)

    @router.delete("/lists/{list_id}/members/{member_hash}")
    async def archive(list_id: str, member_hash: str) -> Response:
        with state.lock:
            _, member = member_of(list_id, member_hash)
            member["status"] = "archived"
        return Response(status_code=204)

    @router.post("/lists/{list_id}/members/{member_hash}/actions/delete-permanent")
    async def delete_permanent(list_id: str, member_hash: str) -> Response:
        with state.lock:
            if not audience(list_id).forget(member_hash):
                return problem(404, NOT_FOUND)
        return Response(status_code=204)

    return router
