"""Salesforce REST stand-in: OAuth token (client credentials, JWT bearer), sObject upserts, query, limits."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from sandbox.config import SandboxConfig
from sandbox.emails import looks_like_email
from sandbox.state import SandboxState, VendorState
from sandbox.vendor import VendorError, json_body

# Where the stand-in is mounted: the vendor's real paths follow (sandbox.app discovers it by this).
MOUNT = "/salesforce"

VENDOR = "salesforce"

CONSUMER_KEY = "sandbox-sf-key"
CLIENT_SECRET = "sandbox-sf-secret"  # noqa: S105 - a published dummy
# The connected app's certificate: JWT bearer assertions must be signed with its private key (the tests hold
# that published dummy key; it signs nothing real).
JWT_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAra69AqMTBMBmEmGLUqz0
CroSrdlHXzFIobuw13Y1PlqqvJnKUn1A+sTUCH0NN5sE+nLDsopTalJeIp+nj+Wz
xnsP3WPL1KSijDxJpQHBLf97IECATYs6zBsxiQ1HemwdGngYN9TTCbxWrMSgTNAD
dH2Koct/eKAyklDi0fDz208XhIddd/5rlMSN70OKgjl8wLkU4Daz2vJ8vgsgSntd
AKcJ4/L9ChoBby0dI0wj/xZFA1L/sIntnxk2TJbM0EiRMHK8jmRqh24lYuM+7bQn
5BTPIlNoDBOglhEENUo+F44V+pIoMZdyGiBrN2I223EfkaCmoZ7ne6sUWrzaDIkX
zQIDAQAB
-----END PUBLIC KEY-----
"""
JWT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
JWT_MAX_LIFETIME_SECONDS = 300
ORG_ID = "00D5g00000SANDBX"
USER_ID = "0055g00000SANDBX"
# The API's limits answer 403 REQUEST_LIMIT_EXCEEDED, never 429 (sandbox.vendor reads this).
RATE_LIMIT_STATUS = 403
DEFAULT_DAILY_LIMIT = 15000
COLLECTION_LIMIT = 200
COLLECTIONS_SINCE = 46.0  # sObject Collections upsert, and `created` in upsert results
QUERY_BATCH = (200, 2000)  # Sforce-Query-Options batchSize: min, max (and default)
KEY_PREFIXES = {"Account": "001", "Contact": "003", "Opportunity": "006", "Lead": "00Q"}
REQUIRED = {
    "Account": ("Name",),
    "Contact": ("LastName",),
    "Lead": ("LastName", "Company"),
    "Opportunity": ("Name", "StageName", "CloseDate"),
}
STANDARD_FIELDS = {
    "Account": {"Name", "Phone", "Website", "Type", "Industry", "Description", "AccountNumber", "OwnerId"},
    "Contact": {
        "FirstName", "LastName", "Email", "Phone", "MobilePhone", "Birthdate", "LeadSource", "Title",
        "Description", "AccountId", "MailingCity", "MailingPostalCode", "MailingCountry",
        "HasOptedOutOfEmail", "DoNotCall", "OwnerId",
    },
    "Lead": {
        "FirstName", "LastName", "Company", "Email", "Phone", "MobilePhone", "LeadSource", "Status", "Title",
        "Description", "HasOptedOutOfEmail", "DoNotCall", "OwnerId",
    },
    "Opportunity": {
        "Name", "StageName", "CloseDate", "Amount", "LeadSource", "Type", "Description", "AccountId",
        "Probability", "NextStep", "OwnerId",
    },
}  # fmt: skip
SYSTEM_FIELDS = ("Id", "CreatedDate", "LastModifiedDate", "SystemModstamp")
# The API user's id: a record created through the API is owned by it until someone reassigns it.
INTEGRATION_USER_ID = "0055g00000ENNUAPI"
OWNED_OBJECTS = ("Contact", "Lead", "Opportunity", "Account")
DATE_FIELDS = {"Birthdate", "CloseDate"}
MAX_LENGTHS = {
    "FirstName": 40, "LastName": 80, "Email": 80, "Phone": 40, "MobilePhone": 40, "Company": 255,
    "StageName": 255, "LeadSource": 255, "Title": 128, "Status": 255, "Type": 255, "NextStep": 255,
}  # fmt: skip
NAME_LENGTHS = {"Opportunity": 120, "Account": 255}
API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
VERSION = re.compile(r"^v(\d{2})\.0$")
SOQL = re.compile(
    r"^\s*SELECT\s+(?P<fields>[A-Za-z0-9_,.\s]+?)\s+FROM\s+(?P<object>[A-Za-z0-9_]+)"
    r"\s+WHERE\s+SystemModstamp\s*>\s*(?P<since>\S+)"
    r"(?:\s+ORDER\s+BY\s+SystemModstamp(?:\s+ASC)?)?\s*$",
    re.IGNORECASE,
)
ERROR_CODES = {
    400: "MALFORMED_QUERY",
    401: "INVALID_SESSION_ID",
    403: "REQUEST_LIMIT_EXCEEDED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_ENTITY_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    500: "UNKNOWN_EXCEPTION",
    503: "SERVER_UNAVAILABLE",
}
MESSAGES = {
    401: "Session expired or invalid",
    403: "TotalRequests Limit exceeded.",
    404: "The requested resource does not exist",
    503: "Server is temporarily unavailable. Please try again later.",
}


def errors(status: int, code: str, message: str, fields: list[str] | None = None) -> JSONResponse:
    """Salesforce's REST error body: a list of {message, errorCode, fields}."""
    item: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        item["fields"] = fields
    return JSONResponse([item], status_code=status)


def error_body(status: int, retry_after: int | None) -> tuple[list[dict[str, Any]], str, dict[str, str]]:
    """The error shape for injected failures, limits and unknown paths."""
    code = ERROR_CODES.get(status, "UNKNOWN_EXCEPTION" if status >= 500 else "BAD_REQUEST")
    message = MESSAGES.get(status, "An unexpected error occurred." if status >= 500 else "Bad request.")
    return [{"message": message, "errorCode": code}], "application/json", {}


class Unauthorised(Exception):
    """Bearer auth is checked by the API routes' wrapper, which answers `unauthorised_response()`."""


def unauthorised_response() -> JSONResponse:
    return errors(401, "INVALID_SESSION_ID", "Session expired or invalid")


def oauth_error(code: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status)


def timestamp(when: datetime | None = None) -> str:
    """Salesforce's dateTime format: 2024-05-01T12:00:00.000+0000."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_timestamp(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


class OrgSettings(BaseModel):
    """`POST /salesforce/_sandbox/org`: the org's daily API request limit and how long sessions last."""

    model_config = ConfigDict(extra="forbid")

    daily_limit: int | None = Field(default=None, gt=0)  # None: 15000 shown, never enforced
    session_seconds: float | None = Field(default=None, ge=0)  # None: sessions last until expired


def version_of(path_version: str) -> float | None:
    match = VERSION.match(path_version)
    return float(match.group(1)) if match else None


def build_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    def vendor() -> VendorState:
        return state.vendor(VENDOR)

    def settings() -> dict[str, Any]:
        return vendor().kind("org").setdefault("settings", {"daily_limit": None, "session_seconds": None})

    def usage() -> dict[str, Any]:
        today = date.today().isoformat()
        counter = vendor().kind("org").setdefault("usage", {"day": today, "used": 0})
        if counter["day"] != today:
            counter.update(day=today, used=0)
        return counter

    def limit_info() -> str:
        with state.lock:
            limit = settings()["daily_limit"] or DEFAULT_DAILY_LIMIT
            return f"api-usage={usage()['used']}/{limit}"

    def session_valid(request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        with state.lock:
            session = vendor().kind("sessions").get(token.strip())
            lifetime = settings()["session_seconds"]
        if session is None:
            return False
        return lifetime is None or time.time() - session["issued"] < lifetime

    def over_budget() -> bool:
        """Count one API request; True when the org's daily limit was already used up."""
        with state.lock:
            limit = settings()["daily_limit"]
            counter = usage()
            if limit is not None and counter["used"] >= limit:
                return True
            counter["used"] += 1
            return False

    class ApiRoute(APIRoute):
        """Every API route: bearer session, daily budget, and Sforce-Limit-Info on every answer."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                if not session_valid(request):
                    response: Response = unauthorised_response()
                elif over_budget():
                    response = errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                else:
                    try:
                        response = await handler(request)
                    except VendorError as exc:
                        response = exc.response
                response.headers["Sforce-Limit-Info"] = limit_info()
                return response

            return guarded

    router = APIRouter()
    api = APIRouter(route_class=ApiRoute)

    def bad_json() -> JSONResponse:
        return errors(400, "JSON_PARSER_ERROR", "The request body is not valid JSON.")

    # ------------------------------------------------------------------ OAuth

    @router.post("/services/oauth2/token")
    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", errors="replace")))
        login_url = str(request.base_url).rstrip("/") + MOUNT
        grant = form.get("grant_type")
        if grant == "client_credentials":
            key, secret = _client_credentials(request, form)
            if key != CONSUMER_KEY or secret != CLIENT_SECRET:
                return oauth_error("invalid_client", "invalid client credentials")
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            refusal = _check_assertion(form.get("assertion", ""), (*JWT_AUDIENCES, login_url))
            if refusal is not None:
                return refusal
        else:
            return oauth_error("unsupported_grant_type", "grant type not supported")
        access_token = f"{ORG_ID}!{secrets.token_urlsafe(32)}"
        issued_ms = str(int(time.time() * 1000))
        with state.lock:
            vendor().kind("sessions")[access_token] = {"issued": time.time(), "grant": grant}
        signature = base64.b64encode(hashlib.sha256((access_token + issued_ms).encode()).digest()).decode()
        return JSONResponse(
            {
                "access_token": access_token,
                "instance_url": login_url,
                "id": f"{login_url}/id/{ORG_ID}/{USER_ID}",
                "token_type": "Bearer",
                "issued_at": issued_ms,
                "signature": signature,
                "scope": "api",
            }
        )

    # ------------------------------------------------------------------ sandbox controls (not the vendor's)

    @router.post("/_sandbox/org")
    async def set_org(body: OrgSettings) -> dict[str, Any]:
        with state.lock:
            settings().update(body.model_dump())
            return dict(settings())

    @router.post("/_sandbox/expire-sessions")
    async def expire_sessions() -> dict[str, int]:
        with state.lock:
            sessions = vendor().kind("sessions")
            count = len(sessions)
            sessions.clear()
        return {"expired": count}

    # ------------------------------------------------------------------ REST API

    @api.get("/services/data/{version}/limits")
    async def limits(version: str) -> Response:
        if version_of(version) is None:
            return errors(404, "NOT_FOUND", MESSAGES[404])
        with state.lock:
            limit = settings()["daily_limit"] or DEFAULT_DAILY_LIMIT
            used = usage()["used"]
        return JSONResponse(
            {
                "DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)},
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
                "DataStorageMB": {"Max": 5, "Remaining": 5},
            }
        )

    @api.patch("/services/data/{version}/composite/sobjects/{sobject}/{id_field}")
    async def upsert_collection(version: str, sobject: str, id_field: str, request: Request) -> Response:
        number = version_of(version)
        if number is None or number < COLLECTIONS_SINCE or sobject not in REQUIRED:
            return errors(404, "NOT_FOUND", MESSAGES[404])
        if not id_field.endswith("__c"):
            return errors(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {id_field}",
            )
        body = await json_body(request, bad_json)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            return errors(400, "INVALID_FIELD", "records is required")
        if len(records) > COLLECTION_LIMIT:
            return errors(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records into this call",
            )
        for item in records:
            problem = _request_level_problem(sobject, item)
            if problem is not None:
                return problem
        all_or_none = bool(body.get("allOrNone"))
        with state.lock:
            seen: set[str] = set()
            checks: list[dict[str, Any] | None] = []
            for item in records:
                key = str(item.get(id_field, "")).lower()
                if key in seen:
                    checks.append(
                        _failure("DUPLICATE_EXTERNAL_ID", "Duplicate external id in this request", [id_field])
                    )
                    continue
                seen.add(key)
                fields = {k: v for k, v in item.items() if k != "attributes"}
                checks.append(_record_problem(vendor(), sobject, id_field, fields))
            if all_or_none and any(c is not None for c in checks):
                rolled_back = _failure(
                    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "Record rolled back because not all records were valid and the request was using "
                    "AllOrNone header",
                    [],
                )
                return JSONResponse([c or rolled_back for c in checks])
            results = [
                problem
                or _upsert(
                    vendor(), sobject, id_field, {k: v for k, v in item.items() if k != "attributes"}, number
                )
                for item, problem in zip(records, checks, strict=True)
            ]
        return JSONResponse(results)

    @api.patch("/services/data/{version}/sobjects/{sobject}/{id_field}/{value}")
    async def upsert_single(
        version: str, sobject: str, id_field: str, value: str, request: Request
    ) -> Response:
        number = version_of(version)
        if number is None or sobject not in REQUIRED or not id_field.endswith("__c"):
            return errors(404, "NOT_FOUND", MESSAGES[404])
        body = await json_body(request, bad_json)
        if not isinstance(body, dict):
            return errors(400, "JSON_PARSER_ERROR", "The request body must be a JSON object.")
        if "Id" in body or id_field in body:
            return errors(
                400, "INVALID_FIELD", "The external id belongs in the URL, not the body.", [id_field]
            )
        problem = _request_level_problem(sobject, {"attributes": {"type": sobject}, **body})
        if problem is not None:
            return problem
        fields = {id_field: value, **body}
        with state.lock:
            failure = _record_problem(vendor(), sobject, id_field, fields)
            if failure is not None:
                first = failure["errors"][0]
                return errors(400, first["statusCode"], first["message"], first["fields"])
            created = _find(vendor(), sobject, id_field, value) is None
            result = _upsert(vendor(), sobject, id_field, fields, number)
        if created:
            return JSONResponse(result, status_code=201)
        if number < COLLECTIONS_SINCE:
            return Response(status_code=204)  # API 45.0 and earlier: an update answers 204, no body
        return JSONResponse(result, status_code=200)

    @api.get("/services/data/{version}/sobjects/{sobject}/{id_field}/{value}")
    async def read_by_external_id(version: str, sobject: str, id_field: str, value: str) -> Response:
        with state.lock:
            found = _find(vendor(), sobject, id_field, value)
            record = dict(vendor().kind(sobject)[found]) if found else None
        if record is None or version_of(version) is None:
            return errors(404, "NOT_FOUND", MESSAGES[404])
        return JSONResponse({"attributes": _attributes(version, sobject, record["Id"]), **record})

    @api.delete("/services/data/{version}/sobjects/{sobject}/{id_field}/{value}")
    async def delete_by_external_id(version: str, sobject: str, id_field: str, value: str) -> Response:
        with state.lock:
            found = _find(vendor(), sobject, id_field, value) if version_of(version) is not None else None
            if found is None:
                return errors(404, "NOT_FOUND", MESSAGES[404])
            record = vendor().kind(sobject).pop(found)
            for name, index in list(vendor().objects.items()):
                if name.startswith(f"{sobject}:"):
                    index.pop(str(record.get(name.split(":", 1)[1], "")).lower(), None)
        return Response(status_code=204)

    @api.get("/services/data/{version}/query")
    async def query(version: str, request: Request) -> Response:
        if version_of(version) is None:
            return errors(404, "NOT_FOUND", MESSAGES[404])
        match = SOQL.match(request.query_params.get("q", ""))
        if match is None:
            return errors(
                400,
                "MALFORMED_QUERY",
                "The sandbox reads SELECT ... FROM X WHERE SystemModstamp > <dateTime>",
            )
        sobject = match.group("object")
        names = [f.strip() for f in match.group("fields").split(",") if f.strip()]
        if sobject not in REQUIRED:
            return errors(400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
        try:
            since = datetime.fromisoformat(match.group("since"))
        except ValueError:
            return errors(
                400,
                "MALFORMED_QUERY",
                "value of filter criterion for field 'SystemModstamp' is not a dateTime",
            )
        if since.tzinfo is None:
            return errors(400, "MALFORMED_QUERY", "a dateTime literal needs a time zone (Z or +hh:mm)")
        with state.lock:
            changed = [
                r for r in vendor().kind(sobject).values() if parse_timestamp(r["SystemModstamp"]) > since
            ]
            changed.sort(key=lambda r: (r["SystemModstamp"], r["Id"]))
            rows = [
                {"attributes": _attributes(version, sobject, r["Id"]), **{n: r.get(n) for n in names}}
                for r in changed
            ]
            locator = f"01g{secrets.token_hex(6)}"
            vendor().kind("cursors")[locator] = {"rows": rows}
        return JSONResponse(_page(version, locator, 0, _batch_size(request)))

    @api.get("/services/data/{version}/query/{cursor}")
    async def query_more(version: str, cursor: str, request: Request) -> Response:
        locator, _, offset = cursor.rpartition("-")
        if not offset.isdigit() or version_of(version) is None:
            return errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        with state.lock:
            if locator not in vendor().kind("cursors"):
                return errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return JSONResponse(_page(version, locator, int(offset), _batch_size(request)))

    def _page(version: str, locator: str, offset: int, size: int) -> dict[str, Any]:
        with state.lock:
            rows = vendor().kind("cursors")[locator]["rows"]
        chunk = rows[offset : offset + size]
        done = offset + size >= len(rows)
        page: dict[str, Any] = {"totalSize": len(rows), "done": done, "records": chunk}
        if not done:
            page["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{offset + size}"
        return page

    router.include_router(api)
    return router


# --------------------------------------------------------------------------- helpers


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """The client id and secret from Basic auth, or from the form as Salesforce also accepts."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        return key, secret
    return form.get("client_id", ""), form.get("client_secret", "")


def _check_assertion(assertion: str, audiences: tuple[str, ...]) -> JSONResponse | None:
    """None when the JWT is signed by the connected app's key for an accepted audience and expires soon."""
    try:
        claims = jwt.decode(
            assertion,
            JWT_PUBLIC_KEY,
            algorithms=["RS256"],
            audience=list(audiences),
            options={"require": ["exp", "iss", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        return oauth_error("invalid_grant", "expired authorization code")
    except jwt.InvalidAudienceError:
        return oauth_error("invalid_grant", "audience is invalid")
    except jwt.InvalidTokenError:
        return oauth_error("invalid_grant", "invalid assertion")
    if claims.get("iss") != CONSUMER_KEY:
        return oauth_error("invalid_client_id", "client identifier invalid")
    if float(claims["exp"]) > time.time() + JWT_MAX_LIFETIME_SECONDS:
        return oauth_error("invalid_grant", "invalid assertion")
    return None


def _attributes(version: str, sobject: str, record_id: str) -> dict[str, str]:
    return {"type": sobject, "url": f"/services/data/{version}/sobjects/{sobject}/{record_id}"}


def _batch_size(request: Request) -> int:
    options = dict(
        part.strip().split("=", 1)
        for part in request.headers.get("sforce-query-options", "").split(",")
        if "=" in part
    )
    try:
        size = int(options.get("batchSize", QUERY_BATCH[1]))
    except ValueError:
        size = QUERY_BATCH[1]
    return min(max(size, QUERY_BATCH[0]), QUERY_BATCH[1])


def _failure(code: str, message: str, fields: list[str]) -> dict[str, Any]:
    return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": fields}]}


def _request_level_problem(sobject: str, item: Any) -> JSONResponse | None:
    """What Salesforce refuses for the whole request: a record of another type, unknown fields, bad dates."""
    if not isinstance(item, dict) or not isinstance(item.get("attributes"), dict):
        return errors(400, "INVALID_FIELD", "Each record needs attributes with its type.")
    if item["attributes"].get("type") != sobject:
        return errors(400, "INVALID_TYPE", "The list can contain objects only of the type in the URI.")
    for name, value in item.items():
        if name == "attributes" or name.endswith(("__c", "__r")) or name in STANDARD_FIELDS[sobject]:
            if name in DATE_FIELDS and value is not None and not _is_date(value):
                return errors(
                    400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of date for field {name}"
                )
            continue
        if name in SYSTEM_FIELDS:
            return errors(
                400, "INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: {name}.", [name]
            )
        if not API_NAME.match(name):
            return errors(400, "JSON_PARSER_ERROR", "Unrecognized field name in the record.")
        return errors(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}")
    return None


def _is_date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def _find(store: VendorState, sobject: str, id_field: str, value: Any) -> str | None:
    found = store.kind(f"{sobject}:{id_field}").get(str(value).lower())
    return None if found is None else str(found["Id"])


def _record_problem(
    store: VendorState, sobject: str, id_field: str, fields: dict[str, Any]
) -> dict[str, Any] | None:
    """The per-record failure Salesforce would report, or None."""
    if fields.get(id_field) in (None, ""):
        return _failure("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{id_field}]", [id_field])
    existing = _find(store, sobject, id_field, fields[id_field])
    current = store.kind(sobject)[existing] if existing else {}
    merged = {**current, **fields}
    missing = [name for name in REQUIRED[sobject] if merged.get(name) in (None, "")]
    if missing:
        return _failure(
            "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
        )
    email = fields.get("Email")
    if email is not None and not looks_like_email(email):
        return _failure("INVALID_EMAIL_ADDRESS", "Email: invalid email address", ["Email"])
    for name, value in fields.items():
        limit = NAME_LENGTHS.get(sobject) if name == "Name" else MAX_LENGTHS.get(name)
        if limit is not None and isinstance(value, str) and len(value) > limit:
            return _failure("STRING_TOO_LONG", f"{name}: data value too large (max length={limit})", [name])
    return None


def _upsert(
    store: VendorState, sobject: str, id_field: str, fields: dict[str, Any], version: float
) -> dict[str, Any]:
    """Create or update by external id; the UpsertResult."""
    key = str(fields[id_field]).lower()
    index = store.kind(f"{sobject}:{id_field}")
    objects = store.kind(sobject)
    now = timestamp()
    found = index.get(key)
    created = found is None
    if found is None:
        record_id = f"{KEY_PREFIXES[sobject]}5g0{int(store.new_id()):09d}AAA"
        objects[record_id] = {"Id": record_id, "CreatedDate": now}
        if sobject in OWNED_OBJECTS:
            objects[record_id]["OwnerId"] = INTEGRATION_USER_ID
        if sobject in ("Contact", "Lead"):
            objects[record_id].update(HasOptedOutOfEmail=False, DoNotCall=False)
        index[key] = {"Id": record_id}
    else:
        record_id = str(found["Id"])
    objects[record_id].update({k: v for k, v in fields.items() if k not in SYSTEM_FIELDS})
    objects[record_id].update(LastModifiedDate=now, SystemModstamp=now)
    # `created` appears in upsert results from API 46.0 on
    result: dict[str, Any] = {"id": record_id, "success": True, "errors": [], "created": created}
    if version < COLLECTIONS_SINCE:
        del result["created"]
    return result
