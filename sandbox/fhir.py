"""Epic FHIR R4 stand-in: SMART backend token, metadata, Patient, Observation, transaction Bundles."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ennu import local_mode
from sandbox.config import SandboxConfig
from sandbox.state import SandboxState, VendorState
from sandbox.vendor import ErrorBody, iso_now

# Where the stand-in is mounted: the vendor's real paths follow (sandbox.app discovers it by this).
MOUNT = "/fhir"

VENDOR = "fhir"
FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# The sandbox's one registered backend client and its published test key: the product's local mode.
SANDBOX_CLIENT_ID = local_mode.EPIC_CLIENT_ID
SANDBOX_KEY_ID = local_mode.EPIC_KEY_ID
sandbox_private_key_pem = local_mode.local_private_key_pem
sandbox_public_key_pem = local_mode.local_public_key_pem
TOKEN_LIFETIME_SECONDS = 3600
MAX_ASSERTION_SECONDS = 300  # SMART: exp no more than five minutes in the future
CLOCK_LEEWAY_SECONDS = 5
SCOPES_SUPPORTED = (
    "system/Patient.read",
    "system/Patient.write",
    "system/Observation.read",
    "system/Observation.write",
)
OBSERVATION_STATUSES = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
)
GENDERS = frozenset({"male", "female", "other", "unknown"})
LOINC_CODE = re.compile(r"^(\d{1,7})-(\d)$")
RESOURCE_TYPES = ("Patient", "Observation")
REFERENCE = re.compile(r"^(?:.*/)?Patient/([A-Za-z0-9\-.]{1,64})$")


# --------------------------------------------------------------------------- error shapes


def operation_outcome(
    code: str, diagnostics: str, severity: str = "error", expression: str | None = None
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def fhir_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=body, media_type=FHIR_JSON, headers=headers)


ERROR_CODES = {
    400: ("invalid", "the request is invalid"),
    401: ("login", "a valid bearer access token is required"),
    403: ("forbidden", "not allowed"),
    404: ("not-found", "unknown path"),
    405: ("not-supported", "method not supported"),
    413: ("too-costly", "the request body is too large"),
    429: ("throttled", "too many requests"),
}


def error_body(status: int, retry_after: int | None) -> ErrorBody:
    """OperationOutcome for injected failures, limits and unknown paths: throttled for 429, transient 5xx."""
    if status >= 500:
        return operation_outcome("transient", "service unavailable", severity="fatal"), FHIR_JSON, {}
    code, diagnostics = ERROR_CODES.get(status, ("exception", "request failed"))
    return operation_outcome(code, diagnostics), FHIR_JSON, {}


class Unauthorised(Exception):
    """Raised by the bearer-token dependency; the app turns it into a 401 OperationOutcome."""


def unauthorised_response() -> JSONResponse:
    return fhir_response(
        401,
        operation_outcome("login", "a valid bearer access token is required"),
        {"WWW-Authenticate": 'Bearer realm="fhir"'},
    )


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "error_description": description})


@dataclass
class Invalid(Exception):
    """A request or resource the server refuses: HTTP status, issue code and where."""

    status: int
    code: str
    diagnostics: str
    expression: str | None = None

    def response(self) -> JSONResponse:
        return fhir_response(
            self.status, operation_outcome(self.code, self.diagnostics, expression=self.expression)
        )


# --------------------------------------------------------------------------- validation


def _fhirpath(loc: tuple[Any, ...], root: str) -> str:
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validate_structure(resource: Any, root: str) -> None:
    """What the R4 structure definitions say (fhir.resources R4B models); diagnostics without values."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise Invalid(400, "structure", "a resource is a JSON object with a resourceType", root)
    try:
        model = get_fhir_model_class(resource["resourceType"])
    except KeyError:
        raise Invalid(400, "not-supported", "unknown resourceType", f"{root}.resourceType") from None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = _fhirpath(tuple(first["loc"]), root)
        raise Invalid(400, "structure", f"invalid element ({first['type']})", where) from None


def _valid_loinc(code: Any) -> bool:
    match = LOINC_CODE.match(str(code or ""))
    if match is None:
        return False
    total = 0
    for position, char in enumerate(reversed(match.group(1))):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit // 10 + digit % 10
    return (10 - total % 10) % 10 == int(match.group(2))


def _check_loinc_coding(concept: Any, where: str) -> None:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not any(isinstance(c, dict) and c.get("system") == LOINC_SYSTEM for c in codings or []):
        raise Invalid(422, "code-invalid", f"a coding with system {LOINC_SYSTEM} is required", where)
    for coding in codings or []:
        if coding.get("system") == LOINC_SYSTEM and not _valid_loinc(coding.get("code")):
            raise Invalid(422, "code-invalid", "not a valid LOINC code", f"{where}.coding")


def _check_quantity(quantity: Any, where: str) -> None:
    if not isinstance(quantity, dict):
        return
    if quantity.get("system") != UCUM_SYSTEM or not quantity.get("code"):
        raise Invalid(422, "required", f"a quantity needs system {UCUM_SYSTEM} and a UCUM code", where)


def _check_survey_coding(concept: Any, where: str) -> None:
    """A survey (questionnaire score) may be coded in a code system of its own: a system and a code."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not any(isinstance(c, dict) and c.get("system") and c.get("code") for c in codings or []):
        raise Invalid(422, "required", "a coding with a system and a code is required", where)


def check_observation(resource: dict[str, Any], root: str, patient_exists: Callable[[str], bool]) -> None:
    """What a server checks beyond the structure: value sets, terminology systems, resolvable references.

    Results are coded in LOINC; a `survey` Observation may carry another code system (ENNU's scores).
    """
    if resource.get("status") not in OBSERVATION_STATUSES:
        raise Invalid(422, "code-invalid", "status is not in the required value set", f"{root}.status")
    categories = resource.get("category") or []
    codings = [c for cat in categories for c in (cat.get("coding") or [])]
    if not any(c.get("system") == CATEGORY_SYSTEM for c in codings):
        raise Invalid(422, "required", "an observation-category coding is required", f"{root}.category")
    survey = any(c.get("system") == CATEGORY_SYSTEM and c.get("code") == "survey" for c in codings)
    check_coding = _check_survey_coding if survey else _check_loinc_coding
    check_coding(resource.get("code"), f"{root}.code")
    components = resource.get("component") or []
    has_value = any(k.startswith("value") for k in resource) or "dataAbsentReason" in resource
    if not has_value and not components:
        raise Invalid(422, "required", "a value or components are required", f"{root}.value[x]")
    _check_quantity(resource.get("valueQuantity"), f"{root}.valueQuantity")
    for i, component in enumerate(components):
        where = f"{root}.component[{i}]"
        check_coding(component.get("code"), f"{where}.code")
        _check_quantity(component.get("valueQuantity"), f"{where}.valueQuantity")
    for i, reference_range in enumerate(resource.get("referenceRange") or []):
        for bound in ("low", "high"):
            _check_quantity(reference_range.get(bound), f"{root}.referenceRange[{i}].{bound}")
    if not any(k.startswith("effective") for k in resource):
        raise Invalid(422, "required", "effective[x] is required", f"{root}.effective[x]")
    reference = str((resource.get("subject") or {}).get("reference") or "")
    match = REFERENCE.match(reference)
    if match is None:
        raise Invalid(422, "required", "subject must reference a Patient", f"{root}.subject")
    if not patient_exists(match.group(1)):
        raise Invalid(422, "not-found", "the referenced Patient does not exist", f"{root}.subject")


def check_patient(resource: dict[str, Any], root: str) -> None:
    gender = resource.get("gender")
    if gender is not None and gender not in GENDERS:
        raise Invalid(422, "code-invalid", "gender is not in the required value set", f"{root}.gender")


# --------------------------------------------------------------------------- storage


def _token_pair(value: str) -> tuple[str | None, str]:
    """A search token `system|code` (or a bare code)."""
    system, bar, code = value.partition("|")
    return (system, code) if bar else (None, value)


class FhirStore:
    """Patients and Observations of the sandbox, with an identifier index for conditional create.

    Callers hold `state.lock` around every use.
    """

    def __init__(self, vendor: VendorState) -> None:
        self.vendor = vendor

    def resources(self, resource_type: str) -> dict[str, Any]:
        return self.vendor.kind(resource_type)

    def _index(self) -> dict[str, Any]:
        return self.vendor.kind("identifier-index")

    def get(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.resources(resource_type).get(resource_id)
        return found

    def by_identifier(self, resource_type: str, system: str | None, value: str) -> list[dict[str, Any]]:
        if system is not None:
            ids = self._index().get(f"{resource_type}|{system}|{value}", [])
            return [self.resources(resource_type)[i] for i in ids]
        return [
            r
            for r in self.resources(resource_type).values()
            if any(i.get("value") == value for i in r.get("identifier") or [])
        ]

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        resource_type = resource["resourceType"]
        stored = dict(resource)
        stored["id"] = self.vendor.new_id()
        stored["meta"] = {"versionId": "1", "lastUpdated": iso_now()}
        self.resources(resource_type)[stored["id"]] = stored
        self._index_identifiers(stored)
        return stored

    def _index_identifiers(self, stored: dict[str, Any]) -> None:
        for identifier in stored.get("identifier") or []:
            key = f"{stored['resourceType']}|{identifier.get('system')}|{identifier.get('value')}"
            self._index().setdefault(key, []).append(stored["id"])

    def replace(self, current: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
        """A new version of `current` with the content of `resource` (same id, versionId + 1)."""
        self.remove(current)
        stored = dict(resource)
        stored["id"] = current["id"]
        version = int(str((current.get("meta") or {}).get("versionId") or "1")) + 1
        stored["meta"] = {"versionId": str(version), "lastUpdated": iso_now()}
        self.resources(stored["resourceType"])[stored["id"]] = stored
        self._index_identifiers(stored)
        return stored

    def restore(self, previous: dict[str, Any]) -> None:
        """Put back a version that an undone transaction replaced."""
        current = self.get(previous["resourceType"], previous["id"])
        if current is not None:
            self.remove(current)
        self.resources(previous["resourceType"])[previous["id"]] = previous
        self._index_identifiers(previous)

    def remove(self, stored: dict[str, Any]) -> None:
        resource_type = stored["resourceType"]
        self.resources(resource_type).pop(stored["id"], None)
        for identifier in stored.get("identifier") or []:
            key = f"{resource_type}|{identifier.get('system')}|{identifier.get('value')}"
            ids = self._index().get(key, [])
            if stored["id"] in ids:
                ids.remove(stored["id"])

    def search(self, resource_type: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Search with AND semantics over the parameters this stand-in supports."""
        found: list[dict[str, Any]] | None = None
        for name, value in params:
            if name.startswith("_"):
                continue  # _count, _format, ... do not filter
            matches = self._matches(resource_type, name, value)
            found = matches if found is None else [r for r in found if r in matches]
        return list(self.resources(resource_type).values()) if found is None else found

    def _matches(self, resource_type: str, name: str, value: str) -> list[dict[str, Any]]:
        everything = list(self.resources(resource_type).values())
        if name == "identifier":  # a comma separates values any of which may match (FHIR search OR)
            found: list[dict[str, Any]] = []
            for token in value.split(","):
                system, code = _token_pair(token)
                found += [
                    r for r in self.by_identifier(resource_type, system or None, code) if r not in found
                ]
            return found
        if resource_type == "Patient" and name in ("family", "given"):
            wanted = value.strip().lower()

            def names(r: dict[str, Any]) -> list[str]:
                out: list[str] = []
                for human in r.get("name") or []:
                    out += [human.get("family") or ""] if name == "family" else list(human.get("given") or [])
                return [n.lower() for n in out]

            return [r for r in everything if any(n.startswith(wanted) for n in names(r))]
        if resource_type == "Patient" and name == "birthdate":
            return [r for r in everything if r.get("birthDate") == value.removeprefix("eq")]
        if resource_type == "Observation" and name in ("subject", "patient"):
            wanted = value.rsplit("/", 1)[-1]
            return [
                r
                for r in everything
                if str((r.get("subject") or {}).get("reference", "")).endswith(f"Patient/{wanted}")
            ]
        if resource_type == "Observation" and name == "code":
            system, code = _token_pair(value)
            return [
                r
                for r in everything
                if any(
                    c.get("code") == code and (system is None or c.get("system") == system)
                    for c in ((r.get("code") or {}).get("coding") or [])
                )
            ]
        raise Invalid(400, "not-supported", f"search parameter {name} is not supported")


# --------------------------------------------------------------------------- create, conditional create


def _criteria(resource_type: str, criteria: str, what: str = "create") -> tuple[str | None, str]:
    params = parse_qsl(criteria, keep_blank_values=True)
    if len(params) != 1 or params[0][0] != "identifier" or not params[0][1] or "," in params[0][1]:
        raise Invalid(
            400, "not-supported", f"{resource_type} conditional {what} supports one identifier only"
        )
    system, value = _token_pair(params[0][1])
    return system or None, value


def create_resource(
    store: FhirStore, resource: Any, criteria: str | None, root: str, expected_type: str | None = None
) -> tuple[int, dict[str, Any]]:
    """Validate and create (201), or return the one match of the criteria (200); several matches: 412."""
    resource_type = _checked(store, resource, root, expected_type)
    if criteria:
        system, value = _criteria(resource_type, criteria)
        matches = store.by_identifier(resource_type, system, value)
        if len(matches) > 1:
            raise Invalid(412, "duplicate", "the conditional create criteria match several resources", root)
        if matches:
            return 200, matches[0]
    return 201, store.create(resource)


def _checked(store: FhirStore, resource: Any, root: str, expected_type: str | None) -> str:
    validate_structure(resource, root)
    resource_type: str = resource["resourceType"]
    if resource_type not in RESOURCE_TYPES or (expected_type and resource_type != expected_type):
        raise Invalid(400, "not-supported", f"{resource_type} cannot be written here", f"{root}.resourceType")
    if resource_type == "Observation":
        check_observation(resource, root, lambda pid: store.get("Patient", pid) is not None)
    else:
        check_patient(resource, root)
    return resource_type


def update_resource(
    store: FhirStore,
    resource: Any,
    criteria: str | None,
    root: str,
    expected_type: str | None = None,
    resource_id: str | None = None,
) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    """Update by id, or conditionally (`?identifier=`): no match creates (201), one match is replaced
    (200), several refuse (412). Also returns the version replaced, so that a transaction can undo it."""
    resource_type = _checked(store, resource, root, expected_type)
    if resource_id is not None:
        current = store.get(resource_type, resource_id)
        if resource.get("id") != resource_id:
            raise Invalid(400, "invalid", "the resource id must be the id in the URL", f"{root}.id")
        if current is None:
            raise Invalid(404, "not-found", f"{resource_type}/{resource_id} is not known", root)
        return 200, store.replace(current, resource), current
    if not criteria:
        raise Invalid(400, "not-supported", "an update names an id or identifier criteria")
    system, value = _criteria(resource_type, criteria, "update")
    matches = store.by_identifier(resource_type, system, value)
    if len(matches) > 1:
        raise Invalid(412, "duplicate", "the conditional update criteria match several resources", root)
    if matches:
        if resource.get("id") not in (None, matches[0]["id"]):
            raise Invalid(400, "invalid", "the resource id is not the matched resource's", f"{root}.id")
        return 200, store.replace(matches[0], resource), matches[0]
    return 201, store.create({k: v for k, v in resource.items() if k != "id"}), None


def _location(stored: dict[str, Any]) -> str:
    return f"{stored['resourceType']}/{stored['id']}/_history/{stored['meta']['versionId']}"


def _entry_response(status: int, stored: dict[str, Any]) -> dict[str, Any]:
    return {
        "response": {
            "status": "201 Created" if status == 201 else "200 OK",
            "location": _location(stored),
            "etag": f'W/"{stored["meta"]["versionId"]}"',
            "lastModified": stored["meta"]["lastUpdated"],
        }
    }


def _searchset(base: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def capability_statement(token_url: str) -> dict[str, Any]:
    """What this server supports: transactions, batches, conditional create and update, SMART backend auth."""

    def resource(kind: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        return {
            "type": kind,
            "interaction": [{"code": c} for c in ("read", "search-type", "create", "update")],
            "conditionalCreate": True,
            "conditionalUpdate": True,
            "searchParam": [{"name": n, "type": t} for n, t in params],
        }

    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024-01-01",
        "kind": "instance",
        "software": {"name": "ENNU FHIR sandbox", "version": "0.1.0"},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [{"url": "token", "valueUri": token_url}],
                        }
                    ],
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                },
                "resource": [
                    resource(
                        "Patient",
                        [
                            ("identifier", "token"),
                            ("family", "string"),
                            ("given", "string"),
                            ("birthdate", "date"),
                        ],
                    ),
                    resource(
                        "Observation",
                        [
                            ("identifier", "token"),
                            ("subject", "reference"),
                            ("patient", "reference"),
                            ("code", "token"),
                        ],
                    ),
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }


# --------------------------------------------------------------------------- the router


def _origin(request: Request, suffix: str) -> str:
    """The server URL up to the stand-in's mount point, from the URL of this request."""
    url = str(request.url).split("?", 1)[0]
    return url[: -len(suffix)] if suffix and url.endswith(suffix) else url


async def _json_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type not in (FHIR_JSON, "application/json"):
        raise Invalid(415, "not-supported", "send application/fhir+json")
    try:
        return json.loads(await request.body())
    except ValueError:
        raise Invalid(400, "structure", "the body is not JSON") from None


def build_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    router = APIRouter()

    def store() -> FhirStore:
        return FhirStore(state.vendor(VENDOR))

    def token_url(request: Request, suffix: str) -> str:
        return _origin(request, suffix) + "/oauth2/token"

    def fhir_base(request: Request, suffix: str) -> str:
        return _origin(request, suffix) + "/r4"

    def scopes(request: Request) -> frozenset[str]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorised
        with state.lock:
            grant = state.vendor(VENDOR).kind("tokens").get(token)
        if grant is None or grant["expires_at"] <= time.time():
            raise Unauthorised
        return frozenset(grant["scope"].split())

    def allowed(granted: frozenset[str], resource_type: str, access: str) -> bool:
        return bool({f"system/{resource_type}.{access}", f"system/{resource_type}.*", "system/*.*"} & granted)

    def forbidden(resource_type: str, access: str) -> JSONResponse:
        return fhir_response(
            403, operation_outcome("forbidden", f"scope system/{resource_type}.{access} was not granted")
        )

    @router.get("/r4/.well-known/smart-configuration")
    async def smart_configuration(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "token_endpoint": token_url(request, "/r4/.well-known/smart-configuration"),
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384"],
                "grant_types_supported": ["client_credentials"],
                "scopes_supported": list(SCOPES_SUPPORTED),
                "capabilities": ["client-confidential-asymmetric"],
            }
        )

    @router.post("/oauth2/token")
    async def token(request: Request) -> JSONResponse:
        if (
            request.headers.get("content-type", "").split(";")[0].strip()
            != "application/x-www-form-urlencoded"
        ):
            return oauth_error(400, "invalid_request", "the token request is form-encoded")
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        if form.get("grant_type") != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "use client_credentials")
        if form.get("client_assertion_type") != JWT_BEARER or not form.get("client_assertion"):
            return oauth_error(400, "invalid_request", "a jwt-bearer client_assertion is required")
        requested = form.get("scope", "").split()
        if not requested or any(s not in SCOPES_SUPPORTED for s in requested):
            return oauth_error(400, "invalid_scope", "requested scope is not available to this client")
        problem = verify_assertion(state, form["client_assertion"], str(request.url).split("?", 1)[0])
        if problem is not None:
            return oauth_error(401, "invalid_client", problem)
        access_token = uuid.uuid4().hex + uuid.uuid4().hex
        with state.lock:
            state.vendor(VENDOR).kind("tokens")[access_token] = {
                "expires_at": time.time() + TOKEN_LIFETIME_SECONDS,
                "scope": " ".join(requested),
                "client_id": SANDBOX_CLIENT_ID,
            }
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "scope": " ".join(requested),
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    @router.get("/r4/metadata")
    async def metadata(request: Request) -> JSONResponse:
        return fhir_response(200, capability_statement(token_url(request, "/r4/metadata")))

    def refuse_read(resource_type: str, granted: frozenset[str]) -> JSONResponse | None:
        """404 for a resource type we do not serve, 403 without a read scope for it; None to go on."""
        if resource_type not in RESOURCE_TYPES:
            return Invalid(404, "not-supported", "unknown resource type").response()
        if not allowed(granted, resource_type, "read"):
            return forbidden(resource_type, "read")
        return None

    @router.get("/r4/{resource_type}")
    async def search(
        resource_type: str, request: Request, granted: frozenset[str] = Depends(scopes)
    ) -> JSONResponse:
        refused = refuse_read(resource_type, granted)
        if refused is not None:
            return refused
        params = list(parse_qsl(request.url.query, keep_blank_values=True))
        try:
            with state.lock:
                found = store().search(resource_type, params)
        except Invalid as exc:
            return exc.response()
        return fhir_response(200, _searchset(fhir_base(request, f"/r4/{resource_type}"), found))

    @router.get("/r4/{resource_type}/{resource_id}")
    async def read(
        resource_type: str, resource_id: str, granted: frozenset[str] = Depends(scopes)
    ) -> JSONResponse:
        refused = refuse_read(resource_type, granted)
        if refused is not None:
            return refused
        with state.lock:
            found = store().get(resource_type, resource_id)
        if found is None:
            return Invalid(404, "not-found", f"{resource_type}/{resource_id} is not known").response()
        return fhir_response(200, found)

    @router.post("/r4/{resource_type}")
    async def create(
        resource_type: str, request: Request, granted: frozenset[str] = Depends(scopes)
    ) -> Response:
        if resource_type not in RESOURCE_TYPES:
            return Invalid(404, "not-supported", "unknown resource type").response()
        if not allowed(granted, resource_type, "write"):
            return forbidden(resource_type, "write")
        try:
            resource = await _json_body(request)
            with state.lock:
                status, stored = create_resource(
                    store(), resource, request.headers.get("if-none-exist"), resource_type, resource_type
                )
        except Invalid as exc:
            return exc.response()
        base = fhir_base(request, f"/r4/{resource_type}")
        return fhir_response(
            status,
            stored,
            {"Location": f"{base}/{_location(stored)}", "ETag": f'W/"{stored["meta"]["versionId"]}"'},
        )

    @router.put("/r4/{resource_type}")
    async def conditional_update(
        resource_type: str, request: Request, granted: frozenset[str] = Depends(scopes)
    ) -> Response:
        return await _update(resource_type, None, request, granted)

    @router.put("/r4/{resource_type}/{resource_id}")
    async def update(
        resource_type: str, resource_id: str, request: Request, granted: frozenset[str] = Depends(scopes)
    ) -> Response:
        return await _update(resource_type, resource_id, request, granted)

    async def _update(
        resource_type: str, resource_id: str | None, request: Request, granted: frozenset[str]
    ) -> Response:
        if resource_type not in RESOURCE_TYPES:
            return Invalid(404, "not-supported", "unknown resource type").response()
        if not allowed(granted, resource_type, "write"):
            return forbidden(resource_type, "write")
        try:
            resource = await _json_body(request)
            with state.lock:
                status, stored, _ = update_resource(
                    store(), resource, request.url.query, resource_type, resource_type, resource_id
                )
        except Invalid as exc:
            return exc.response()
        suffix = f"/r4/{resource_type}" + (f"/{resource_id}" if resource_id is not None else "")
        base = fhir_base(request, suffix)
        return fhir_response(
            status,
            stored,
            {"Location": f"{base}/{_location(stored)}", "ETag": f'W/"{stored["meta"]["versionId"]}"'},
        )

    @router.post("/r4")
    async def bundle(request: Request, granted: frozenset[str] = Depends(scopes)) -> Response:
        try:
            body = await _json_body(request)
            validate_structure(body, "Bundle")
            if body.get("resourceType") != "Bundle" or body.get("type") not in ("transaction", "batch"):
                raise Invalid(400, "invalid", "POST to the base takes a transaction or batch Bundle")
            entries = body.get("entry") or []
            for i, entry in enumerate(entries):
                resource_type = (entry.get("resource") or {}).get("resourceType", "")
                if _entry_action(entry, resource_type) is None:
                    raise Invalid(
                        400,
                        "not-supported",
                        "entries POST a resource to its type or PUT it to its type?identifier= or id",
                        f"Bundle.entry[{i}].request",
                    )
                if not allowed(granted, resource_type, "write"):
                    return forbidden(resource_type, "write")
        except Invalid as exc:
            return exc.response()
        with state.lock:
            if body["type"] == "transaction":
                return run_transaction(store(), entries)
            return fhir_response(200, run_batch(store(), entries))

    return router


def verify_assertion(state: SandboxState, assertion: str, token_url: str) -> str | None:
    """None when the client assertion is good; otherwise why it is refused (no claim values)."""
    import jwt

    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        return "the client assertion is not a JWT"
    if header.get("alg") != "RS384":
        return "the client assertion must be signed with RS384"
    if header.get("kid") != SANDBOX_KEY_ID:
        return "unknown key id"
    try:
        claims = jwt.decode(
            assertion,
            sandbox_public_key_pem(),
            algorithms=["RS384"],
            audience=token_url,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        return "the client assertion has expired"
    except jwt.InvalidAudienceError:
        return "aud must be the token endpoint URL"
    except jwt.PyJWTError:
        return "the client assertion signature or claims are invalid"
    if claims["iss"] != SANDBOX_CLIENT_ID or claims["sub"] != SANDBOX_CLIENT_ID:
        return "iss and sub must be the registered client id"
    now = time.time()
    if float(claims["exp"]) > now + MAX_ASSERTION_SECONDS + CLOCK_LEEWAY_SECONDS:
        return "exp must be at most five minutes in the future"
    with state.lock:
        seen = state.vendor(VENDOR).kind("assertion-jti")
        for jti, expiry in list(seen.items()):
            if expiry < now:
                del seen[jti]
        if str(claims["jti"]) in seen:
            return "jti was already used"
        seen[str(claims["jti"])] = float(claims["exp"])
    return None


def _criteria_of(entry: dict[str, Any]) -> str | None:
    criteria = (entry.get("request") or {}).get("ifNoneExist")
    return str(criteria) if criteria else None


def _entry_action(entry: dict[str, Any], resource_type: str) -> tuple[str, str | None, str | None] | None:
    """(method, criteria, id) of an entry: POST to its type, PUT to `Type?identifier=…` or `Type/id`."""
    request_part = entry.get("request") or {}
    method, url = request_part.get("method"), str(request_part.get("url") or "")
    if method == "POST" and url == resource_type and resource_type:
        return "POST", _criteria_of(entry), None
    if method == "PUT" and resource_type and url.startswith(f"{resource_type}?"):
        return "PUT", url.partition("?")[2], None
    if method == "PUT" and resource_type and url.startswith(f"{resource_type}/"):
        return "PUT", None, url.partition("/")[2]
    return None


def _run_entry(
    store: FhirStore, entry: dict[str, Any], root: str
) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    resource = entry.get("resource")
    resource_type = str((resource or {}).get("resourceType", "")) if isinstance(resource, dict) else ""
    action = _entry_action(entry, resource_type)
    if action is None:
        raise Invalid(400, "not-supported", "unsupported entry request", root)
    method, criteria, resource_id = action
    if method == "PUT":
        return update_resource(store, resource, criteria, root, resource_id=resource_id)
    status, stored = create_resource(store, resource, criteria, root)
    return status, stored, None


def run_transaction(store: FhirStore, entries: list[dict[str, Any]]) -> JSONResponse:
    """All entries or none: the first refusal undoes what this Bundle created or replaced, and answers."""
    created: list[dict[str, Any]] = []
    replaced: list[dict[str, Any]] = []
    responses = []
    for i, entry in enumerate(entries):
        try:
            status, stored, previous = _run_entry(store, entry, f"Bundle.entry[{i}].resource")
        except Invalid as exc:
            for resource in created:
                store.remove(resource)
            for version in reversed(replaced):
                store.restore(version)
            return exc.response()
        if previous is not None:
            replaced.append(previous)
        elif status == 201:
            created.append(stored)
        responses.append(_entry_response(status, stored))
    return fhir_response(
        200,
        {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "transaction-response",
            "entry": responses,
        },
    )


def run_batch(store: FhirStore, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Each entry on its own: a refused entry answers with its status and OperationOutcome."""
    responses = []
    for i, entry in enumerate(entries):
        try:
            status, stored, _ = _run_entry(store, entry, f"Bundle.entry[{i}].resource")
        except Invalid as exc:
            responses.append(
                {
                    "response": {
                        "status": str(exc.status),
                        "outcome": operation_outcome(exc.code, exc.diagnostics, expression=exc.expression),
                    }
                }
            )
            continue
        responses.append(_entry_response(status, stored))
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "batch-response", "entry": responses}
