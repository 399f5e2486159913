"""Epic FHIR R4: biomarker Observations in one transaction Bundle, conditional create, SMART backend auth."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import urlparse

import requests
from pydantic import SecretStr

from connectors.base import AmbiguousSends, ConnectionCheck, Connector, Outcome, Person, Record
from connectors.endpoint import NotConfigured
from connectors.fhir_observations import ObservationDraft, Rejected, plan_observations
from connectors.http import RETRYABLE_STATUSES, ErrorPolicy, VendorHttp
from connectors.rate_limit import RateLimit
from connectors.smart_auth import DEFAULT_SCOPE, SmartBackendAuth, SmartClient
from ennu.models import SyncStatus
from ennu.secrets import read_secret
from ennu.settings import Settings
from mappings.loinc import LoincTable

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
FHIR_HEADERS = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
SANDBOX_PATH = "fhir/r4"
DEFAULT_PATIENT_IDENTIFIER_SYSTEM = "urn:ennu:user-id"
DEFAULT_OBSERVATION_IDENTIFIER_SYSTEM = "urn:ennu:biomarker"
DEFAULT_REQUESTS_PER_HOUR = 6000
PATIENT_WRITE_SCOPE = "system/Patient.write"
ERASURE_DECISION = "medical record retained (HIPAA); erasure decision recorded"
POLICY = ErrorPolicy()
# Statuses whose OperationOutcome the connector turns into per-record outcomes (403 stays an auth failure).
REFUSED_STATUSES = frozenset({400, 404, 409, 410, 412, 422})
# FHIR issue types under `transient`: the same request may succeed later.
TRANSIENT_CODES = frozenset(
    {"transient", "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled"}
)
ENTRY_INDEX = re.compile(r"Bundle\.entry\[(\d+)\]")
RESOURCE_PATH = re.compile(r"(?:^|/)(Patient|Observation)/([A-Za-z0-9\-.]{1,64})(?:/|$)")
PATIENT_FIELDS = ("patient.family", "patient.given", "patient.birth_date", "patient.gender")


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return (
        default
        if value is None or value.strip() == ""
        else value.strip().lower() in ("1", "true", "yes", "on")
    )


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class EpicOptions:
    """How patients are found and created and how our resources are identified at the EHR."""

    patient_identifier_system: str = DEFAULT_PATIENT_IDENTIFIER_SYSTEM
    observation_identifier_system: str = DEFAULT_OBSERVATION_IDENTIFIER_SYSTEM
    match_demographics: bool = False
    create_patients: bool = False

    @classmethod
    def from_env(cls, *, sandbox: bool) -> EpicOptions:
        return cls(
            patient_identifier_system=os.environ.get("EPIC_PATIENT_IDENTIFIER_SYSTEM")
            or DEFAULT_PATIENT_IDENTIFIER_SYSTEM,
            observation_identifier_system=os.environ.get("EPIC_OBSERVATION_IDENTIFIER_SYSTEM")
            or DEFAULT_OBSERVATION_IDENTIFIER_SYSTEM,
            match_demographics=_flag("EPIC_PATIENT_MATCH_DEMOGRAPHICS", False),
            create_patients=_flag("EPIC_CREATE_PATIENTS", sandbox),
        )


@dataclass(frozen=True)
class Capabilities:
    """What the server's CapabilityStatement declares, read once."""

    transaction: bool
    conditional_create: bool

    @classmethod
    def from_statement(cls, statement: Mapping[str, Any]) -> Capabilities:
        servers = [r for r in statement.get("rest") or [] if r.get("mode") == "server"]
        transaction = any(i.get("code") == "transaction" for r in servers for i in r.get("interaction") or [])
        conditional = any(
            res.get("type") == "Observation" and res.get("conditionalCreate") is True
            for r in servers
            for res in r.get("resource") or []
        )
        return cls(transaction=transaction, conditional_create=conditional)


@dataclass(frozen=True)
class Delivery:
    """What happened to one Observation (shared by every record it carries)."""

    status: SyncStatus
    remote_id: str | None = None
    error: str | None = None


def issue_code(body: Any) -> str | None:
    """The code of the first error or fatal issue of an OperationOutcome (never its diagnostics)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    issues = [i for i in body.get("issue") or [] if isinstance(i, dict)]
    serious = [i for i in issues if i.get("severity") in ("error", "fatal")] or issues
    code = serious[0].get("code") if serious else None
    return str(code) if code else None


def remote_id(location: Any, body: Any = None) -> str | None:
    """`Observation/123` from a Location (absolute or relative, with or without `_history`) or a body."""
    match = RESOURCE_PATH.search(str(location or ""))
    if match:
        return f"{match.group(1)}/{match.group(2)}"
    if isinstance(body, dict) and body.get("id") and body.get("resourceType"):
        return f"{body['resourceType']}/{body['id']}"
    return None


def delivery_of(status: int, body: Any, location: Any = None) -> Delivery:
    """A created (201), existing (200) or refused resource; transient refusals wait for the drain."""
    if status == 201:
        return Delivery(SyncStatus.CREATED, remote_id(location, body))
    if status == 200:
        return Delivery(SyncStatus.UNCHANGED, remote_id(location, body))
    if 200 < status < 300:
        return Delivery(SyncStatus.UPDATED, remote_id(location, body))
    code = issue_code(body)
    error = f"http {status}" + (f" {code}" if code else "")
    if status in RETRYABLE_STATUSES or code in TRANSIENT_CODES:
        return Delivery(SyncStatus.DEFERRED, error=error)
    return Delivery(SyncStatus.FAILED, error=error)


def _entry_status(entry: Mapping[str, Any]) -> int:
    text = str((entry.get("response") or {}).get("status") or "").strip()
    head = text.split(" ", 1)[0]
    return int(head) if head.isdigit() else 0


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class EpicFhirConnector(Connector):
    """Biomarker Observations for the person's Patient, identified so that none is ever written twice."""

    name: ClassVar[str] = "epic_fhir"
    consent_category: ClassVar[str] = "clinical"
    batch_sizes: ClassVar[dict[str, int]] = {"observations": 100}
    # Conditional create (or search, then create) by the Observation's identifier: never written twice.
    ambiguous_sends: ClassVar[AmbiguousSends] = "idempotent"

    def __init__(
        self,
        http: VendorHttp,
        options: EpicOptions | None = None,
        *,
        table: LoincTable | None = None,
        capabilities: Capabilities | None = None,
    ) -> None:
        self.http = http
        self.options = options or EpicOptions()
        self.table = table
        self._capabilities = capabilities
        self._patients: dict[int, str] = {}  # host user id -> "Patient/<id>", found or created
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        """From EPIC_* environment variables and the EPIC_PRIVATE_KEY secret; the sandbox without a key."""
        key = read_secret("EPIC_PRIVATE_KEY") or _key_from_file(os.environ.get("EPIC_PRIVATE_KEY_FILE"))
        base_url = os.environ.get("EPIC_FHIR_BASE_URL")
        if key is not None:
            client_id, key_id = os.environ.get("EPIC_CLIENT_ID"), os.environ.get("EPIC_KEY_ID")
            if not base_url or not client_id or not key_id:
                raise NotConfigured(
                    "epic_fhir: a private key needs EPIC_FHIR_BASE_URL, EPIC_CLIENT_ID and EPIC_KEY_ID"
                )
            sandbox = False
        else:
            base_url = base_url or f"{settings.sandbox_url.rstrip('/')}/{SANDBOX_PATH}"
            if not _is_loopback(base_url):
                raise NotConfigured(
                    "epic_fhir: no EPIC_PRIVATE_KEY, and the FHIR base is not a loopback sandbox"
                )
            from sandbox.fhir import SANDBOX_CLIENT_ID, SANDBOX_KEY_ID, sandbox_private_key_pem

            logger.info("epic_fhir: no credentials configured, using the sandbox")
            key, client_id, key_id = SecretStr(sandbox_private_key_pem()), SANDBOX_CLIENT_ID, SANDBOX_KEY_ID
            sandbox = True
        options = EpicOptions.from_env(sandbox=sandbox)
        scope = os.environ.get("EPIC_SCOPE") or DEFAULT_SCOPE
        if options.create_patients and PATIENT_WRITE_SCOPE not in scope.split():
            scope = f"{scope} {PATIENT_WRITE_SCOPE}"
        per_hour = int(os.environ.get("EPIC_REQUESTS_PER_HOUR") or DEFAULT_REQUESTS_PER_HOUR)
        rate = RateLimit(cls.name, per_hour) if rate_limited else None
        token_http = VendorHttp(
            cls.name, base_url, timeout=settings.http_timeout_seconds, policy=POLICY, rate_limit=rate
        )
        auth = SmartBackendAuth(
            token_http,
            base_url,
            SmartClient(client_id, key_id, key, scope),
            token_url=os.environ.get("EPIC_TOKEN_URL") or None,
        )
        http = VendorHttp(
            cls.name,
            base_url,
            auth=auth,
            headers={"Accept": FHIR_JSON},
            timeout=settings.http_timeout_seconds,
            policy=POLICY,
            rate_limit=rate,
        )
        return cls(http, options)

    # ------------------------------------------------------------------ surface

    def push(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        if object_name != "observations" or upsert_key != "identifier":
            raise ValueError(f"epic_fhir: unsupported object {object_name!r} by {upsert_key!r}")
        plan = plan_observations(records, self.options.observation_identifier_system, self.table)
        outcomes = {key: Outcome(key, SyncStatus.REJECTED, error=why) for key, why in plan.rejected.items()}
        patients = self._patients_for({d.user_id for d in plan.drafts}, records)
        ready: list[tuple[ObservationDraft, dict[str, Any]]] = []
        for draft in plan.drafts:
            patient = patients[draft.user_id]
            if isinstance(patient, Delivery):
                outcomes.update(
                    {k: Outcome(k, patient.status, error=patient.error) for k in draft.record_keys}
                )
                continue
            try:
                ready.append((draft, draft.resource(patient)))
            except Rejected as exc:
                outcomes.update(
                    {k: Outcome(k, SyncStatus.REJECTED, error=exc.reason) for k in draft.record_keys}
                )
        if ready:
            capabilities = self.capabilities()
            if capabilities.transaction and capabilities.conditional_create:
                deliveries = self._send_transaction(ready)
            else:
                deliveries = self._send_each(ready, capabilities.conditional_create)
            for draft, _ in ready:
                delivery = deliveries.get(draft.identifier_value) or Delivery(
                    SyncStatus.FAILED, error="no result from epic_fhir"
                )
                if delivery.error and "not-found" in delivery.error:
                    self._forget_patient(draft.user_id)  # merged or removed at the EHR: look it up again
                outcomes.update(
                    {
                        k: Outcome(k, delivery.status, remote_id=delivery.remote_id, error=delivery.error)
                        for k in draft.record_keys
                    }
                )
        return [
            outcomes.get(r.record_key)
            or Outcome(r.record_key, SyncStatus.FAILED, error="no result from epic_fhir")
            for r in records
        ]

    def test_connection(self) -> ConnectionCheck:
        """Fetch a token and read the CapabilityStatement (proves credentials, URL and FHIR version)."""
        started = time.monotonic()
        response = self.http.request("GET", "metadata")
        statement: dict[str, Any] = response.json()
        self._capabilities = Capabilities.from_statement(statement)
        detail = (
            f"FHIR {statement.get('fhirVersion', '?')} capability statement read; "
            f"transaction {'yes' if self._capabilities.transaction else 'no'}, "
            f"conditional create {'yes' if self._capabilities.conditional_create else 'no'}"
        )
        return ConnectionCheck(self.name, True, detail, int((time.monotonic() - started) * 1000))

    def erase(self, person: Person) -> Outcome:
        """Medical records are retained (HIPAA): nothing is deleted at the EHR; the decision is recorded."""
        return Outcome(f"user:{person.user_id}", SyncStatus.SKIPPED, error=ERASURE_DECISION)

    def close(self) -> None:
        self.http.close()
        auth = self.http.session.auth
        if isinstance(auth, SmartBackendAuth):
            auth.token_http.close()

    # ------------------------------------------------------------------ capabilities

    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            response = self.http.request("GET", "metadata")
            self._capabilities = Capabilities.from_statement(response.json())
        return self._capabilities

    # ------------------------------------------------------------------ patients

    def _patients_for(self, user_ids: set[int], records: Sequence[Record]) -> dict[int, str | Delivery]:
        """Each user's Patient reference, or why there is none (the user's Observations then fail)."""
        fields_by_user = {r.user_id: r.fields for r in records if r.user_id is not None}
        found: dict[int, str | Delivery] = {}
        for user_id in sorted(user_ids):
            with self._lock:
                cached = self._patients.get(user_id)
            result = cached or self._resolve_patient(user_id, fields_by_user.get(user_id, {}))
            if isinstance(result, str):
                with self._lock:
                    self._patients[user_id] = result
            found[user_id] = result
        return found

    def _forget_patient(self, user_id: int) -> None:
        with self._lock:
            self._patients.pop(user_id, None)

    def _identifier(self, user_id: int) -> str:
        return f"{self.options.patient_identifier_system}|{user_id}"

    def _search_patients(self, params: dict[str, str]) -> list[str]:
        response = self.http.request("GET", "Patient", params=params)
        body: dict[str, Any] = response.json()
        return [
            f"Patient/{e['resource']['id']}"
            for e in body.get("entry") or []
            if (e.get("resource") or {}).get("resourceType") == "Patient" and e["resource"].get("id")
        ]

    def _resolve_patient(self, user_id: int, fields: Mapping[str, Any]) -> str | Delivery:
        """By our identifier; then by MRN (not in the host tables yet); then by demographics if enabled;
        then conditional create if enabled. Several matches are never guessed between."""
        matches = self._search_patients({"identifier": self._identifier(user_id)})
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            return Delivery(SyncStatus.FAILED, error="several patients carry the host user id")
        if self.options.match_demographics:
            family, given = fields.get("patient.family"), fields.get("patient.given")
            birth_date = fields.get("patient.birth_date")
            if family and given and birth_date:
                matches = self._search_patients(
                    {"family": str(family), "given": str(given), "birthdate": str(birth_date)}
                )
                if len(matches) == 1:
                    return matches[0]
        if not self.options.create_patients:
            return Delivery(SyncStatus.FAILED, error="no patient with the host user id")
        return self._create_patient(user_id, fields)

    def _create_patient(self, user_id: int, fields: Mapping[str, Any]) -> str | Delivery:
        from fhir.resources.R4B.patient import Patient
        from pydantic import ValidationError

        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": self.options.patient_identifier_system, "value": str(user_id)}],
        }
        family, given = fields.get("patient.family"), fields.get("patient.given")
        if family or given:
            resource["name"] = [
                {k: v for k, v in (("family", family), ("given", [given] if given else None)) if v}
            ]
        if fields.get("patient.birth_date"):
            resource["birthDate"] = str(fields["patient.birth_date"])
        if fields.get("patient.gender"):
            resource["gender"] = str(fields["patient.gender"])
        try:
            body = Patient.model_validate(resource).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False)[:3])
            return Delivery(SyncStatus.REJECTED, error=f"patient invalid: {where}")
        response = self.http.request(
            "POST",
            "Patient",
            data=json.dumps(body),
            headers={**FHIR_HEADERS, "If-None-Exist": f"identifier={self._identifier(user_id)}"},
            allow_statuses=REFUSED_STATUSES,
        )
        delivery = delivery_of(response.status_code, _json(response), response.headers.get("Location"))
        if delivery.status in (SyncStatus.CREATED, SyncStatus.UNCHANGED) and delivery.remote_id:
            return delivery.remote_id
        if response.status_code == 412:
            return Delivery(SyncStatus.FAILED, error="several patients carry the host user id")
        return delivery if delivery.error else Delivery(SyncStatus.FAILED, error="patient not created")

    # ------------------------------------------------------------------ observations

    def _bundle(self, items: Sequence[tuple[ObservationDraft, dict[str, Any]]]) -> str:
        return json.dumps(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                        "resource": resource,
                        "request": {
                            "method": "POST",
                            "url": "Observation",
                            "ifNoneExist": draft.if_none_exist,
                        },
                    }
                    for draft, resource in items
                ],
            }
        )

    def _send_transaction(self, items: list[tuple[ObservationDraft, dict[str, Any]]]) -> dict[str, Delivery]:
        """One transaction for all; if refused, the entries its OperationOutcome names fail and the rest go
        again in one transaction; a refusal that names no entry is sorted out one Observation at a time."""
        deliveries: dict[str, Delivery] = {}
        pending = list(items)
        while pending:
            response = self.http.request(
                "POST",
                self.http.base_url,
                data=self._bundle(pending),
                headers=FHIR_HEADERS,
                allow_statuses=REFUSED_STATUSES,
            )
            body = _json(response)
            if response.status_code < 300:
                entries = (body or {}).get("entry") or []
                for (draft, _), entry in zip(pending, entries, strict=False):
                    answer = entry.get("response") or {}
                    deliveries[draft.identifier_value] = delivery_of(
                        _entry_status(entry), answer.get("outcome"), answer.get("location")
                    )
                return deliveries
            refused = delivery_of(response.status_code, body)
            named = {
                int(m.group(1))
                for issue in (body or {}).get("issue") or []
                for text in [*(issue.get("expression") or []), *(issue.get("location") or [])]
                if (m := ENTRY_INDEX.search(str(text))) and int(m.group(1)) < len(pending)
            }
            if not named:
                if len(pending) == 1:
                    deliveries[pending[0][0].identifier_value] = refused
                    return deliveries
                deliveries.update(self._send_each(pending, conditional=True))
                return deliveries
            for index in named:
                deliveries[pending[index][0].identifier_value] = refused
            pending = [item for index, item in enumerate(pending) if index not in named]
        return deliveries

    def _send_each(
        self, items: Sequence[tuple[ObservationDraft, dict[str, Any]]], conditional: bool
    ) -> dict[str, Delivery]:
        """One create per Observation: conditional when the server supports it, else search, then create."""
        deliveries: dict[str, Delivery] = {}
        for draft, resource in items:
            headers = dict(FHIR_HEADERS)
            if conditional:
                headers["If-None-Exist"] = draft.if_none_exist
            else:
                search = self.http.request(
                    "GET",
                    "Observation",
                    params={"identifier": f"{draft.identifier_system}|{draft.identifier_value}"},
                )
                existing = [e for e in search.json().get("entry") or [] if e.get("resource")]
                if existing:
                    deliveries[draft.identifier_value] = Delivery(
                        SyncStatus.UNCHANGED, remote_id(None, existing[0]["resource"])
                    )
                    continue
            response = self.http.request(
                "POST",
                "Observation",
                data=json.dumps(resource),
                headers=headers,
                allow_statuses=REFUSED_STATUSES,
            )
            deliveries[draft.identifier_value] = delivery_of(
                response.status_code, _json(response), response.headers.get("Location")
            )
        return deliveries


def _key_from_file(path: str | None) -> SecretStr | None:
    if not path:
        return None
    try:
        return SecretStr(Path(path).read_text())
    except OSError:
        raise NotConfigured("epic_fhir: EPIC_PRIVATE_KEY_FILE is not readable") from None
