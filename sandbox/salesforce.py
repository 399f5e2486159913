"""Salesforce REST stand-in: OAuth token (client credentials, JWT bearer), sObject upserts and creates,
relationship references by external id, the Composite resource, query, limits."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
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
KEY_PREFIXES = {
    "Account": "001", "Contact": "003", "Opportunity": "006", "Lead": "00Q", "OpportunityContactRole": "00K",
}  # fmt: skip
REQUIRED = {
    "Account": ("Name",),
    "Contact": ("LastName",),
    "Lead": ("LastName", "Company"),
    "Opportunity": ("Name", "StageName", "CloseDate"),
    "OpportunityContactRole": ("OpportunityId", "ContactId"),
}
# Objects with an external-id field of ours (upserted by it); an OpportunityContactRole is created.
UPSERTABLE = ("Account", "Contact", "Lead", "Opportunity")
# Lookup fields a record may set by Id, or by its relationship name with the target's external id
# (`"Account": {"ENNU_Account_Id__c": "clinic-3"}`): relationship name -> (Id field, target object).
RELATIONSHIPS = {
    "Contact": {"Account": ("AccountId", "Account")},
    "Opportunity": {"Account": ("AccountId", "Account"), "Contact": ("ContactId", "Contact")},
    "OpportunityContactRole": {
        "Opportunity": ("OpportunityId", "Opportunity"),
        "Contact": ("ContactId", "Contact"),
    },
}
# Fields that can be set when a record is created and never changed: Opportunity.ContactId (it makes that
# Contact the primary contact role), OpportunityContactRole.OpportunityId.
CREATE_ONLY = {"Opportunity": ("ContactId",), "OpportunityContactRole": ("OpportunityId",)}
COMPOSITE_LIMIT = 25  # subrequests of one Composite request
COMPOSITE_HEAVY_LIMIT = 5  # of which sObject Collections or query subrequests
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
        "ContactId", "Probability", "NextStep", "OwnerId",
    },
    "OpportunityContactRole": {"OpportunityId", "ContactId", "Role", "IsPrimary"},
}  # fmt: skip
SYSTEM_FIELDS = ("Id", "CreatedDate", "LastModifiedDate", "SystemModstamp")
# A Lead's conversion fields: set by Salesforce when staff convert it (convertLead), never through REST.
CONVERSION_FIELDS = ("IsConverted", "ConvertedContactId", "ConvertedAccountId", "ConvertedDate")
# What a conversion copies from the Lead to its new Contact without any field mapping: the standard fields
# both have. Custom fields only where the org maps them (Setup > Lead > Map Lead Fields).
CONVERTED_STANDARD_FIELDS = (
    "FirstName", "LastName", "Email", "Phone", "MobilePhone", "LeadSource", "Title", "Description",
    "HasOptedOutOfEmail", "DoNotCall", "OwnerId",
)  # fmt: skip
CONVERTED_STATUS = "Closed - Converted"
# The API user's id: a record created through the API is owned by it until someone reassigns it.
INTEGRATION_USER_ID = "0055g00000ENNUAPI"
OWNED_OBJECTS = ("Contact", "Lead", "Opportunity", "Account")
# What a delete takes with it: an Account its Contacts and Opportunities, a Contact or an Opportunity its
# contact roles (child object, its lookup field).
CASCADES = {
    "Account": (("Contact", "AccountId"), ("Opportunity", "AccountId")),
    "Contact": (("OpportunityContactRole", "ContactId"),),
    "Opportunity": (("OpportunityContactRole", "OpportunityId"),),
}
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
# The look-up the connector makes of contact roles: SELECT ... FROM X WHERE <field or relationship.field>
# IN ('a', 'b').
SOQL_IN = re.compile(
    r"^\s*SELECT\s+(?P<fields>[A-Za-z0-9_,.\s]+?)\s+FROM\s+(?P<object>[A-Za-z0-9_]+)"
    r"\s+WHERE\s+(?P<path>[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?)\s+IN\s*\((?P<values>[^)]*)\)\s*$",
    re.IGNORECASE,
)
SOQL_LITERAL = re.compile(r"\s*'((?:[^'\\]|\\.)*)'\s*(?:,|$)")
SUBREQUEST_URL = re.compile(r"^/services/data/(?P<version>v\d{2}\.0)/(?P<rest>[^?]*)(?:\?(?P<query>.*))?$")
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
CONVERTED_LEAD = "CANNOT_UPDATE_CONVERTED_LEAD"
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


class LeadConversion(BaseModel):
    """`POST /salesforce/_sandbox/convert-lead`: staff convert a Lead (convertLead, SOAP or Apex in
    Salesforce): an Account (named after the Lead's Company) and a Contact are created, the Lead is marked
    converted and names them. `mapped_fields`: the custom Lead fields the org maps to the Contact's (Setup >
    Lead > Map Lead Fields); the others stay on the Lead."""

    model_config = ConfigDict(extra="forbid")

    external_id_field: str = Field(default="ENNU_User_Id__c", pattern=r"^[A-Za-z][A-Za-z0-9_]*__c$")
    external_id: str = Field(min_length=1)
    mapped_fields: list[str] = Field(default_factory=list)


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

    @router.post("/_sandbox/convert-lead")
    async def convert_lead(body: LeadConversion) -> Response:
        with state.lock:
            found = _find(vendor(), "Lead", body.external_id_field, body.external_id)
            if found is None:
                return errors(404, "NOT_FOUND", "No Lead with that external id")
            lead = vendor().kind("Lead")[found]
            if lead.get("IsConverted"):
                return errors(400, "INVALID_STATUS", "The Lead is already converted")
            return JSONResponse(_convert(vendor(), lead, body.mapped_fields))

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

    def collection_upsert(version: str, sobject: str, id_field: str, body: Any) -> JSONResponse:
        """sObject Collections upsert: ≤200 records of one type by an external-id field, one result each."""
        number = version_of(version)
        if number is None or number < COLLECTIONS_SINCE or sobject not in UPSERTABLE:
            return errors(404, "NOT_FOUND", MESSAGES[404])
        if not id_field.endswith("__c"):
            return errors(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {id_field}",
            )
        records = body.get("records") if isinstance(body, dict) else None
        refusal = _collection_refusal(sobject, records)
        if refusal is not None:
            return refusal
        assert isinstance(records, list) and isinstance(body, dict)
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
                return JSONResponse([c or _rolled_back() for c in checks])
            results = [
                problem
                or _upsert(
                    vendor(), sobject, id_field, {k: v for k, v in item.items() if k != "attributes"}, number
                )
                for item, problem in zip(records, checks, strict=True)
            ]
        return JSONResponse(results)

    def collection_create(version: str, body: Any) -> JSONResponse:
        """sObject Collections create: ≤200 records (each names its type), one SaveResult each, in order."""
        if version_of(version) is None:
            return errors(404, "NOT_FOUND", MESSAGES[404])
        records = body.get("records") if isinstance(body, dict) else None
        refusal = _collection_refusal(None, records)
        if refusal is not None:
            return refusal
        assert isinstance(records, list) and isinstance(body, dict)
        with state.lock:
            checks = [_create_problem(vendor(), item) for item in records]
            if body.get("allOrNone") and any(c is not None for c in checks):
                return JSONResponse([c or _rolled_back() for c in checks])
            results = [
                problem or _create(vendor(), item["attributes"]["type"], item)
                for item, problem in zip(records, checks, strict=True)
            ]
        return JSONResponse(results)

    def collection_update(version: str, body: Any) -> JSONResponse:
        """sObject Collections update: ≤200 records by Id (each names its type), one SaveResult each."""
        if version_of(version) is None:
            return errors(404, "NOT_FOUND", MESSAGES[404])
        records = body.get("records") if isinstance(body, dict) else None
        refusal = _collection_refusal(
            None, [_without_id(r) for r in records] if isinstance(records, list) else records
        )
        if refusal is not None:
            return refusal
        assert isinstance(records, list) and isinstance(body, dict)
        with state.lock:
            checks = [_update_problem(vendor(), item) for item in records]
            if body.get("allOrNone") and any(c is not None for c in checks):
                return JSONResponse([c or _rolled_back() for c in checks])
            results = [
                problem or _update(vendor(), item) for item, problem in zip(records, checks, strict=True)
            ]
        return JSONResponse(results)

    @api.patch("/services/data/{version}/composite/sobjects")
    async def update_collection(version: str, request: Request) -> Response:
        return collection_update(version, await json_body(request, bad_json))

    @api.delete("/services/data/{version}/sobjects/{sobject}/{record_id}")
    async def delete_by_id(version: str, sobject: str, record_id: str) -> Response:
        with state.lock:
            known = sobject in REQUIRED and version_of(version) is not None
            if not known or record_id not in vendor().kind(sobject):
                return errors(404, "NOT_FOUND", MESSAGES[404])
            _delete(vendor(), sobject, record_id)
        return Response(status_code=204)

    @api.patch("/services/data/{version}/composite/sobjects/{sobject}/{id_field}")
    async def upsert_collection(version: str, sobject: str, id_field: str, request: Request) -> Response:
        return collection_upsert(version, sobject, id_field, await json_body(request, bad_json))

    @api.post("/services/data/{version}/composite/sobjects")
    async def create_collection(version: str, request: Request) -> Response:
        return collection_create(version, await json_body(request, bad_json))

    @api.post("/services/data/{version}/composite")
    async def composite(version: str, request: Request) -> Response:
        """Composite: ≤25 subrequests run in order, ≤5 of them sObject Collections or queries; each
        answers on its own (allOrNone false), in `compositeResponse`."""
        if version_of(version) is None:
            return errors(404, "NOT_FOUND", MESSAGES[404])
        body = await json_body(request, bad_json)
        subrequests = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subrequests, list) or not subrequests:
            return errors(400, "INVALID_FIELD", "compositeRequest is required")
        if body.get("allOrNone"):
            return errors(400, "INVALID_FIELD", "The stand-in runs composite requests with allOrNone false.")
        if len(subrequests) > COMPOSITE_LIMIT:
            return errors(
                400, "LIMIT_EXCEEDED", f"Composite requests can have at most {COMPOSITE_LIMIT} subrequests"
            )
        plan: list[tuple[str, str, str, str, str | None, Any]] = []
        references: set[str] = set()
        for item in subrequests:
            parsed = _subrequest(item)
            if isinstance(parsed, JSONResponse):
                return parsed
            if parsed[0] in references:
                return errors(400, "INVALID_FIELD", f"Duplicate referenceId: {parsed[0]}")
            references.add(parsed[0])
            plan.append(parsed)
        heavy = sum(
            1 for _, _, _, rest, _, _ in plan if rest == "query" or rest.startswith("composite/sobjects")
        )
        if heavy > COMPOSITE_HEAVY_LIMIT:
            return errors(
                400,
                "LIMIT_EXCEEDED",
                f"At most {COMPOSITE_HEAVY_LIMIT} subrequests can be sObject Collections or queries",
            )
        answers = []
        for reference, method, sub_version, rest, query_string, sub_body in plan:
            answer = run_subrequest(method, sub_version, rest, query_string, sub_body)
            answers.append(
                {
                    "body": json.loads(bytes(answer.body)),
                    "httpHeaders": {},
                    "httpStatusCode": answer.status_code,
                    "referenceId": reference,
                }
            )
        return JSONResponse({"compositeResponse": answers})

    def run_subrequest(
        method: str, version: str, rest: str, query_string: str | None, body: Any
    ) -> JSONResponse:
        parts = rest.split("/")
        if method == "PATCH" and len(parts) == 4 and parts[:2] == ["composite", "sobjects"]:
            return collection_upsert(version, parts[2], parts[3], body)
        if method == "POST" and parts == ["composite", "sobjects"]:
            return collection_create(version, body)
        if method == "PATCH" and parts == ["composite", "sobjects"]:
            return collection_update(version, body)
        if method == "GET" and parts in (["query"], ["query", ""]):
            return run_query(version, dict(parse_qsl(query_string or "")).get("q", ""), QUERY_BATCH[1])
        return errors(404, "NOT_FOUND", "The stand-in's composite runs collections and query subrequests.")

    @api.patch("/services/data/{version}/sobjects/{sobject}/{id_field}/{value}")
    async def upsert_single(
        version: str, sobject: str, id_field: str, value: str, request: Request
    ) -> Response:
        number = version_of(version)
        if number is None or sobject not in UPSERTABLE or not id_field.endswith("__c"):
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
            _delete(vendor(), sobject, found)
        return Response(status_code=204)

    @api.get("/services/data/{version}/query")
    async def query(version: str, request: Request) -> Response:
        return run_query(version, request.query_params.get("q", ""), _batch_size(request))

    def run_query(version: str, soql: str, batch_size: int) -> JSONResponse:
        """The two SOQL shapes the hub sends: changes since a SystemModstamp, and records IN a list."""
        if version_of(version) is None:
            return errors(404, "NOT_FOUND", MESSAGES[404])
        listed = SOQL_IN.match(soql)
        match = listed or SOQL.match(soql)
        if match is None:
            return errors(
                400,
                "MALFORMED_QUERY",
                "The sandbox reads SELECT ... FROM X WHERE SystemModstamp > <dateTime> or WHERE f IN ('a')",
            )
        sobject = match.group("object")
        names = [f.strip() for f in match.group("fields").split(",") if f.strip()]
        if sobject not in REQUIRED:
            return errors(400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
        with state.lock:
            if listed is not None:
                values = _soql_values(listed.group("values"))
                if values is None:
                    return errors(400, "MALFORMED_QUERY", "IN takes a list of quoted values")
                path = listed.group("path")
                wanted = {v.lower() for v in values}
                chosen = [
                    r
                    for r in vendor().kind(sobject).values()
                    if str(_path_value(vendor(), sobject, r, path)).lower() in wanted
                ]
                chosen.sort(key=lambda r: r["Id"])
            else:
                try:
                    since = datetime.fromisoformat(match.group("since"))
                except ValueError:
                    return errors(
                        400,
                        "MALFORMED_QUERY",
                        "value of filter criterion for field 'SystemModstamp' is not a dateTime",
                    )
                if since.tzinfo is None:
                    return errors(
                        400, "MALFORMED_QUERY", "a dateTime literal needs a time zone (Z or +hh:mm)"
                    )
                chosen = [
                    r for r in vendor().kind(sobject).values() if parse_timestamp(r["SystemModstamp"]) > since
                ]
                chosen.sort(key=lambda r: (r["SystemModstamp"], r["Id"]))
            rows = [_row(vendor(), version, sobject, r, names) for r in chosen]
            if len(rows) <= batch_size:  # one page: no query locator is kept
                return JSONResponse({"totalSize": len(rows), "done": True, "records": rows})
            locator = f"01g{secrets.token_hex(6)}"
            vendor().kind("cursors")[locator] = {"rows": rows}
        return JSONResponse(_page(version, locator, 0, batch_size))

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
        if name in RELATIONSHIPS.get(sobject, {}) or name.endswith("__r"):
            if not _is_reference(value):
                return errors(
                    400,
                    "INVALID_FIELD",
                    f'A relationship {name} takes one external-id field of its object: {{"X__c": value}}',
                    [name],
                )
            continue
        if name == "attributes" or name.endswith("__c") or name in STANDARD_FIELDS[sobject]:
            if name in DATE_FIELDS and value is not None and not _is_date(value):
                return errors(
                    400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of date for field {name}"
                )
            continue
        if name in SYSTEM_FIELDS or (sobject == "Lead" and name in CONVERSION_FIELDS):
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
    if current.get("IsConverted"):
        return _failure(CONVERTED_LEAD, "cannot reference converted lead", [])
    return _field_problem(store, sobject, fields, current, creating=existing is None)


def _field_problem(
    store: VendorState, sobject: str, fields: dict[str, Any], current: dict[str, Any], *, creating: bool
) -> dict[str, Any] | None:
    """A record's own failure (references, create-only fields, required fields, e-mail, lengths), or None."""
    for name, (id_field, target) in RELATIONSHIPS.get(sobject, {}).items():
        if name in fields and _resolve(store, target, fields[name]) is None:
            ((key, value),) = ((k, v) for k, v in fields[name].items() if k != "attributes")
            return _failure(
                "INVALID_FIELD",
                f"Foreign key external ID: {value} not found for field {key} in entity {target}",
                [],
            )
        given = fields.get(id_field)
        if given is not None and given not in store.kind(target):
            return _failure(
                "INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {id_field}", [id_field]
            )
    if not creating:
        relationship_of = {v[0]: k for k, v in RELATIONSHIPS.get(sobject, {}).items()}
        for name in CREATE_ONLY.get(sobject, ()):
            if name in fields or relationship_of.get(name) in fields:
                return _failure(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {name}. Please check the security settings of this "
                    "field and verify that it is read/write for your profile or permission set.",
                    [name],
                )
    merged = {**current, **_with_ids(store, sobject, fields)}
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
        if sobject == "Lead":
            objects[record_id].update(
                dict.fromkeys(CONVERSION_FIELDS), IsConverted=False, Status="Open - Not Contacted"
            )
        index[key] = {"Id": record_id}
    else:
        record_id = str(found["Id"])
    values = _with_ids(store, sobject, fields)
    objects[record_id].update({k: v for k, v in values.items() if k not in SYSTEM_FIELDS})
    objects[record_id].update(LastModifiedDate=now, SystemModstamp=now)
    if created and sobject == "Opportunity" and values.get("ContactId"):
        # ContactId on create makes that Contact the Opportunity's primary contact role.
        _create_role(store, record_id, str(values["ContactId"]), None, True)
    # `created` appears in upsert results from API 46.0 on
    result: dict[str, Any] = {"id": record_id, "success": True, "errors": [], "created": created}
    if version < COLLECTIONS_SINCE:
        del result["created"]
    return result


def _rolled_back() -> dict[str, Any]:
    return _failure(
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "Record rolled back because not all records were valid and the request was using AllOrNone header",
        [],
    )


def _collection_refusal(sobject: str | None, records: Any) -> JSONResponse | None:
    """What refuses a whole collection request: no records, more than 200, a malformed record."""
    if not isinstance(records, list) or not records:
        return errors(400, "INVALID_FIELD", "records is required")
    if len(records) > COLLECTION_LIMIT:
        return errors(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records into this call",
        )
    for item in records:
        kind = sobject
        if kind is None:
            attributes = item.get("attributes") if isinstance(item, dict) else None
            kind = attributes.get("type") if isinstance(attributes, dict) else None
            if kind not in REQUIRED:
                return errors(400, "INVALID_TYPE", "Each record needs attributes with a supported type.")
        problem = _request_level_problem(str(kind), item)
        if problem is not None:
            return problem
    return None


def _is_reference(value: Any) -> bool:
    """`{"ENNU_Account_Id__c": "clinic-3"}` (with or without `attributes`): one external-id field."""
    if not isinstance(value, dict):
        return False
    keys = [k for k in value if k != "attributes"]
    return len(keys) == 1 and keys[0].endswith("__c") and value[keys[0]] not in (None, "")


def _resolve(store: VendorState, target: str, reference: dict[str, Any]) -> str | None:
    """The Id of the record a relationship reference names by external id, or None."""
    ((key, value),) = ((k, v) for k, v in reference.items() if k != "attributes")
    return _find(store, target, key, value)


def _with_ids(store: VendorState, sobject: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Relationship references replaced by the Id fields they stand for (checked before: they resolve)."""
    out = dict(fields)
    for name, (id_field, target) in RELATIONSHIPS.get(sobject, {}).items():
        if name in out:
            out[id_field] = _resolve(store, target, out.pop(name))
    return out


def _create_problem(store: VendorState, item: dict[str, Any]) -> dict[str, Any] | None:
    sobject = item["attributes"]["type"]
    fields = {k: v for k, v in item.items() if k != "attributes"}
    if "Id" in fields:
        return _failure("INVALID_FIELD", "Cannot specify Id in an insert call", ["Id"])
    return _field_problem(store, sobject, fields, {}, creating=True)


def _create(store: VendorState, sobject: str, item: dict[str, Any]) -> dict[str, Any]:
    """Create one record (collections create); the SaveResult."""
    values = _with_ids(store, sobject, {k: v for k, v in item.items() if k != "attributes"})
    if sobject == "OpportunityContactRole":
        record_id = _create_role(
            store,
            str(values["OpportunityId"]),
            str(values["ContactId"]),
            values.get("Role"),
            bool(values.get("IsPrimary")),
        )
    else:
        now = timestamp()
        record_id = f"{KEY_PREFIXES[sobject]}5g0{int(store.new_id()):09d}AAA"
        store.kind(sobject)[record_id] = {
            "Id": record_id,
            "CreatedDate": now,
            "LastModifiedDate": now,
            "SystemModstamp": now,
            **values,
        }
        for key in [k for k in values if k.endswith("__c")]:
            store.kind(f"{sobject}:{key}")[str(values[key]).lower()] = {"Id": record_id}
    return {"id": record_id, "success": True, "errors": []}


def _create_role(store: VendorState, opportunity_id: str, contact_id: str, role: Any, primary: bool) -> str:
    """An OpportunityContactRole; a primary one makes every other role of that Opportunity not primary."""
    roles = store.kind("OpportunityContactRole")
    if primary:
        for other in roles.values():
            if other["OpportunityId"] == opportunity_id:
                other["IsPrimary"] = False
    now = timestamp()
    record_id = f"{KEY_PREFIXES['OpportunityContactRole']}5g0{int(store.new_id()):09d}AAA"
    roles[record_id] = {
        "Id": record_id, "OpportunityId": opportunity_id, "ContactId": contact_id, "Role": role,
        "IsPrimary": primary, "CreatedDate": now, "LastModifiedDate": now, "SystemModstamp": now,
    }  # fmt: skip
    return record_id


def _delete(store: VendorState, sobject: str, record_id: str) -> None:
    """Delete a record and what Salesforce deletes with it (CASCADES), and their external-id index entries."""
    record = store.kind(sobject).pop(record_id)
    for name, index in list(store.objects.items()):
        if name.startswith(f"{sobject}:"):
            index.pop(str(record.get(name.split(":", 1)[1], "")).lower(), None)
    for child, lookup in CASCADES.get(sobject, ()):
        for child_id in [k for k, r in store.kind(child).items() if r.get(lookup) == record_id]:
            _delete(store, child, child_id)


def _subrequest(item: Any) -> tuple[str, str, str, str, str | None, Any] | JSONResponse:
    """(referenceId, method, version, path after the version, query, body) of a composite subrequest."""
    if not isinstance(item, dict):
        return errors(400, "INVALID_FIELD", "Each subrequest is an object.")
    reference, method, url = item.get("referenceId"), item.get("method"), item.get("url")
    if not isinstance(reference, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", reference):
        return errors(
            400, "INVALID_FIELD", "referenceId is required: letters, digits and _, starting with a letter"
        )
    if method not in ("GET", "POST", "PATCH", "PUT", "DELETE") or not isinstance(url, str):
        return errors(400, "INVALID_FIELD", "Each subrequest needs a method and a url.")
    match = SUBREQUEST_URL.match(url)
    if match is None:
        return errors(400, "INVALID_FIELD", "A subrequest url starts with /services/data/vXX.X/.")
    if method == "GET" and "body" in item:
        return errors(400, "INVALID_FIELD", "A GET subrequest has no body.")
    return (
        reference,
        method,
        match.group("version"),
        match.group("rest"),
        match.group("query"),
        item.get("body"),
    )


def _soql_values(text: str) -> list[str] | None:
    values: list[str] = []
    position = 0
    while position < len(text):
        match = SOQL_LITERAL.match(text, position)
        if match is None:
            return None
        values.append(re.sub(r"\\(.)", r"\1", match.group(1)))
        position = match.end()
    return values or None


def _path_value(store: VendorState, sobject: str, record: dict[str, Any], path: str) -> Any:
    """A field of the record, or `Relationship.Field` of the record its lookup points at."""
    head, _, tail = path.partition(".")
    if not tail:
        return record.get(head)
    lookup = RELATIONSHIPS.get(sobject, {}).get(head)
    if lookup is None:
        return None
    parent = store.kind(lookup[1]).get(record.get(lookup[0]) or "")
    return None if parent is None else parent.get(tail)


def _row(
    store: VendorState, version: str, sobject: str, record: dict[str, Any], names: list[str]
) -> dict[str, Any]:
    """A query row: its attributes, each plain field, and `Relationship.Field` as a nested record."""
    row: dict[str, Any] = {"attributes": _attributes(version, sobject, record["Id"])}
    for name in names:
        head, _, tail = name.partition(".")
        if not tail:
            row[name] = record.get(name)
            continue
        lookup = RELATIONSHIPS.get(sobject, {}).get(head)
        parent = store.kind(lookup[1]).get(record.get(lookup[0]) or "") if lookup else None
        if lookup is None or parent is None:
            row[head] = None
            continue
        nested = row.get(head) or {"attributes": _attributes(version, lookup[1], parent["Id"])}
        nested[tail] = parent.get(tail)
        row[head] = nested
    return row


def _without_id(item: Any) -> Any:
    """A record of a collection update as the request-level checks read it: its Id aside."""
    return {k: v for k, v in item.items() if k != "Id"} if isinstance(item, dict) else item


def _update_problem(store: VendorState, item: dict[str, Any]) -> dict[str, Any] | None:
    """What refuses one record of a collection update: no Id or an unknown one, a converted Lead, a value
    of a unique external-id field another record has, or its fields (`_field_problem`)."""
    sobject = item["attributes"]["type"]
    record_id = item.get("Id")
    if not isinstance(record_id, str) or not record_id:
        return _failure("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
    current = store.kind(sobject).get(record_id)
    if current is None:
        return _failure("ENTITY_IS_DELETED", "entity is deleted", [])
    if current.get("IsConverted"):
        return _failure(CONVERTED_LEAD, "cannot reference converted lead", [])
    fields = {k: v for k, v in item.items() if k not in ("attributes", "Id")}
    for name in [k for k in fields if k.endswith("__c") and fields[k] not in (None, "")]:
        holder = _find(store, sobject, name, fields[name])
        if holder is not None and holder != record_id:
            return _failure(
                "DUPLICATE_VALUE",
                f"duplicate value found: {name} duplicates value on record with id: {holder}",
                [name],
            )
    return _field_problem(store, sobject, fields, current, creating=False)


def _update(store: VendorState, item: dict[str, Any]) -> dict[str, Any]:
    """Update one record by Id (collections update); its custom fields' index entries follow."""
    sobject = item["attributes"]["type"]
    record = store.kind(sobject)[str(item["Id"])]
    values = _with_ids(store, sobject, {k: v for k, v in item.items() if k not in ("attributes", "Id")})
    for name in [k for k in values if k.endswith("__c")]:
        index = store.kind(f"{sobject}:{name}")
        index.pop(str(record.get(name, "")).lower(), None)
        if values[name] not in (None, ""):
            index[str(values[name]).lower()] = {"Id": record["Id"]}
    now = timestamp()
    record.update(
        {k: v for k, v in values.items() if k not in SYSTEM_FIELDS}, LastModifiedDate=now, SystemModstamp=now
    )
    return {"id": record["Id"], "success": True, "errors": []}


def _convert(store: VendorState, lead: dict[str, Any], mapped_fields: list[str]) -> dict[str, Any]:
    """What Salesforce's lead conversion does: a new Account and Contact, the Lead marked converted."""
    now = timestamp()
    account_id = f"{KEY_PREFIXES['Account']}5g0{int(store.new_id()):09d}AAA"
    store.kind("Account")[account_id] = {
        "Id": account_id, "Name": lead.get("Company") or lead.get("LastName"), "OwnerId": lead.get("OwnerId"),
        "CreatedDate": now, "LastModifiedDate": now, "SystemModstamp": now,
    }  # fmt: skip
    contact_id = f"{KEY_PREFIXES['Contact']}5g0{int(store.new_id()):09d}AAA"
    carried = {name: lead.get(name) for name in CONVERTED_STANDARD_FIELDS if name in lead}
    carried.update({name: lead.get(name) for name in mapped_fields if name.endswith("__c") and name in lead})
    store.kind("Contact")[contact_id] = {
        "Id": contact_id, **carried, "AccountId": account_id,
        "CreatedDate": now, "LastModifiedDate": now, "SystemModstamp": now,
    }  # fmt: skip
    for name in [k for k in carried if k.endswith("__c") and carried[k] not in (None, "")]:
        store.kind(f"Contact:{name}")[str(carried[name]).lower()] = {"Id": contact_id}
    lead.update(
        IsConverted=True,
        ConvertedContactId=contact_id,
        ConvertedAccountId=account_id,
        ConvertedDate=now[:10],
        Status=CONVERTED_STATUS,
        LastModifiedDate=now,
        SystemModstamp=now,
    )
    return {"leadId": lead["Id"], "contactId": contact_id, "accountId": account_id}
