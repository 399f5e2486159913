"""Per-site options of the Epic FHIR connector, resolved from its settings (`EpicFhirSettings`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from connectors.epic_fhir.panels import PanelWindow
from connectors.epic_fhir.settings import PATIENT_IDENTIFIERS, EpicFhirSettings, PatientIdentifier

DEFAULTS = EpicFhirSettings.model_construct()  # the fields' defaults, read from nothing
DEFAULT_PATIENT_IDENTIFIER_SYSTEM = DEFAULTS.patient_identifier_system
DEFAULT_OBSERVATION_IDENTIFIER_SYSTEM = DEFAULTS.observation_identifier_system
DEFAULT_ASSESSMENT_IDENTIFIER_SYSTEM = DEFAULTS.assessment_identifier_system


@dataclass(frozen=True)
class EpicOptions:
    """How patients are found and created, how our resources are identified, and what is sent."""

    patient_identifier_system: str = DEFAULT_PATIENT_IDENTIFIER_SYSTEM
    observation_identifier_system: str = DEFAULT_OBSERVATION_IDENTIFIER_SYSTEM
    assessment_identifier_system: str = DEFAULT_ASSESSMENT_IDENTIFIER_SYSTEM
    # The identifier system of the site's medical record numbers (users.mrn); None: no MRN lookup.
    mrn_system: str | None = None
    patient_identifiers: tuple[PatientIdentifier, ...] = PATIENT_IDENTIFIERS  # looked up in this order
    match_demographics: bool = False
    create_patients: bool = False
    # Assessment scores as `survey` Observations (there is no LOINC for them: ENNU's own code system).
    assessment_observations: bool = False
    panel_window: PanelWindow = field(default_factory=PanelWindow)
    patient_recheck: timedelta = timedelta(hours=1)  # how soon a person with no Patient is looked up again

    @classmethod
    def from_settings(cls, settings: EpicFhirSettings, *, sandbox: bool) -> EpicOptions:
        """Matching by demographics is off unless a site turns it on; creating patients and sending
        assessment scores are on for the sandbox and off for a real EHR unless a site turns them on."""
        return cls(
            patient_identifier_system=settings.patient_identifier_system,
            observation_identifier_system=settings.observation_identifier_system,
            assessment_identifier_system=settings.assessment_identifier_system,
            mrn_system=settings.mrn_system,
            patient_identifiers=settings.patient_identifiers,
            match_demographics=settings.patient_match_demographics,
            create_patients=sandbox if settings.create_patients is None else settings.create_patients,
            assessment_observations=sandbox
            if settings.assessment_observations is None
            else settings.assessment_observations,
            panel_window=PanelWindow(
                pair=timedelta(seconds=settings.bp_pair_seconds),
                wait=timedelta(seconds=settings.bp_wait_seconds),
                recheck=timedelta(seconds=settings.bp_recheck_seconds),
            ),
            patient_recheck=timedelta(seconds=settings.patient_recheck_seconds),
        )
