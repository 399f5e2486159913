"""Epic FHIR's settings (`EPIC_*`): the EHR and its SMART client, how patients are found, what is sent.

Creating patients and sending assessment scores are on for the local stand-in and off for a real EHR
unless a site sets them (`EpicOptions.from_settings`); unset here means "that default".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from connectors.epic_fhir.smart_auth import DEFAULT_SCOPE
from connectors.request_rate import Rate, parse_rate
from connectors.settings import VendorSettings

PatientIdentifier = Literal["mrn", "ennu"]
PATIENT_IDENTIFIERS: tuple[PatientIdentifier, ...] = ("mrn", "ennu")


class EpicFhirSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="EPIC_")
    secrets: ClassVar[dict[str, str]] = {
        "EPIC_PRIVATE_KEY": "the backend client's private signing key (PEM, RS384), or EPIC_PRIVATE_KEY_FILE"
    }

    fhir_base_url: str | None = Field(
        default=None,
        description="The FHIR R4 base URL of the EHR (needed with a key); unset: the local stand-in.",
    )
    client_id: str | None = Field(
        default=None, description="The backend app's client id registered at the EHR (needed with a key)."
    )
    key_id: str | None = Field(
        default=None, description="The `kid` of the signing key the EHR knows (needed with a key)."
    )
    private_key_file: Path | None = Field(
        default=None, description="A file holding the private key (PEM), instead of EPIC_PRIVATE_KEY."
    )
    token_url: str | None = Field(
        default=None,
        description="The SMART token endpoint; unset: discovered from .well-known/smart-configuration.",
    )
    scope: str = Field(
        default=DEFAULT_SCOPE,
        description="Scopes asked for (system/Patient.write is added when patients are created).",
    )
    rate_limit: Rate = Field(
        default=parse_rate("6000/1h"),
        description=(
            "Requests to the EHR shared by every worker; Epic sets no public figure, agree one with the "
            "site's Epic team."
        ),
    )
    patient_identifier_system: str = Field(
        default="urn:ennu:user-id", description="The identifier system of our Patient identifier."
    )
    observation_identifier_system: str = Field(
        default="urn:ennu:biomarker", description="The identifier system of our biomarker Observations."
    )
    assessment_identifier_system: str = Field(
        default="urn:ennu:assessment", description="The identifier system of our assessment Observations."
    )
    mrn_system: str | None = Field(
        default=None,
        description="The identifier system of the site's medical record numbers; unset: no MRN look-up.",
    )
    patient_identifiers: Annotated[tuple[PatientIdentifier, ...], NoDecode] = Field(
        default=",".join(PATIENT_IDENTIFIERS),  # as the variable is written (README); validated to a tuple
        validate_default=True,
        description="The patient identifiers looked up, in this order: mrn and/or ennu, comma-separated.",
    )
    patient_match_demographics: bool = Field(
        default=False,
        description="Match a Patient by family name, given name and birth date when no identifier does.",
    )
    create_patients: bool | None = Field(
        default=None,
        description="Create the Patient of a person the EHR does not know (never one with an MRN); "
        "unset: on for the local stand-in, off for an EHR.",
    )
    assessment_observations: bool | None = Field(
        default=None,
        description="Send assessment scores as survey Observations; unset: on for the local stand-in, "
        "off for an EHR.",
    )
    bp_pair_seconds: int = Field(
        default=300, ge=0, description="Blood-pressure halves measured this close (s) are one panel."
    )
    bp_wait_seconds: int = Field(
        default=900,
        ge=0,
        description="How long (s, from when the host recorded it) a half waits for its partner.",
    )
    bp_recheck_seconds: int = Field(
        default=60, ge=0, description="How soon (s) a waiting blood-pressure half is offered again."
    )
    patient_recheck_seconds: int = Field(
        default=3_600, ge=0, description="How soon (s) a person with no Patient match is looked up again."
    )

    @field_validator("patient_identifiers", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(kind.strip().lower() for kind in value.split(",") if kind.strip())
        if isinstance(value, tuple | list) and (not value or len(set(value)) != len(value)):
            raise ValueError("lists mrn and/or ennu, comma-separated, each once")
        return value
