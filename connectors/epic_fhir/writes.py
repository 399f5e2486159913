"""Writing Observations: what the EHR holds, then one transaction of creates and conditional updates."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import requests

from connectors.epic_fhir.errors import TABLE, issue_code
from connectors.epic_fhir.observations import ObservationDraft
from connectors.errors import RETRYING
from connectors.http import VendorHttp
from ennu.models import SyncStatus

FHIR_JSON = "application/fhir+json"
FHIR_HEADERS = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
ENTRY_INDEX = re.compile(r"Bundle\.entry\[(\d+)\]")
RESOURCE_PATH = re.compile(r"(?:^|/)(Patient|Observation)/([A-Za-z0-9\-.]{1,64})(?:/|$)")
# Identifiers per search (OR-joined with commas); the URL stays far below the 8 KB servers accept.
SEARCH_CHUNK = 40


@dataclass(frozen=True)
class Capabilities:
    """What the server's CapabilityStatement declares, read once."""

    transaction: bool
    conditional_create: bool
    conditional_update: bool = True

    @classmethod
    def from_statement(cls, statement: Mapping[str, Any]) -> Capabilities:
        servers = [r for r in statement.get("rest") or [] if r.get("mode") == "server"]
        transaction = any(i.get("code") == "transaction" for r in servers for i in r.get("interaction") or [])
        observation = [
            res for r in servers for res in r.get("resource") or [] if res.get("type") == "Observation"
        ]
        return cls(
            transaction=transaction,
            conditional_create=any(res.get("conditionalCreate") is True for res in observation),
            conditional_update=any(res.get("conditionalUpdate") is True for res in observation),
        )


@dataclass(frozen=True)
class Delivery:
    """What happened to one Observation (shared by every record it carries)."""

    status: SyncStatus
    remote_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Write:
    """One Observation to write: a create, or an update of the one the EHR holds (`existing_id`)."""

    draft: ObservationDraft
    resource: dict[str, Any]
    method: Literal["create", "update"] = "create"
    existing_id: str | None = None


def remote_id(location: Any, body: Any = None) -> str | None:
    """`Observation/123` from a Location (absolute or relative, with or without `_history`) or a body."""
    match = RESOURCE_PATH.search(str(location or ""))
    if match:
        return f"{match.group(1)}/{match.group(2)}"
    if isinstance(body, dict) and body.get("id") and body.get("resourceType"):
        return f"{body['resourceType']}/{body['id']}"
    return None


def delivery_of(status: int, body: Any, location: Any = None, *, update: bool = False) -> Delivery:
    """Created (201); existing (200: unchanged after a conditional create, updated after an update);
    refused; what the error table calls vendor trouble (a 5xx or 429 entry, a transient issue type)
    waits for the next offer."""
    if status == 201:
        return Delivery(SyncStatus.CREATED, remote_id(location, body))
    if status == 200:
        return Delivery(SyncStatus.UPDATED if update else SyncStatus.UNCHANGED, remote_id(location, body))
    if 200 < status < 300:
        return Delivery(SyncStatus.UPDATED, remote_id(location, body))
    code = issue_code(body)
    error = f"http {status}" + (f" {code}" if code else "")
    if TABLE.action(status, code) in RETRYING:
        return Delivery(SyncStatus.DEFERRED, error=error)
    return Delivery(SyncStatus.FAILED, error=error)


def _entry_status(entry: Mapping[str, Any]) -> int:
    text = str((entry.get("response") or {}).get("status") or "").strip()
    head = text.split(" ", 1)[0]
    return int(head) if head.isdigit() else 0


def response_json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def clinical_content(resource: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes a result clinically the same: code, time, and each value with its unit."""

    def codes(concept: Any) -> tuple[tuple[str, str], ...]:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        return tuple(sorted((str(c.get("system")), str(c.get("code"))) for c in codings or []))

    def value(element: Mapping[str, Any]) -> tuple[Any, ...]:
        quantity = element.get("valueQuantity") or {}
        number = quantity.get("value")
        return (None if number is None else float(number), quantity.get("system"), quantity.get("code"))

    def moment(raw: Any) -> Any:  # a server may write the same instant with +00:00 or with fractions
        try:
            return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            return raw

    components = tuple(sorted((codes(c.get("code")), value(c)) for c in resource.get("component") or []))
    return codes(resource.get("code")), moment(resource.get("effectiveDateTime")), value(resource), components


class ObservationWriter:
    """Looks up what the EHR holds for our identifiers and writes creates and updates in one transaction."""

    def __init__(self, http: VendorHttp) -> None:
        self.http = http

    def held(self, tokens: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The Observations carrying each `system|value` identifier (one search per chunk, OR-joined)."""
        found: dict[str, list[dict[str, Any]]] = {}
        unique = sorted(set(tokens))  # none: no request
        for start in range(0, len(unique), SEARCH_CHUNK):
            part = unique[start : start + SEARCH_CHUNK]
            response = self.http.request(
                "GET", "Observation", params={"identifier": ",".join(part), "_count": str(2 * len(part))}
            )
            body: dict[str, Any] = response.json()
            for entry in body.get("entry") or []:
                resource = entry.get("resource") or {}
                for identifier in resource.get("identifier") or []:
                    token = f"{identifier.get('system')}|{identifier.get('value')}"
                    if token in part:
                        found.setdefault(token, []).append(resource)
        return found

    def _bundle(self, writes: Sequence[Write]) -> str:
        entries = []
        for write in writes:
            if write.method == "update":
                request = {"method": "PUT", "url": f"Observation?identifier={write.draft.search_token}"}
            else:
                request = {"method": "POST", "url": "Observation", "ifNoneExist": write.draft.if_none_exist}
            entries.append(
                {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": write.resource, "request": request}
            )
        return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})

    def send_transaction(self, writes: Sequence[Write]) -> dict[str, Delivery]:
        """One transaction for all; if refused, the entries its OperationOutcome names fail and the rest go
        again in one transaction; a refusal that names no entry is sorted out one Observation at a time."""
        deliveries: dict[str, Delivery] = {}
        pending = list(writes)
        while pending:
            response = self.http.request(
                "POST",
                self.http.base_url,
                data=self._bundle(pending),
                headers=FHIR_HEADERS,
                allow_statuses=TABLE.expect("refused"),
            )
            body = response_json(response)
            if response.status_code < 300:
                entries = (body or {}).get("entry") or []
                for write, entry in zip(pending, entries, strict=False):
                    answer = entry.get("response") or {}
                    deliveries[write.draft.identifier_value] = delivery_of(
                        _entry_status(entry),
                        answer.get("outcome"),
                        answer.get("location"),
                        update=write.method == "update",
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
                    deliveries[pending[0].draft.identifier_value] = refused
                    return deliveries
                deliveries.update(self.send_each(pending, Capabilities(False, True, True)))
                return deliveries
            for index in named:
                deliveries[pending[index].draft.identifier_value] = refused
            pending = [item for index, item in enumerate(pending) if index not in named]
        return deliveries

    def send_each(self, writes: Sequence[Write], capabilities: Capabilities) -> dict[str, Delivery]:
        """One request per Observation: a (conditional) create, or a conditional update where the server
        supports it and an update of the resource the search found where it does not."""
        deliveries: dict[str, Delivery] = {}
        for write in writes:
            headers = dict(FHIR_HEADERS)
            resource, params = write.resource, None
            if write.method == "update" and capabilities.conditional_update:
                method, path, params = "PUT", "Observation", {"identifier": write.draft.search_token}
            elif write.method == "update":
                method, path = "PUT", f"Observation/{write.existing_id}"
                resource = {**resource, "id": write.existing_id}
            else:
                method, path = "POST", "Observation"
                if capabilities.conditional_create:
                    headers["If-None-Exist"] = write.draft.if_none_exist
            response = self.http.request(
                method,
                path,
                data=json.dumps(resource),
                params=params,
                headers=headers,
                allow_statuses=TABLE.expect("refused"),
            )
            deliveries[write.draft.identifier_value] = delivery_of(
                response.status_code,
                response_json(response),
                response.headers.get("Location"),
                update=write.method == "update",
            )
        return deliveries
