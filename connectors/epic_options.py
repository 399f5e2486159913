"""Per-site options of the Epic FHIR connector, read from EPIC_* variables; a bad value names its variable."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

from connectors.endpoint import NotConfigured
from connectors.fhir_panels import PanelWindow

DEFAULT_PATIENT_IDENTIFIER_SYSTEM = "urn:ennu:user-id"
DEFAULT_OBSERVATION_IDENTIFIER_SYSTEM = "urn:ennu:biomarker"
DEFAULT_ASSESSMENT_IDENTIFIER_SYSTEM = "urn:ennu:assessment"
PATIENT_IDENTIFIERS = ("mrn", "ennu")  # the kinds of patient identifier a site may look up, in its order


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    text = value.strip().lower()
    if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise NotConfigured(f"epic_fhir: {name} is true or false")
    return text in ("1", "true", "yes", "on")


def _seconds(name: str, default: timedelta) -> timedelta:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        seconds = int(value)
    except ValueError:
        raise NotConfigured(f"epic_fhir: {name} is a whole number of seconds") from None
    if seconds < 0:
        raise NotConfigured(f"epic_fhir: {name} is a whole number of seconds")
    return timedelta(seconds=seconds)


def _identifier_kinds(name: str) -> tuple[str, ...]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return PATIENT_IDENTIFIERS
    kinds = tuple(k.strip().lower() for k in value.split(",") if k.strip())
    if not kinds or any(k not in PATIENT_IDENTIFIERS for k in kinds) or len(set(kinds)) != len(kinds):
        raise NotConfigured(f"epic_fhir: {name} lists mrn and/or ennu, comma-separated")
    return kinds


@dataclass(frozen=True)
class EpicOptions:
    """How patients are found and created, how our resources are identified, and what is sent."""

    patient_identifier_system: str = DEFAULT_PATIENT_IDENTIFIER_SYSTEM
    observation_identifier_system: str = DEFAULT_OBSERVATION_IDENTIFIER_SYSTEM
    assessment_identifier_system: str = DEFAULT_ASSESSMENT_IDENTIFIER_SYSTEM
    # The identifier system of the site's medical record numbers (users.mrn); None: no MRN lookup.
    mrn_system: str | None = None
    patient_identifiers: tuple[str, ...] = PATIENT_IDENTIFIERS  # looked up in this order
    match_demographics: bool = False
    create_patients: bool = False
    # Assessment scores as `survey` Observations (there is no LOINC for them: ENNU's own code system).
    assessment_observations: bool = False
    panel_window: PanelWindow = field(default_factory=PanelWindow)
    patient_recheck: timedelta = timedelta(hours=1)  # how soon a person with no Patient is looked up again

    @classmethod
    def from_env(cls, *, sandbox: bool) -> EpicOptions:
        """Matching by demographics is off unless a site turns it on; creating patients and sending
        assessment scores are on for the sandbox and off for a real EHR unless a site turns them on."""
        default_window = PanelWindow()
        return cls(
            patient_identifier_system=os.environ.get("EPIC_PATIENT_IDENTIFIER_SYSTEM")
            or DEFAULT_PATIENT_IDENTIFIER_SYSTEM,
            observation_identifier_system=os.environ.get("EPIC_OBSERVATION_IDENTIFIER_SYSTEM")
            or DEFAULT_OBSERVATION_IDENTIFIER_SYSTEM,
            assessment_identifier_system=os.environ.get("EPIC_ASSESSMENT_IDENTIFIER_SYSTEM")
            or DEFAULT_ASSESSMENT_IDENTIFIER_SYSTEM,
            mrn_system=os.environ.get("EPIC_MRN_SYSTEM") or None,
            patient_identifiers=_identifier_kinds("EPIC_PATIENT_IDENTIFIERS"),
            match_demographics=_flag("EPIC_PATIENT_MATCH_DEMOGRAPHICS", False),
            create_patients=_flag("EPIC_CREATE_PATIENTS", sandbox),
            assessment_observations=_flag("EPIC_ASSESSMENT_OBSERVATIONS", sandbox),
            panel_window=PanelWindow(
                pair=_seconds("EPIC_BP_PAIR_SECONDS", default_window.pair),
                wait=_seconds("EPIC_BP_WAIT_SECONDS", default_window.wait),
                recheck=_seconds("EPIC_BP_RECHECK_SECONDS", default_window.recheck),
            ),
            patient_recheck=_seconds("EPIC_PATIENT_RECHECK_SECONDS", timedelta(hours=1)),
        )
