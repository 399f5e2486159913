"""Biomarker results as FHIR R4 Observations (LOINC, UCUM, category), checked before sending; criticals."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from connectors.base import Record
from mappings.loinc import LoincEntry, LoincTable, Panel, UnitNotConvertible, load_loinc_table

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
CATEGORY_DISPLAY = {"laboratory": "Laboratory", "vital-signs": "Vital Signs"}
IDENTIFIER_PREFIX = "biomarker-"

# The destination fields of mappings/biomarker.updated/epic_fhir.yaml that this module reads.
FIELD_IDENTIFIER = "identifier"
FIELD_NAME = "biomarker_name"
FIELD_VALUE = "value"
FIELD_UNIT = "unit"
FIELD_REFERENCE_LOW = "reference_low"
FIELD_REFERENCE_HIGH = "reference_high"
FIELD_EFFECTIVE = "effective"


class Rejected(ValueError):
    """A result that cannot become a valid Observation; `reason` names fields and codes, never values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def host_id(raw: Any) -> int:
    """The host biomarker id from the mapped field (an int, or 12.0 / "12" after a frame round trip)."""
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise Rejected("identifier is not a host id") from None
    if not math.isfinite(number) or number != int(number) or number <= 0:
        raise Rejected("identifier is not a host id")
    return int(number)


def fhir_datetime(raw: Any) -> str:
    """A FHIR dateTime with seconds and a zone; naive times are UTC (SQLite hands them back naive)."""
    if isinstance(raw, str):
        try:
            raw = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise Rejected("effective is not an ISO date-time") from None
    if isinstance(raw, datetime):
        moment = raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
    elif isinstance(raw, date):
        moment = datetime(raw.year, raw.month, raw.day, tzinfo=UTC)
    else:
        raise Rejected("effective is missing")
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(raw: Any, what: str, required: bool) -> float | None:
    if raw is None or isinstance(raw, bool):
        if required:
            raise Rejected(f"{what} is missing")
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise Rejected(f"{what} is not a number") from None
    if math.isnan(number):
        if required:
            raise Rejected(f"{what} is missing")
        return None
    if math.isinf(number):
        raise Rejected(f"{what} is not a number")
    return number


@dataclass(frozen=True)
class BiomarkerResult:
    """One mapped biomarker row, read from a Record's fields."""

    record_key: str
    user_id: int
    biomarker_id: int
    name: str
    value: float
    unit: str
    reference_low: float | None
    reference_high: float | None
    effective: str

    @classmethod
    def from_record(cls, record: Record) -> BiomarkerResult:
        fields = record.fields
        if record.user_id is None:
            raise Rejected("no host user id")
        name = str(fields.get(FIELD_NAME) or "").strip()
        if not name:
            raise Rejected("biomarker name is missing")
        unit = str(fields.get(FIELD_UNIT) or "").strip()
        if not unit:
            raise Rejected("unit is missing")
        value = _number(fields.get(FIELD_VALUE), "value", required=True)
        assert value is not None
        return cls(
            record_key=record.record_key,
            user_id=int(record.user_id),
            biomarker_id=host_id(fields.get(FIELD_IDENTIFIER)),
            name=name,
            value=value,
            unit=unit,
            reference_low=_number(fields.get(FIELD_REFERENCE_LOW), "reference_low", required=False),
            reference_high=_number(fields.get(FIELD_REFERENCE_HIGH), "reference_high", required=False),
            effective=fhir_datetime(fields.get(FIELD_EFFECTIVE)),
        )


@dataclass(frozen=True)
class CodedResult:
    """A result in its table entry's UCUM unit."""

    result: BiomarkerResult
    entry: LoincEntry
    value: float
    reference_low: float | None
    reference_high: float | None


def coded(table: LoincTable, result: BiomarkerResult) -> CodedResult:
    """The result with its LOINC entry, in the entry's unit; Rejected when uncoded or unconvertible."""
    entry = table.entry(result.name)
    if entry is None:
        raise Rejected(f"biomarker {result.name!r} has no LOINC entry in mappings/loinc.yaml")
    try:
        return CodedResult(
            result,
            entry,
            table.to_table_unit(entry, result.value, result.unit),
            None
            if result.reference_low is None
            else table.to_table_unit(entry, result.reference_low, result.unit),
            None
            if result.reference_high is None
            else table.to_table_unit(entry, result.reference_high, result.unit),
        )
    except UnitNotConvertible as exc:
        raise Rejected(str(exc)) from None


def _quantity(value: float, entry: LoincEntry) -> dict[str, Any]:
    return {"value": value, "unit": entry.human_unit, "system": UCUM_SYSTEM, "code": entry.unit}


def _reference_range(result: CodedResult) -> list[dict[str, Any]]:
    bounds = {
        name: _quantity(value, result.entry)
        for name, value in (("low", result.reference_low), ("high", result.reference_high))
        if value is not None
    }
    return [bounds] if bounds else []


def _concept(loinc: str, display: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC_SYSTEM, "code": loinc, "display": display}], "text": text}


def _category(code: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": CATEGORY_SYSTEM, "code": code, "display": CATEGORY_DISPLAY[code]}]}]


@dataclass(frozen=True)
class ObservationDraft:
    """One Observation to send (for one record, or a panel's records), still without its subject."""

    record_keys: tuple[str, ...]
    user_id: int
    identifier_system: str
    identifier_value: str
    body: dict[str, Any] = field(repr=False)

    @property
    def if_none_exist(self) -> str:
        return f"identifier={self.identifier_system}|{self.identifier_value}"

    def resource(self, patient_reference: str) -> dict[str, Any]:
        """The Observation for this Patient, validated with fhir.resources and our own server checks."""
        return validated_observation({**self.body, "subject": {"reference": patient_reference}})


def single_draft(result: CodedResult, identifier_system: str) -> ObservationDraft:
    entry = result.entry
    identifier = f"{IDENTIFIER_PREFIX}{result.result.biomarker_id}"
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": identifier_system, "value": identifier}],
        "status": "final",
        "category": _category(entry.category.value),
        "code": _concept(entry.loinc, entry.display, entry.label),
        "effectiveDateTime": result.result.effective,
        "valueQuantity": _quantity(result.value, entry),
    }
    if reference_range := _reference_range(result):
        body["referenceRange"] = reference_range
    return ObservationDraft(
        (result.result.record_key,), result.result.user_id, identifier_system, identifier, body
    )


def panel_draft(panel: Panel, members: Sequence[CodedResult], identifier_system: str) -> ObservationDraft:
    """One Observation with a component per member (in the panel's order), e.g. blood pressure."""
    first = members[0].result
    identifier = IDENTIFIER_PREFIX + "-".join(str(m.result.biomarker_id) for m in members)
    components = []
    for member in members:
        component: dict[str, Any] = {
            "code": _concept(member.entry.loinc, member.entry.display, member.entry.label),
            "valueQuantity": _quantity(member.value, member.entry),
        }
        if reference_range := _reference_range(member):
            component["referenceRange"] = reference_range
        components.append(component)
    body = {
        "resourceType": "Observation",
        "identifier": [{"system": identifier_system, "value": identifier}],
        "status": "final",
        "category": _category(panel.category.value),
        "code": _concept(panel.loinc, panel.display, panel.label),
        "effectiveDateTime": first.effective,
        "component": components,
    }
    return ObservationDraft(
        tuple(m.result.record_key for m in members), first.user_id, identifier_system, identifier, body
    )


@dataclass
class ObservationPlan:
    """The Observations to send and the records refused before sending (record key → reason)."""

    drafts: list[ObservationDraft] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


def plan_observations(
    records: Iterable[Record], identifier_system: str, table: LoincTable | None = None
) -> ObservationPlan:
    """Code, convert and group the records: one draft per result, one per complete panel."""
    table = table or load_loinc_table()
    plan = ObservationPlan()
    panels: dict[tuple[str, int, str], list[CodedResult]] = {}
    for record in records:
        try:
            result = coded(table, BiomarkerResult.from_record(record))
        except Rejected as exc:
            plan.rejected[record.record_key] = exc.reason
            continue
        if result.entry.panel is None:
            plan.drafts.append(single_draft(result, identifier_system))
        else:
            key = (result.entry.panel, result.result.user_id, result.result.effective)
            panels.setdefault(key, []).append(result)
    for (panel_name, _, _), members in panels.items():
        panel = table.panels[panel_name]
        by_component = {name: [m for m in members if m.entry.name == name] for name in panel.components}
        counts = [len(found) for found in by_component.values()]
        if min(counts) == 0:
            plan.rejected.update({m.result.record_key: panel.incomplete_reason for m in members})
        elif max(counts) > 1:
            reason = f"several {panel.label} results of one person at one time"
            plan.rejected.update({m.result.record_key: reason for m in members})
        else:
            ordered = [found[0] for found in by_component.values()]
            plan.drafts.append(panel_draft(panel, ordered, identifier_system))
    return plan


def observation_problems(resource: dict[str, Any]) -> list[str]:
    """What a FHIR server checks beyond the structure: LOINC and UCUM systems, category, subject, time."""
    problems = []

    def loinc_coded(concept: Any) -> bool:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        return any(c.get("system") == LOINC_SYSTEM and c.get("code") for c in codings or [])

    def ucum(quantity: Any) -> bool:
        return (
            isinstance(quantity, dict)
            and quantity.get("system") == UCUM_SYSTEM
            and bool(quantity.get("code"))
        )

    if resource.get("status") != "final":
        problems.append("status is not final")
    if not any(
        c.get("system") == CATEGORY_SYSTEM
        for cat in resource.get("category") or []
        for c in cat.get("coding") or []
    ):
        problems.append("category is missing")
    if not loinc_coded(resource.get("code")):
        problems.append("code has no LOINC coding")
    components = resource.get("component") or []
    if components:
        if not all(loinc_coded(c.get("code")) and ucum(c.get("valueQuantity")) for c in components):
            problems.append("a component lacks a LOINC code or a UCUM quantity")
    elif not ucum(resource.get("valueQuantity")):
        problems.append("valueQuantity lacks a UCUM system and code")
    ranges = [r for c in [resource, *components] for r in c.get("referenceRange") or []]
    if not all(ucum(r[b]) for r in ranges for b in ("low", "high") if b in r):
        problems.append("referenceRange lacks UCUM quantities")
    if not str((resource.get("subject") or {}).get("reference") or "").startswith("Patient/"):
        problems.append("subject is not a Patient reference")
    if not resource.get("effectiveDateTime"):
        problems.append("effectiveDateTime is missing")
    if not resource.get("identifier"):
        problems.append("identifier is missing")
    return problems


def validated_observation(resource: dict[str, Any]) -> dict[str, Any]:
    """The Observation as fhir.resources (R4B models) serialises it; Rejected with reasons, never values."""
    from fhir.resources.R4B.observation import Observation
    from pydantic import ValidationError

    try:
        model = Observation.model_validate(resource)
    except ValidationError as exc:
        where = "; ".join(
            ".".join(str(p) for p in e["loc"]) + f" ({e['type']})"
            for e in exc.errors(include_input=False, include_url=False)[:3]
        )
        raise Rejected(f"observation invalid: {where}") from None
    body: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    problems = observation_problems(body)
    if problems:
        raise Rejected("observation invalid: " + "; ".join(problems))
    return body


@dataclass(frozen=True)
class CriticalAlert:
    """A result beyond its critical range. `text` names the marker and the host user id, never the value."""

    record_key: str
    user_id: int
    biomarker: str
    loinc: str
    direction: str  # "low" or "high"
    text: str


def critical_alerts(records: Iterable[Record], table: LoincTable | None = None) -> list[CriticalAlert]:
    """The records whose value (in the table's unit) is below `critical_low` or above `critical_high`.

    Records that cannot be coded or converted raise no alert here: they are rejected by the push.
    """
    table = table or load_loinc_table()
    alerts = []
    for record in records:
        try:
            result = coded(table, BiomarkerResult.from_record(record))
        except Rejected:
            continue
        entry = result.entry
        direction = None
        if entry.critical_low is not None and result.value < entry.critical_low:
            direction = "low"
        elif entry.critical_high is not None and result.value > entry.critical_high:
            direction = "high"
        if direction is None:
            continue
        alerts.append(
            CriticalAlert(
                record_key=record.record_key,
                user_id=result.result.user_id,
                biomarker=entry.name,
                loinc=entry.loinc,
                direction=direction,
                text=f"Critical {entry.label} result for user:{result.result.user_id}: "
                "review it in the clinical record.",
            )
        )
    return alerts
