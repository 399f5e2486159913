"""Mailchimp Marketing 3.0 stand-in: ping, batch subscribe (500), members, tags, merge fields, segments,
member events, journey triggers, archive and permanent delete; basic auth (any user name, the API key as
password).

Tags are static segments, as at Mailchimp: each has an id, `GET /lists/{id}/segments` lists them (type
`static`) with the saved segments (type `saved`, a tag condition), and a saved segment's members are the
members carrying the tag now. `POST /lists/{id}/segments/{tag id}` adds the tag to, or takes it off, up to
500 members a request (`members_to_add`, `members_to_remove`: addresses); it answers `members_added`,
`members_removed` (the members changed), `errors[{email_addresses, error}]` (addresses not in the audience:
the stand-in's wording), `total_added`, `total_removed` and `error_count`; an address already in (or not
in) the segment is left alone, in neither list. A member event needs a member, a name of 2-30 letters,
digits, `_` or `-`, and string properties; a permanent delete removes the member with its tags and events.

Merge fields are defined per audience, as at Mailchimp: a new audience has FNAME, LNAME, ADDRESS, PHONE and
BIRTHDAY; a member write naming another tag is refused ("Your merge fields were invalid.") until the tag
is created with `POST /lists/{id}/merge-fields`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from sandbox.config import SandboxConfig
from sandbox.emails import looks_like_email
from sandbox.state import SandboxState, VendorState
from sandbox.vendor import ErrorBody, VendorError, iso_now, json_body

# Where the stand-in is mounted: the vendor's real paths follow (sandbox.app discovers it by this).
MOUNT = "/mailchimp/3.0"

BATCH_LIMIT = 500
MERGE_FIELD_LIMIT = 1000
MERGE_FIELD_TYPES = frozenset(
    {"text", "number", "address", "phone", "date", "url", "imageurl", "radio", "dropdown", "birthday", "zip"}
)
DEFAULT_MERGE_FIELDS = (
    ("FNAME", "First Name", "text"),
    ("LNAME", "Last Name", "text"),
    ("ADDRESS", "Address", "address"),
    ("PHONE", "Phone Number", "phone"),
    ("BIRTHDAY", "Birthday", "birthday"),
)
MERGE_FIELDS_INVALID = "Your merge fields were invalid."
# The sandbox's one Customer Journey and its API-trigger step (MAILCHIMP_JOURNEY_ID / _STEP_ID).
JOURNEYS = {1001: frozenset({2001})}
EVENT_NAME = re.compile(r"[A-Za-z0-9_-]{2,30}")
EVENT_PROPERTIES_LIMIT = 1000  # characters of all keys and values together (about, per Mailchimp)
TAG_NAME_LIMIT = 100
SEGMENT_NAME_LIMIT = 100
SEGMENT_PAGE_LIMIT = 1000
SEGMENT_MEMBERS_LIMIT = 500  # addresses in members_to_add, and in members_to_remove
NOT_IN_AUDIENCE = "Email addresses are not members of this audience."
SEGMENT_MATCHES = frozenset({"any", "all"})
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

    @property
    def merge_fields(self) -> dict[str, Any]:
        """The audience's merge field definitions by tag; a fresh audience has Mailchimp's defaults."""
        defined = self.store.kind("merge_fields")
        if not defined:
            for tag, name, kind in DEFAULT_MERGE_FIELDS:
                self.define(tag, name, kind)
        return defined

    def define(self, tag: str, name: str, kind: str) -> dict[str, Any]:
        defined = self.store.kind("merge_fields")
        field = {
            "merge_id": len(defined) + 1,
            "tag": tag,
            "name": name,
            "type": kind,
            "required": False,
            "default_value": "",
            "public": False,
            "display_order": len(defined) + 2,
            "options": {},
            "help_text": "",
            "list_id": self.list_id,
        }
        defined[tag] = field
        return field

    def merge_field_errors(self, values: Any) -> list[dict[str, str]]:
        """Mailchimp's `errors` entries for merge field values: unknown tags, non-numbers in numbers."""
        if values is None:
            return []
        if not isinstance(values, dict):
            return [{"field": "merge_fields", "message": "This value should be of type object."}]
        errors = []
        for tag, value in values.items():
            field = self.merge_fields.get(str(tag))
            if field is None:
                errors.append({"field": str(tag), "message": "This merge field does not exist."})
            elif field["type"] == "number" and value not in ("", None):
                try:
                    float(value)
                except (TypeError, ValueError):
                    errors.append({"field": str(tag), "message": "Please enter a number"})
        return errors

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

    def apply(
        self, member: dict[str, Any], fields: dict[str, Any], status: str | None, sync_tags: bool = False
    ) -> None:
        """Status, merge fields and tags; tags are added, or replace the member's with `sync_tags`."""
        if status:
            member["status"] = status
        member["merge_fields"].update(fields.get("merge_fields") or {})
        if sync_tags:
            member["tags"] = []
        for name in fields.get("tags") or []:
            self.tag(member, str(name), active=True)
        member["last_changed"] = iso_now()

    def tag(self, member: dict[str, Any], name: str, active: bool) -> None:
        if active:
            self.tag_id(name)  # a tag applied for the first time is a new static segment
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

    def tag_named(self, tag_id: Any) -> str | None:
        return next((t["name"] for t in self.store.kind("tags").values() if t["id"] == tag_id), None)

    def segment_view(self, segment: dict[str, Any]) -> dict[str, Any]:
        return {**segment, "member_count": len(self.segment_members(segment)), "list_id": self.list_id}

    def segment_members(self, segment: dict[str, Any]) -> list[dict[str, Any]]:
        """Who matches now: a tag's carriers, or a saved segment's tag conditions evaluated on each member."""
        if segment["type"] == "static":
            return [m for m in self.members.values() if segment["name"] in m["tags"]]
        options = segment["options"]
        wanted = [(c["op"] == "static_is", self.tag_named(c["value"])) for c in options["conditions"]]
        combine = any if options["match"] == "any" else all
        return [
            m
            for m in self.members.values()
            if combine((name in m["tags"]) == positive for positive, name in wanted)
        ]

    def segments(self) -> list[dict[str, Any]]:
        static = [
            {"id": t["id"], "name": t["name"], "type": "static"} for t in self.store.kind("tags").values()
        ]
        return [*static, *self.store.kind("segments").values()]

    def forget(self, member_hash: str) -> bool:
        if self.members.pop(member_hash, None) is None:
            return False
        events = self.store.kind("events")
        for key in [k for k, e in events.items() if e["member_id"] == member_hash]:
            del events[key]
        self.store.kind("forgotten")[member_hash] = {"id": member_hash, "list_id": self.list_id}
        return True


def batch_error(email: str, error: str, code: str = "ERROR_GENERIC") -> dict[str, Any]:
    return {"email_address": email, "error": error, "error_code": code, "field": "", "field_message": ""}


def subscribe_one(
    audience: Audience, item: Any, update_existing: bool, sync_tags: bool = False
) -> tuple[str, dict[str, Any]]:
    """("new" | "updated" | "error", member view or errors[] entry) for one batch member.

    Tags apply to new and existing members alike (Mailchimp since January 2022); `sync_tags` with
    `update_existing` replaces an existing member's tags instead of adding to them.
    """
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
    field_errors = audience.merge_field_errors(item.get("merge_fields"))
    if field_errors:
        error = batch_error(email, MERGE_FIELDS_INVALID)
        error.update(field=field_errors[0]["field"], field_message=field_errors[0]["message"])
        return "error", error
    existing = audience.members.get(member_hash)
    if existing is None:
        member = audience.new_member(email, str(status_if_new or status))
        audience.apply(member, item, None)
        return "new", audience.view(member)
    if not update_existing and existing["status"] != "archived":
        return "error", batch_error(email, f"{email} is already a list member.", "ERROR_CONTACT_EXISTS")
    revived = status_if_new if existing["status"] == "archived" else None
    audience.apply(existing, item, status or revived, sync_tags=sync_tags and update_existing)
    return "updated", audience.view(existing)


def segment_options_error(audience: Audience, options: Any) -> str | None:
    """Why saved-segment options are refused, or None. The stand-in knows the tag condition only:
    `{"condition_type": "StaticSegment", "field": "static_segment", "op": "static_is"|"static_not",
    "value": <tag id>}`; `match` is `any` or `all`."""
    if not isinstance(options, dict) or options.get("match", "any") not in SEGMENT_MATCHES:
        return "options.match must be any or all."
    conditions = options.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        return "options.conditions must be a non-empty array."
    for condition in conditions:
        if not isinstance(condition, dict) or condition.get("condition_type") != "StaticSegment":
            return "Only StaticSegment (tag) conditions are known to this stand-in."
        if condition.get("field") != "static_segment" or condition.get("op") not in (
            "static_is",
            "static_not",
        ):
            return "A StaticSegment condition needs field static_segment and op static_is or static_not."
        if not isinstance(condition.get("value"), int) or audience.tag_named(condition["value"]) is None:
            return "The condition's value is not the id of a tag of this audience."
    return None


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
                kind, entry = subscribe_one(
                    chosen, item, bool(body.get("update_existing")), bool(body.get("sync_tags"))
                )
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
            field_errors = chosen.merge_field_errors(body.get("merge_fields"))
            if field_errors:
                return problem(400, MERGE_FIELDS_INVALID, errors=field_errors)
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
            isinstance(t, dict)
            and isinstance(t.get("name"), str)
            and 0 < len(t["name"]) <= TAG_NAME_LIMIT
            and t.get("status") in ("active", "inactive")
            for t in changes
        ):
            return invalid("tags", "Each tag needs a name and a status of active or inactive.")
        with state.lock:
            chosen, member = member_of(list_id, member_hash)
            for change in changes:
                chosen.tag(member, str(change["name"]), active=change["status"] == "active")
        return Response(status_code=204)

    @router.post("/lists/{list_id}/members/{member_hash}/events")
    async def add_event(list_id: str, member_hash: str, request: Request) -> Response:
        body = await json_body(request, bad_json)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            return invalid("name", "This value should not be blank.")
        if not EVENT_NAME.fullmatch(body["name"]):
            return invalid(
                "name", "Event names must be 2-30 characters: letters, numbers, underscores or dashes."
            )
        properties = body.get("properties", {})
        if not isinstance(properties, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in properties.items()
        ):
            return invalid("properties", "Event properties must be string keys with string values.")
        if sum(len(k) + len(v) for k, v in properties.items()) > EVENT_PROPERTIES_LIMIT:
            return invalid("properties", "Event properties are too long.")
        for field, kind in (("is_syncing", bool), ("occurred_at", str)):
            if field in body and not isinstance(body[field], kind):
                return invalid(field, "This value is not of the expected type.")
        with state.lock:
            chosen, member = member_of(list_id, member_hash)
            events = chosen.store.kind("events")
            key = str(len(events) + 1)
            events[key] = {
                "id": key,
                "member_id": member["id"],
                "name": body["name"],
                "properties": dict(properties),
                "occurred_at": body.get("occurred_at") or iso_now(),
                "is_syncing": bool(body.get("is_syncing", False)),
            }
        return Response(status_code=204)

    @router.get("/lists/{list_id}/segments")
    async def list_segments(
        list_id: str, count: int = 10, offset: int = 0, type: str | None = None
    ) -> Response:
        if count > SEGMENT_PAGE_LIMIT:
            return invalid("count", f"The count may be at most {SEGMENT_PAGE_LIMIT}.")
        chosen = audience(list_id)
        with state.lock:
            found = [chosen.segment_view(s) for s in chosen.segments() if type in (None, s["type"])]
        return JSONResponse(
            {"segments": found[offset : offset + count], "list_id": list_id, "total_items": len(found)}
        )

    @router.post("/lists/{list_id}/segments")
    async def add_segment(list_id: str, request: Request) -> Response:
        body = await json_body(request, bad_json)
        chosen = audience(list_id)
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not 0 < len(name) <= SEGMENT_NAME_LIMIT:
            return invalid("name", f"A segment needs a name of at most {SEGMENT_NAME_LIMIT} characters.")
        static, options = body.get("static_segment"), body.get("options")
        if (static is None) == (options is None):
            return invalid("", "A segment is either static (static_segment) or saved (options), not both.")
        with state.lock:
            if static is not None:
                if not isinstance(static, list) or not all(isinstance(e, str) for e in static):
                    return invalid("static_segment", "This value should be an array of e-mail addresses.")
                if name in chosen.store.kind("tags"):
                    return problem(400, f'A tag with the name "{name}" already exists.')
                tag_id = chosen.tag_id(name)
                for email in static:  # addresses not in the audience are ignored, as at Mailchimp
                    member = chosen.members.get(subscriber_hash(email))
                    if member is not None:
                        chosen.tag(member, name, active=True)
                segment = {"id": tag_id, "name": name, "type": "static"}
                return JSONResponse(chosen.segment_view(segment))
            error = segment_options_error(chosen, options)
            if error is not None:
                return invalid("options", error)
            segment = {
                "id": int(chosen.store.new_id()),
                "name": name,
                "type": "saved",
                "options": {"match": options.get("match", "any"), "conditions": options["conditions"]},
                "created_at": iso_now(),
            }
            chosen.store.kind("segments")[str(segment["id"])] = segment
            return JSONResponse(chosen.segment_view(segment))

    @router.post("/lists/{list_id}/segments/{segment_id}")
    async def batch_segment_members(list_id: str, segment_id: int, request: Request) -> Response:
        body = await json_body(request, bad_json)
        chosen = audience(list_id)
        if not isinstance(body, dict):
            return invalid("", "The request body must be an object.")
        lists = {name: body.get(name, []) for name in ("members_to_add", "members_to_remove")}
        for name, emails in lists.items():
            if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
                return invalid(name, "This value should be an array of e-mail addresses.")
            if len(emails) > SEGMENT_MEMBERS_LIMIT:
                return invalid(name, f"You may submit at most {SEGMENT_MEMBERS_LIMIT} e-mail addresses.")
        with state.lock:
            segment = next((s for s in chosen.segments() if s["id"] == segment_id), None)
            if segment is None:
                return problem(404, NOT_FOUND)
            if segment["type"] != "static":
                return problem(400, "Members can only be added to or removed from a static segment.")
            changed: dict[str, list[dict[str, Any]]] = {"members_to_add": [], "members_to_remove": []}
            absent: list[str] = []
            for name, emails in lists.items():
                adding = name == "members_to_add"
                for email in emails:
                    member = chosen.members.get(subscriber_hash(email))
                    if member is None:
                        absent.append(email)
                    elif (segment["name"] in member["tags"]) != adding:
                        chosen.tag(member, segment["name"], active=adding)
                        changed[name].append(chosen.view(member))
        errors = [{"email_addresses": absent, "error": NOT_IN_AUDIENCE}] if absent else []
        return JSONResponse(
            {
                "members_added": changed["members_to_add"],
                "members_removed": changed["members_to_remove"],
                "errors": errors,
                "total_added": len(changed["members_to_add"]),
                "total_removed": len(changed["members_to_remove"]),
                "error_count": len(absent),
            }
        )

    @router.get("/lists/{list_id}/segments/{segment_id}/members")
    async def segment_members(list_id: str, segment_id: int) -> Response:
        chosen = audience(list_id)
        with state.lock:
            segment = next((s for s in chosen.segments() if s["id"] == segment_id), None)
            if segment is None:
                return problem(404, NOT_FOUND)
            found = [chosen.view(m) for m in chosen.segment_members(segment)]
        return JSONResponse({"members": found, "segment_id": segment_id, "total_items": len(found)})

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

    @router.get("/lists/{list_id}/merge-fields")
    async def merge_fields(list_id: str, count: int = 10, offset: int = 0) -> Response:
        if count > MERGE_FIELD_LIMIT:
            return invalid("count", f"The count may be at most {MERGE_FIELD_LIMIT}.")
        chosen = audience(list_id)
        with state.lock:
            defined = list(chosen.merge_fields.values())
        return JSONResponse(
            {
                "merge_fields": defined[offset : offset + count],
                "list_id": list_id,
                "total_items": len(defined),
            }
        )

    @router.post("/lists/{list_id}/merge-fields")
    async def add_merge_field(list_id: str, request: Request) -> Response:
        body = await json_body(request, bad_json)
        chosen = audience(list_id)
        if not isinstance(body, dict) or not body.get("name"):
            return invalid("name", "This value should not be blank.")
        if body.get("type") not in MERGE_FIELD_TYPES:
            return invalid("type", "Data presented is not one of the accepted values.")
        with state.lock:
            tag = str(body.get("tag") or f"MMERGE{len(chosen.merge_fields) + 1}").upper()
            if len(tag) > 10 or not tag.replace("_", "").isalnum():
                return invalid("tag", "The merge tag may have at most 10 letters, digits or underscores.")
            if tag in chosen.merge_fields:
                return problem(400, f'A Merge Field with the tag "{tag}" already exists for this list.')
            return JSONResponse(chosen.define(tag, str(body["name"]), str(body["type"])))

    @router.post("/customer-journeys/journeys/{journey_id}/steps/{step_id}/actions/trigger")
    async def trigger_journey(journey_id: int, step_id: int, request: Request) -> Response:
        body = await json_body(request, bad_json)
        if step_id not in JOURNEYS.get(journey_id, frozenset()):
            return problem(404, NOT_FOUND)
        email = body.get("email_address") if isinstance(body, dict) else None
        if not looks_like_email(email):
            return invalid("email_address", "Please provide a valid email address.")
        store = state.vendor("mailchimp")
        with state.lock:
            member = store.kind("members").get(subscriber_hash(str(email)))
            if member is None or member["status"] != "subscribed":
                return problem(400, "The contact is not subscribed to the audience of this journey.")
            triggers = store.kind("journey_triggers")
            triggers[str(len(triggers) + 1)] = {
                "journey_id": journey_id,
                "step_id": step_id,
                "member_id": member["id"],
            }
        return Response(status_code=204)

    return router


# The conformance suite's mixed batch (tests/test_conformance.py): an address Mailchimp refuses in the
# batch subscribe's `errors[]` while the other members are written.
CONFORMANCE_REFUSED = {"members": {"email_address": "not-an-address"}}
