"""Epic FHIR R4: biomarker and assessment Observations, corrections, patient matching, SMART backend auth."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import SecretStr

from connectors.base import AmbiguousSends, HttpConnector, ObjectSpec, Outcome, Person, Record
from connectors.endpoint import NoCredentials, NotConfigured, refuse_loopback
from connectors.epic_fhir.errors import TABLE, TOKEN_TABLE
from connectors.epic_fhir.observations import (
    RESULT_FIELDS,
    ObservationDraft,
    Rejected,
    plan_observations,
)
from connectors.epic_fhir.options import EpicOptions
from connectors.epic_fhir.panels import (
    WAITING,
    HalfPlan,
    PanelPartners,
    Waiting,
    choose,
    plan_halves,
    read_partners,
)
from connectors.epic_fhir.patients import NoPatient, PatientResolver
from connectors.epic_fhir.settings import EpicFhirSettings
from connectors.epic_fhir.smart_auth import SmartBackendAuth, SmartClient
from connectors.epic_fhir.surveys import SURVEY_FIELDS, plan_surveys
from connectors.epic_fhir.writes import (
    SEARCH_CHUNK,
    Capabilities,
    Delivery,
    ObservationWriter,
    Write,
    clinical_content,
)
from connectors.http import VendorHttp
from ennu import local_mode
from ennu.models import SyncStatus, utcnow
from ennu.settings import Settings, is_loopback_url
from mappings.loinc import LoincTable, load_loinc_table

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
SANDBOX_PATH = "fhir/r4"
PATIENT_WRITE_SCOPE = "system/Patient.write"
ERASURE_DECISION = "medical record retained (HIPAA); erasure decision recorded"
SURVEYS_OFF = "assessment observations are off for this site (EPIC_ASSESSMENT_OBSERVATIONS)"
NO_RESULT = "no result from epic_fhir"
UPSERT_KEY = "identifier"  # the Observation's identifier (conditional create / update by it)
# The fields the objects' records carry (what observations.py / surveys.py read), as the lint names them:
# by their first part, so `patient` (patients.py: the person, to find or create the Patient) and `score`
# (a category's score, `score.<category>`) stand for their dotted fields.
PERSON = "patient"
OBSERVATION_FIELDS = RESULT_FIELDS | {PERSON}


class EpicFhirConnector(HttpConnector):
    """Observations for the person's Patient, identified so that none is ever written twice; a changed
    result replaces the one the EHR holds (`status: corrected`)."""

    name: ClassVar[str] = "epic_fhir"
    stand_in: ClassVar[str] = "fhir"
    objects: ClassVar[tuple[ObjectSpec, ...]] = (
        ObjectSpec("observations", 100, upsert_keys=(UPSERT_KEY,), fields=OBSERVATION_FIELDS),
        ObjectSpec(
            "surveys",
            100,
            upsert_keys=(UPSERT_KEY,),
            fields=SURVEY_FIELDS | {PERSON},
        ),
    )
    settings_class = EpicFhirSettings
    table = TABLE
    requests_per_record: ClassVar[int] = 2  # at most: a patient look-up and create; writes are batched
    # Conditional create (or search, then create) by the Observation's identifier: never written twice.
    ambiguous_sends: ClassVar[AmbiguousSends] = "idempotent"

    def __init__(
        self,
        http: VendorHttp,
        options: EpicOptions | None = None,
        *,
        loinc: LoincTable | None = None,
        capabilities: Capabilities | None = None,
        partners: PanelPartners | None = None,
        clock: Callable[[], Any] = utcnow,
    ) -> None:
        """`partners` reads the host's other blood-pressure results of a person: reading the host's
        tables is the pipeline's work, so the caller hands the reader in (tasks/host_biomarkers.py does for
        the pipeline's connectors); None: a half pairs only within its batch and with what the EHR holds."""
        super().__init__(http)
        self.options = options or EpicOptions()
        self.loinc = loinc
        self.partners = partners
        self.clock = clock
        self.writer = ObservationWriter(http)
        self.patients = PatientResolver(http, self.options, clock)
        self._capabilities = capabilities

    @classmethod
    def expected_requests(cls, object_name: str, records: int) -> int:
        """A patient look-up and create per record at most (found patients are kept), then per batch one
        search of what the EHR holds per SEARCH_CHUNK identifiers and one transaction."""
        return cls.requests_per_record * records + math.ceil(records / SEARCH_CHUNK) + 1

    @classmethod
    def has_credentials(cls) -> bool:
        """A key as a secret (EPIC_PRIVATE_KEY) or in a file (EPIC_PRIVATE_KEY_FILE)."""
        return super().has_credentials() or EpicFhirSettings.load().private_key_file is not None

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        """From EPIC_* settings and the EPIC_PRIVATE_KEY secret; without a key, the local stand-in in local
        mode, `NoCredentials` in production."""
        own = EpicFhirSettings.load()
        key = EpicFhirSettings.secret("EPIC_PRIVATE_KEY") or _key_from_file(own.private_key_file)
        base_url = own.fhir_base_url
        if key is not None:
            client_id, key_id = own.client_id, own.key_id
            if not base_url or not client_id or not key_id:
                raise NotConfigured(
                    "epic_fhir: a private key needs EPIC_FHIR_BASE_URL, EPIC_CLIENT_ID and EPIC_KEY_ID"
                )
            refuse_loopback(cls.name, base_url)
            sandbox = False
        else:
            if not settings.local:  # the local stand-in and its published key are for local mode only
                raise NoCredentials(cls.name)
            base_url = base_url or f"{settings.sandbox_url.rstrip('/')}/{SANDBOX_PATH}"
            if not is_loopback_url(base_url):
                raise NotConfigured(
                    "epic_fhir: no EPIC_PRIVATE_KEY, and the FHIR base is not a loopback sandbox"
                )
            logger.info("epic_fhir: no credentials configured, using the local stand-in")
            key = SecretStr(local_mode.local_private_key_pem())
            client_id, key_id = local_mode.EPIC_CLIENT_ID, local_mode.EPIC_KEY_ID
            sandbox = True
        options = EpicOptions.from_settings(own, sandbox=sandbox)
        scope = own.scope
        if options.create_patients and PATIENT_WRITE_SCOPE not in scope.split():
            scope = f"{scope} {PATIENT_WRITE_SCOPE}"
        # No retries of its own: a token is fetched within a FHIR request, which is the one retried.
        token_http = cls.client(base_url, table=TOKEN_TABLE, rate=None, retries=0)
        auth = SmartBackendAuth(
            token_http, base_url, SmartClient(client_id, key_id, key, scope), token_url=own.token_url
        )
        http = cls.client(
            base_url,
            auth=auth,
            headers={"Accept": FHIR_JSON},
            rate=own.rate_limit,
            rate_limited=rate_limited,
        )
        return cls(http, options)

    # ------------------------------------------------------------------ surface

    def send(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """Plan the Observations, find the patients, read what the EHR holds, then write what differs.

        Whatever `upsert_key` a mapping names, an Observation is identified by its `identifier`."""
        if object_name == "surveys" and not self.options.assessment_observations:
            return [Outcome(r.record_key, SyncStatus.SKIPPED, error=SURVEYS_OFF) for r in records]
        drafts, halves, rejected = self._plan(object_name, records)
        outcomes = {k: Outcome(k, SyncStatus.REJECTED, error=why) for k, why in rejected.items()}
        patients = self.patients.patients({d.user_id for d in drafts} | {h.user_id for h in halves}, records)
        for user_id, patient in patients.items():
            if isinstance(patient, NoPatient):
                keys = [k for d in drafts if d.user_id == user_id for k in d.record_keys]
                keys += [h.record_key for h in halves if h.user_id == user_id]
                outcomes |= {
                    k: Outcome(k, patient.status, error=patient.error, not_before=patient.not_before)
                    for k in keys
                }
        drafts = [d for d in drafts if isinstance(patients[d.user_id], str)]
        halves = [h for h in halves if isinstance(patients[h.user_id], str)]
        held = self.writer.held(_tokens(drafts, halves))
        held_values = {token.partition("|")[2] for token in held}
        now = self.clock()
        for half in halves:
            choice = choose(half, held_values, now, self.options.panel_window)
            if isinstance(choice, Waiting):
                outcomes[choice.record_key] = Outcome(
                    choice.record_key, SyncStatus.DEFERRED, error=WAITING, not_before=choice.not_before
                )
            else:
                drafts.append(choice)
        for draft, delivery in self._write(_merged(drafts), patients, held):
            if delivery.error and "not-found" in delivery.error:
                self.patients.forget(draft.user_id)
            outcomes |= {
                k: Outcome(k, delivery.status, remote_id=delivery.remote_id, error=delivery.error)
                for k in draft.record_keys
            }
        return [
            outcomes.get(r.record_key) or Outcome(r.record_key, SyncStatus.FAILED, error=NO_RESULT)
            for r in records
        ]

    def _plan(
        self, object_name: str, records: Sequence[Record]
    ) -> tuple[list[ObservationDraft], list[HalfPlan], dict[str, str]]:
        """The Observations of the records, the blood-pressure halves with their partners, and refusals."""
        if object_name == "surveys":
            drafts, rejected = plan_surveys(records, self.options.assessment_identifier_system)
            return drafts, [], rejected
        table = self.loinc or load_loinc_table()
        system, window = self.options.observation_identifier_system, self.options.panel_window
        plan = plan_observations(records, system, table)
        candidates = read_partners(self.partners, plan.halves, table, window)
        return plan.drafts, plan_halves(plan.halves, candidates, table, system, window), plan.rejected

    def check_connection(self) -> str:
        """Fetch a token and read the CapabilityStatement (proves credentials, URL and FHIR version)."""
        response = self.http.request("GET", "metadata")
        statement: dict[str, Any] = response.json()
        self._capabilities = Capabilities.from_statement(statement)
        return (
            f"FHIR {statement.get('fhirVersion', '?')} capability statement read; "
            f"transaction {'yes' if self._capabilities.transaction else 'no'}, "
            f"conditional create {'yes' if self._capabilities.conditional_create else 'no'}, "
            f"conditional update {'yes' if self._capabilities.conditional_update else 'no'}"
        )

    def erase(self, person: Person) -> Outcome:
        """Medical records are retained (HIPAA): nothing is deleted at the EHR; the decision is recorded."""
        return Outcome(f"user:{person.user_id}", SyncStatus.SKIPPED, error=ERASURE_DECISION)

    def close(self) -> None:
        super().close()
        auth = self.http.session.auth
        if isinstance(auth, SmartBackendAuth):
            auth.token_http.close()

    # ------------------------------------------------------------------ capabilities

    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            response = self.http.request("GET", "metadata")
            self._capabilities = Capabilities.from_statement(response.json())
        return self._capabilities

    # ------------------------------------------------------------------ writing

    def _write(
        self,
        drafts: Sequence[ObservationDraft],
        patients: dict[int, str | NoPatient],
        held: dict[str, list[dict[str, Any]]],
    ) -> list[tuple[ObservationDraft, Delivery]]:
        """Creates for what the EHR lacks, `corrected` updates for what changed; the same costs no write."""
        writes: list[Write] = []
        settled: list[tuple[ObservationDraft, Delivery]] = []
        for draft in drafts:
            patient = patients[draft.user_id]
            assert isinstance(patient, str)
            existing = held.get(draft.search_token) or []
            try:
                if not existing:
                    writes.append(Write(draft, draft.resource(patient)))
                    continue
                resource = draft.resource(patient, status="corrected")
                if len(existing) == 1 and clinical_content(existing[0]) == clinical_content(resource):
                    found = f"Observation/{existing[0].get('id')}"
                    settled.append((draft, Delivery(SyncStatus.UNCHANGED, found)))
                    continue
                # Several held: the conditional update lets the server refuse it (412) rather than guess.
                writes.append(Write(draft, resource, "update", existing[0].get("id")))
            except Rejected as exc:
                settled.append((draft, Delivery(SyncStatus.REJECTED, error=exc.reason)))
        if not writes:
            return settled
        capabilities = self.capabilities()
        if capabilities.transaction and capabilities.conditional_create and capabilities.conditional_update:
            deliveries = self.writer.send_transaction(writes)
        else:
            deliveries = self.writer.send_each(writes, capabilities)
        for write in writes:
            delivery = deliveries.get(write.draft.identifier_value) or Delivery(
                SyncStatus.FAILED, error=NO_RESULT
            )
            settled.append((write.draft, delivery))
        return settled


def _tokens(drafts: Sequence[ObservationDraft], halves: Sequence[HalfPlan]) -> list[str]:
    """Every identifier whose Observation decides what to write: the drafts', and for each half its own
    alone, its panel and its partner alone."""
    tokens = [d.search_token for d in drafts]
    for half in halves:
        tokens += [half.alone.search_token] + ([half.panel.search_token] if half.panel else [])
        if half.partner_alone:
            tokens.append(f"{half.alone.identifier_system}|{half.partner_alone}")
    return tokens


def _merged(drafts: Sequence[ObservationDraft]) -> list[ObservationDraft]:
    """One draft per identifier: both halves of a blood-pressure reading share their panel."""
    by_identifier: dict[str, ObservationDraft] = {}
    for draft in drafts:
        known = by_identifier.get(draft.identifier_value)
        if known is None:
            by_identifier[draft.identifier_value] = draft
        else:
            keys = tuple(dict.fromkeys((*known.record_keys, *draft.record_keys)))
            by_identifier[draft.identifier_value] = replace(known, record_keys=keys)
    return list(by_identifier.values())


def _key_from_file(path: Path | None) -> SecretStr | None:
    if path is None:
        return None
    try:
        return SecretStr(path.read_text())
    except OSError:
        raise NotConfigured("epic_fhir: EPIC_PRIVATE_KEY_FILE is not readable") from None
