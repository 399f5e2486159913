"""Which Patient a person is at the EHR: by MRN, then by our identifier; demographics and creation opt-in."""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.base import Record
from connectors.epic_fhir.errors import TABLE
from connectors.epic_fhir.options import EpicOptions
from connectors.epic_fhir.writes import FHIR_HEADERS, delivery_of, response_json
from connectors.http import VendorHttp
from ennu.models import SyncStatus

FIELD_MRN = "patient.mrn"
FIELD_FAMILY = "patient.family"
FIELD_GIVEN = "patient.given"
FIELD_BIRTH_DATE = "patient.birth_date"
FIELD_GENDER = "patient.gender"
NO_MATCH = "no patient match"
NO_MRN_MATCH = "no patient with the MRN"


# Patients looked up at once (within the client's pool of 10 connections; the EHR's rate limit still
# paces every request).
PARALLEL_LOOKUPS = 8


@dataclass(frozen=True)
class NoPatient:
    """Why a person's results cannot go: a wait (DEFERRED, looked up again at `not_before`) or a failure."""

    status: SyncStatus
    error: str
    not_before: datetime | None = None


class PatientResolver:
    """Finds (or, where a site allows it, creates) each person's Patient, once per connector."""

    def __init__(self, http: VendorHttp, options: EpicOptions, clock: Callable[[], datetime]) -> None:
        self.http = http
        self.options = options
        self.clock = clock
        self._found: dict[int, str] = {}  # host user id -> "Patient/<id>"; misses are not kept
        self._lock = threading.Lock()

    def patients(self, user_ids: set[int], records: Sequence[Record]) -> dict[int, str | NoPatient]:
        """Each user's Patient reference, or why there is none. People not resolved yet are looked up
        side by side (`PARALLEL_LOOKUPS` at once): each costs a search and perhaps a create, and one after
        the other they held a batch of 50 first results for seconds."""
        fields_by_user = {r.user_id: r.fields for r in records if r.user_id is not None}
        found: dict[int, str | NoPatient] = {}
        with self._lock:
            found.update({u: self._found[u] for u in user_ids if u in self._found})
        unknown = sorted(set(user_ids) - set(found))

        def resolve(user_id: int) -> str | NoPatient:
            return self._resolve(user_id, fields_by_user.get(user_id, {}))

        if len(unknown) > 1:
            with ThreadPoolExecutor(min(PARALLEL_LOOKUPS, len(unknown)), "epic-patients") as pool:
                # Each lookup in a copy of this context (the run's logger, the rate limit's accounting).
                futures = [pool.submit(contextvars.copy_context().run, resolve, u) for u in unknown]
                results = [f.result() for f in futures]
        else:
            results = [resolve(u) for u in unknown]
        for user_id, result in zip(unknown, results, strict=True):
            if isinstance(result, str):
                with self._lock:
                    self._found[user_id] = result
            found[user_id] = result
        return found

    def forget(self, user_id: int) -> None:
        """Merged or removed at the EHR: look the person up again next time."""
        with self._lock:
            self._found.pop(user_id, None)

    def our_identifier(self, user_id: int) -> str:
        return f"{self.options.patient_identifier_system}|{user_id}"

    def _search(self, params: dict[str, str]) -> list[str]:
        response = self.http.request("GET", "Patient", params=params)
        body: dict[str, Any] = response.json()
        return [
            f"Patient/{e['resource']['id']}"
            for e in body.get("entry") or []
            if (e.get("resource") or {}).get("resourceType") == "Patient" and e["resource"].get("id")
        ]

    def _tokens(self, user_id: int, fields: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(what, system|value) to look up, in the site's order; the MRN only with a system and a value."""
        mrn = str(fields.get(FIELD_MRN) or "").strip()
        tokens = []
        for kind in self.options.patient_identifiers:
            if kind == "mrn" and self.options.mrn_system and mrn:
                tokens.append(("the MRN", f"{self.options.mrn_system}|{mrn}"))
            elif kind == "ennu":
                tokens.append(("the host user id", self.our_identifier(user_id)))
        return tokens

    def _resolve(self, user_id: int, fields: Mapping[str, Any]) -> str | NoPatient:
        """By each identifier in turn; then by demographics if the site allows it; then a conditional create
        if the site allows it and the person has no MRN (an MRN the EHR does not know is not ours to issue).
        Several matches are never guessed between."""
        for what, token in self._tokens(user_id, fields):
            matches = self._search({"identifier": token})
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                return NoPatient(SyncStatus.FAILED, f"several patients carry {what}")
        if self.options.match_demographics:
            family, given = fields.get(FIELD_FAMILY), fields.get(FIELD_GIVEN)
            birth_date = fields.get(FIELD_BIRTH_DATE)
            if family and given and birth_date:
                matches = self._search(
                    {"family": str(family), "given": str(given), "birthdate": str(birth_date)}
                )
                if len(matches) == 1:
                    return matches[0]
        has_mrn = bool(self.options.mrn_system and str(fields.get(FIELD_MRN) or "").strip())
        if self.options.create_patients and not has_mrn:
            return self._create(user_id, fields)
        return NoPatient(
            SyncStatus.DEFERRED,
            NO_MRN_MATCH if has_mrn else NO_MATCH,
            self.clock() + self.options.patient_recheck,
        )

    def _create(self, user_id: int, fields: Mapping[str, Any]) -> str | NoPatient:
        from fhir.resources.R4B.patient import Patient
        from pydantic import ValidationError

        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": self.options.patient_identifier_system, "value": str(user_id)}],
        }
        family, given = fields.get(FIELD_FAMILY), fields.get(FIELD_GIVEN)
        if family or given:
            resource["name"] = [
                {k: v for k, v in (("family", family), ("given", [given] if given else None)) if v}
            ]
        if fields.get(FIELD_BIRTH_DATE):
            resource["birthDate"] = str(fields[FIELD_BIRTH_DATE])
        if fields.get(FIELD_GENDER):
            resource["gender"] = str(fields[FIELD_GENDER])
        try:
            body = Patient.model_validate(resource).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False)[:3])
            return NoPatient(SyncStatus.REJECTED, f"patient invalid: {where}")
        response = self.http.request(
            "POST",
            "Patient",
            data=json.dumps(body),
            headers={**FHIR_HEADERS, "If-None-Exist": f"identifier={self.our_identifier(user_id)}"},
            allow_statuses=TABLE.expect("refused"),
        )
        delivery = delivery_of(
            response.status_code, response_json(response), response.headers.get("Location")
        )
        if delivery.status in (SyncStatus.CREATED, SyncStatus.UNCHANGED) and delivery.remote_id:
            return delivery.remote_id
        if response.status_code == 412:
            return NoPatient(SyncStatus.FAILED, "several patients carry the host user id")
        refused = delivery.status in (SyncStatus.DEFERRED, SyncStatus.FAILED, SyncStatus.REJECTED)
        return NoPatient(
            delivery.status if refused else SyncStatus.FAILED, delivery.error or "patient not created"
        )
