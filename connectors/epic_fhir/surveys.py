"""Completed assessments as `survey` Observations: overall and category scores coded in ENNU's code system."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from connectors.base import Record
from connectors.epic_fhir.observations import (
    UCUM_SYSTEM,
    ObservationDraft,
    Rejected,
    category,
    concept,
    fhir_datetime,
    host_id,
)
from mappings.ennu_codes import OVERALL, EnnuCodes, load_ennu_codes
from mappings.precision import json_number, reported

IDENTIFIER_PREFIX = "assessment-"
# The destination fields of mappings/assessment.completed/epic_fhir.yaml that this module reads.
FIELD_IDENTIFIER = "identifier"
FIELD_TYPE = "assessment_type"
FIELD_EFFECTIVE = "effective"
FIELD_OVERALL = "overall_score"
SCORE_PREFIX = "score."

# The fields a survey record carries (by first part: `score` stands for each `score.<category>`).
SURVEY_FIELDS = frozenset(
    {FIELD_IDENTIFIER, FIELD_TYPE, FIELD_EFFECTIVE, FIELD_OVERALL, SCORE_PREFIX.rstrip(".")}
)


def _score(raw: Any) -> float | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise Rejected("a score is not a number") from None
    return None if math.isnan(number) else number


def survey_draft(record: Record, identifier_system: str, codes: EnnuCodes) -> ObservationDraft:
    """One Observation for one assessment: a component for the overall score and one per category scored."""
    if record.user_id is None:
        raise Rejected("no host user id")
    fields = record.fields
    kind = str(fields.get(FIELD_TYPE) or "").strip()
    if kind not in codes.assessments:
        raise Rejected(f"assessment type {kind!r} has no code in mappings/ennu_codes.yaml")
    scores = {OVERALL: _score(fields.get(FIELD_OVERALL))}
    scores |= {
        name.removeprefix(SCORE_PREFIX): _score(value)
        for name, value in sorted(fields.items())
        if name.startswith(SCORE_PREFIX)
    }
    unknown = sorted(c for c, v in scores.items() if v is not None and c not in codes.scores)
    if unknown:
        raise Rejected(f"score {unknown[0]!r} has no code in mappings/ennu_codes.yaml")
    components = [
        {
            "code": concept(codes.system, code, codes.scores[code], codes.scores[code]),
            "valueQuantity": {
                "value": json_number(reported(value)),
                "unit": codes.unit.display,
                "system": UCUM_SYSTEM,
                "code": codes.unit.code,
            },
        }
        for code, value in scores.items()
        if value is not None
    ]
    if not components:
        raise Rejected("the assessment has no scores")
    identifier = f"{IDENTIFIER_PREFIX}{host_id(fields.get(FIELD_IDENTIFIER))}"
    body = {
        "resourceType": "Observation",
        "identifier": [{"system": identifier_system, "value": identifier}],
        "category": category("survey"),
        "code": concept(codes.system, kind, codes.assessments[kind], codes.assessments[kind]),
        "effectiveDateTime": fhir_datetime(fields.get(FIELD_EFFECTIVE)),
        "component": components,
    }
    return ObservationDraft((record.record_key,), int(record.user_id), identifier_system, identifier, body)


def plan_surveys(
    records: Iterable[Record], identifier_system: str, codes: EnnuCodes | None = None
) -> tuple[list[ObservationDraft], dict[str, str]]:
    """The survey Observations to send, and the records refused before sending (key → reason)."""
    codes = codes or load_ennu_codes()
    drafts: list[ObservationDraft] = []
    rejected: dict[str, str] = {}
    for record in records:
        try:
            drafts.append(survey_draft(record, identifier_system, codes))
        except Rejected as exc:
            rejected[record.record_key] = exc.reason
    return drafts, rejected
