"""Biomarker results as FHIR R4 Observations (LOINC, UCUM, interpretation, reported precision), checked."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from connectors.base import Record
from mappings.interpretation import INTERPRETATION_SYSTEM, Flag, interpret
from mappings.loinc import LoincEntry, LoincTable, Panel, UnitNotConvertible, load_loinc_table
from mappings.precision import json_number, reported

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
CATEGORY_DISPLAY = {"laboratory": "Laboratory", "vital-signs": "Vital Signs", "survey": "Survey"}
IDENTIFIER_PREFIX = "biomarker-"
# Statuses an Observation of ours may carry: first sent `final`; a changed value after that `corrected`.
SENDABLE_STATUSES = ("final", "corrected", "amended")

# The destination fields of mappings/biomarker.updated/epic_fhir.yaml that this module reads.
FIELD_IDENTIFIER = "identifier"
FIELD_NAME = "biomarker_name"
FIELD_VALUE = "value"
FIELD_DECIMALS = "value_decimals"
FIELD_UNIT = "unit"
FIELD_REFERENCE_LOW = "reference_low"
FIELD_REFERENCE_HIGH = "reference_high"
FIELD_EFFECTIVE = "effective"
FIELD_RECORDED = "recorded_at"
RESULT_FIELDS = frozenset(
    {
        FIELD_IDENTIFIER,
        FIELD_NAME,
        FIELD_VALUE,
        FIELD_DECIMALS,
        FIELD_UNIT,
        FIELD_REFERENCE_LOW,
        FIELD_REFERENCE_HIGH,
        FIELD_EFFECTIVE,
        FIELD_RECORDED,
    }
)


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


def utc_moment(raw: Any, what: str = "effective") -> datetime:
    """An aware UTC datetime; naive times are UTC (SQLite hands them back naive)."""
    if isinstance(raw, str):
        try:
            raw = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise Rejected(f"{what} is not an ISO date-time") from None
    if isinstance(raw, datetime):
        moment = raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
    elif isinstance(raw, date):
        moment = datetime(raw.year, raw.month, raw.day, tzinfo=UTC)
    else:
        raise Rejected(f"{what} is missing")
    return moment.astimezone(UTC)


def fhir_datetime(raw: Any) -> str:
    """A FHIR dateTime with seconds and a zone, in UTC."""
    return utc_moment(raw).isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(raw: Any, what: str, required: bool, decimals: int | None = None) -> Decimal | None:
    """The number as the lab reported it (its decimals given, or read off the stored value)."""
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
    return reported(number, decimals)


def _decimals(raw: Any) -> int | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number == int(number) and 0 <= number <= 6 else None


@dataclass(frozen=True)
class BiomarkerResult:
    """One mapped biomarker row, read from a Record's fields."""

    record_key: str
    user_id: int
    biomarker_id: int
    name: str
    value: Decimal
    unit: str
    reference_low: Decimal | None
    reference_high: Decimal | None
    observed_at: datetime
    recorded_at: datetime | None = None  # when the host recorded it (a blood-pressure half waits from there)
    decimals: int | None = None  # as the host declared them; None: read off the stored value

    @property
    def effective(self) -> str:
        return self.observed_at.isoformat(timespec="seconds").replace("+00:00", "Z")

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
        decimals = _decimals(fields.get(FIELD_DECIMALS))
        value = _number(fields.get(FIELD_VALUE), "value", True, decimals)
        assert value is not None
        recorded = fields.get(FIELD_RECORDED)
        return cls(
            record_key=record.record_key,
            user_id=int(record.user_id),
            biomarker_id=host_id(fields.get(FIELD_IDENTIFIER)),
            name=name,
            value=value,
            unit=unit,
            reference_low=_number(fields.get(FIELD_REFERENCE_LOW), "reference_low", required=False),
            reference_high=_number(fields.get(FIELD_REFERENCE_HIGH), "reference_high", required=False),
            observed_at=utc_moment(fields.get(FIELD_EFFECTIVE)),
            recorded_at=None if recorded is None else utc_moment(recorded, "recorded_at"),
            decimals=decimals,
        )


@dataclass(frozen=True)
class CodedResult:
    """A result in its table entry's UCUM unit, at the precision it was reported with, and its flag."""

    result: BiomarkerResult
    entry: LoincEntry
    value: Decimal
    reference_low: Decimal | None
    reference_high: Decimal | None
    flag: Flag | None


def coded(table: LoincTable, result: BiomarkerResult) -> CodedResult:
    """The result with its LOINC entry, in the entry's unit; Rejected when uncoded or unconvertible."""
    entry = table.entry(result.name)
    if entry is None:
        raise Rejected(f"biomarker {result.name!r} has no LOINC entry in mappings/loinc.yaml")

    def converted(value: Decimal | None, decimals: int | None = None) -> Decimal | None:
        if value is None:
            return None
        as_reported = table.reported_in(entry, float(value), result.unit, decimals)
        return table.convert_reported(entry, as_reported, result.unit, entry.unit)

    try:
        value = converted(result.value, result.decimals)
        assert value is not None
        return CodedResult(
            result,
            entry,
            value,
            converted(result.reference_low),
            converted(result.reference_high),
            interpret(table, entry, result.value, result.unit, result.reference_low, result.reference_high),
        )
    except UnitNotConvertible as exc:
        raise Rejected(str(exc)) from None


def code_results(records: Iterable[Record], table: LoincTable) -> tuple[list[CodedResult], dict[str, str]]:
    """Every record coded, or why not (record key → reason)."""
    results: list[CodedResult] = []
    rejected: dict[str, str] = {}
    for record in records:
        try:
            results.append(coded(table, BiomarkerResult.from_record(record)))
        except Rejected as exc:
            rejected[record.record_key] = exc.reason
    return results, rejected


def quantity(value: Decimal, entry: LoincEntry) -> dict[str, Any]:
    return {"value": json_number(value), "unit": entry.human_unit, "system": UCUM_SYSTEM, "code": entry.unit}


def _reference_range(result: CodedResult) -> list[dict[str, Any]]:
    bounds = {
        name: quantity(value, result.entry)
        for name, value in (("low", result.reference_low), ("high", result.reference_high))
        if value is not None
    }
    return [bounds] if bounds else []


def interpretation(flag: Flag) -> list[dict[str, Any]]:
    return [{"coding": [{"system": INTERPRETATION_SYSTEM, "code": flag.value, "display": flag.display}]}]


def concept(system: str, code: str, display: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": text}


def category(code: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": CATEGORY_SYSTEM, "code": code, "display": CATEGORY_DISPLAY[code]}]}]


def _measured(result: CodedResult) -> dict[str, Any]:
    """The value, its flag and its range: an Observation's or a component's own elements."""
    out: dict[str, Any] = {"valueQuantity": quantity(result.value, result.entry)}
    if result.flag is not None:
        out["interpretation"] = interpretation(result.flag)
    if reference_range := _reference_range(result):
        out["referenceRange"] = reference_range
    return out


@dataclass(frozen=True)
class ObservationDraft:
    """One Observation to send (for one record, or a panel's records), still without subject and status."""

    record_keys: tuple[str, ...]
    user_id: int
    identifier_system: str
    identifier_value: str
    body: dict[str, Any] = field(repr=False)

    @property
    def if_none_exist(self) -> str:
        return f"identifier={self.identifier_system}|{self.identifier_value}"

    @property
    def search_token(self) -> str:
        return f"{self.identifier_system}|{self.identifier_value}"

    def resource(self, patient_reference: str, status: str = "final") -> dict[str, Any]:
        """The Observation for this Patient, validated with fhir.resources and our own server checks."""
        return validated_observation(
            {**self.body, "status": status, "subject": {"reference": patient_reference}}
        )


def single_draft(result: CodedResult, identifier_system: str) -> ObservationDraft:
    """One Observation for one result (a blood-pressure half alone carries its own 8480-6 / 8462-4)."""
    entry = result.entry
    identifier = f"{IDENTIFIER_PREFIX}{result.result.biomarker_id}"
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": identifier_system, "value": identifier}],
        "category": category(entry.category.value),
        "code": concept(LOINC_SYSTEM, entry.loinc, entry.display, entry.label),
        "effectiveDateTime": result.result.effective,
        **_measured(result),
    }
    return ObservationDraft(
        (result.result.record_key,), result.result.user_id, identifier_system, identifier, body
    )


def panel_identifier(members: Sequence[CodedResult]) -> str:
    return IDENTIFIER_PREFIX + "-".join(str(m.result.biomarker_id) for m in members)


def panel_draft(
    panel: Panel, members: Sequence[CodedResult], identifier_system: str, record_keys: Sequence[str] = ()
) -> ObservationDraft:
    """One Observation with a component per member (in the panel's order), each with its own flag."""
    first = members[0].result
    identifier = panel_identifier(members)
    components = [
        {"code": concept(LOINC_SYSTEM, m.entry.loinc, m.entry.display, m.entry.label), **_measured(m)}
        for m in members
    ]
    body = {
        "resourceType": "Observation",
        "identifier": [{"system": identifier_system, "value": identifier}],
        "category": category(panel.category.value),
        "code": concept(LOINC_SYSTEM, panel.loinc, panel.display, panel.label),
        "effectiveDateTime": first.effective,
        "component": components,
    }
    keys = tuple(record_keys) or tuple(m.result.record_key for m in members)
    return ObservationDraft(keys, first.user_id, identifier_system, identifier, body)


@dataclass
class ObservationPlan:
    """The Observations to send, the panel members still to pair, and the records refused (key → reason)."""

    drafts: list[ObservationDraft] = field(default_factory=list)
    halves: list[CodedResult] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


def plan_observations(
    records: Iterable[Record], identifier_system: str, table: LoincTable | None = None
) -> ObservationPlan:
    """Code and convert the records: one draft per result; panel members (blood pressure) to be paired."""
    table = table or load_loinc_table()
    results, rejected = code_results(records, table)
    plan = ObservationPlan(rejected=rejected)
    for result in results:
        if result.entry.panel is None:
            plan.drafts.append(single_draft(result, identifier_system))
        else:
            plan.halves.append(result)
    return plan


def critical_results(records: Iterable[Record], table: LoincTable | None = None) -> list[CodedResult]:
    """The results flagged LL or HH; records that cannot be coded are left to the push to reject."""
    results, _ = code_results(records, table or load_loinc_table())
    return [r for r in results if r.flag is not None and r.flag.critical]


def observation_problems(resource: dict[str, Any]) -> list[str]:
    """What a FHIR server checks beyond the structure: LOINC and UCUM systems, category, subject, time.

    A `survey` Observation (assessment scores) is coded in its own documented code system instead of LOINC.
    """
    problems = []
    survey = any(
        c.get("system") == CATEGORY_SYSTEM and c.get("code") == "survey"
        for cat in resource.get("category") or []
        for c in cat.get("coding") or []
    )

    def coded_ok(concept_: Any) -> bool:
        codings = concept_.get("coding") if isinstance(concept_, dict) else None
        return any(
            c.get("code") and (c.get("system") == LOINC_SYSTEM or (survey and c.get("system")))
            for c in codings or []
        )

    def ucum(value: Any) -> bool:
        return isinstance(value, dict) and value.get("system") == UCUM_SYSTEM and bool(value.get("code"))

    if resource.get("status") not in SENDABLE_STATUSES:
        problems.append("status is not final, corrected or amended")
    if not any(
        c.get("system") == CATEGORY_SYSTEM
        for cat in resource.get("category") or []
        for c in cat.get("coding") or []
    ):
        problems.append("category is missing")
    if not coded_ok(resource.get("code")):
        problems.append("code has no LOINC coding")
    components = resource.get("component") or []
    if components:
        if not all(coded_ok(c.get("code")) and ucum(c.get("valueQuantity")) for c in components):
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
