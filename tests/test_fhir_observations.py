"""Biomarker results to FHIR Observations: LOINC table, units, blood-pressure panels, critical alerts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from connectors.base import Record
from connectors.fhir_observations import (
    LOINC_SYSTEM,
    UCUM_SYSTEM,
    Rejected,
    critical_alerts,
    fhir_datetime,
    host_id,
    plan_observations,
)
from ennu.demo import BIOMARKER_CATALOGUE, UNKNOWN_BIOMARKER
from mappings.loinc import (
    LOINC_TABLE_PATH,
    LoincTableError,
    UnitNotConvertible,
    check_loinc_file,
    load_loinc_table,
    valid_loinc_code,
)

SYSTEM = "urn:ennu:biomarker"
OBSERVED = datetime(2024, 5, 1, 8, 30)


def result(
    biomarker_id: int,
    name: str,
    value: float,
    unit: str,
    user_id: int = 7,
    low: float | None = None,
    high: float | None = None,
    observed: Any = OBSERVED,
) -> Record:
    return Record(
        f"biomarker:{biomarker_id}",
        f"evt-{biomarker_id}",
        user_id,
        {
            "identifier": biomarker_id,
            "biomarker_name": name,
            "value": value,
            "unit": unit,
            "reference_low": low,
            "reference_high": high,
            "effective": observed,
        },
    )


def catalogue_records() -> list[Record]:
    return [
        result(100 + i, spec.name, 50.0, spec.unit, low=spec.reference_low, high=spec.reference_high)
        for i, spec in enumerate(BIOMARKER_CATALOGUE)
    ]


def test_every_catalogue_biomarker_has_a_loinc_entry_agreeing_with_the_demo() -> None:
    table = load_loinc_table()
    for spec in BIOMARKER_CATALOGUE:
        entry = table.entry(spec.name)
        assert entry is not None, spec.name
        assert (entry.loinc, entry.unit) == (spec.loinc_code, spec.unit), spec.name
        assert (entry.critical_low, entry.critical_high) == (spec.critical_low, spec.critical_high), spec.name
        assert valid_loinc_code(entry.loinc)
    assert table.entry(UNKNOWN_BIOMARKER) is None


def test_the_table_covers_the_required_markers_with_their_codes() -> None:
    table = load_loinc_table()
    codes = {name: entry.loinc for name, entry in table.biomarkers.items()}
    assert codes["glucose"] == "2345-7" and codes["hba1c"] == "4548-4"
    assert codes["testosterone_total"] == "2986-8" and codes["testosterone_free"] == "2991-8"
    assert codes["vitamin_d"] == "62292-8" and codes["tsh"] == "3016-3" and codes["free_t4"] == "3024-7"
    assert table.panels["blood_pressure"].loinc == "85354-9"
    assert {table.entry(n).category.value for n in ("body_weight", "bmi", "blood_pressure_systolic")} == {  # type: ignore[union-attr]
        "vital-signs"
    }


def test_every_observation_validates_with_fhir_resources_and_carries_loinc_and_ucum() -> None:
    plan = plan_observations(catalogue_records(), SYSTEM)
    assert plan.rejected == {}
    assert len(plan.drafts) == len(BIOMARKER_CATALOGUE) - 1  # systolic + diastolic are one Observation
    for draft in plan.drafts:
        body = draft.resource("Patient/42")
        # the serialised body round-trips through the fhir.resources R4B model unchanged
        assert Observation.model_validate(body).model_dump(mode="json", exclude_none=True) == body
        assert body["status"] == "final"
        assert body["subject"] == {"reference": "Patient/42"}
        assert body["identifier"][0]["system"] == SYSTEM
        assert body["code"]["coding"][0]["system"] == LOINC_SYSTEM
        assert body["category"][0]["coding"][0]["system"].endswith("observation-category")
        quantities = (
            [body["valueQuantity"]]
            if "valueQuantity" in body
            else [c["valueQuantity"] for c in body["component"]]
        )
        for quantity in quantities:
            assert quantity["system"] == UCUM_SYSTEM and quantity["code"]
        assert body["effectiveDateTime"] == "2024-05-01T08:30:00Z"


def test_an_unknown_biomarker_is_rejected_with_a_reason_never_sent_uncoded() -> None:
    plan = plan_observations(
        [result(1, UNKNOWN_BIOMARKER, 6.1, "%"), result(2, "glucose", 90, "mg/dL")], SYSTEM
    )
    assert [d.record_keys for d in plan.drafts] == [("biomarker:2",)]
    assert "has no LOINC entry" in plan.rejected["biomarker:1"]
    assert UNKNOWN_BIOMARKER in plan.rejected["biomarker:1"]


def test_glucose_100_mg_dl_is_5_55_mmol_l_and_back() -> None:
    table = load_loinc_table()
    glucose = table.entry("glucose")
    assert glucose is not None
    assert table.convert(glucose, 100, "mg/dL", "mmol/L") == 5.55
    assert table.convert(glucose, 5.55, "mmol/L", "mg/dL") == 100
    triglycerides = table.entry("triglycerides")
    assert triglycerides is not None and table.to_table_unit(triglycerides, 1.0, "mmol/L") == 89


def test_a_mmol_result_is_sent_in_the_tables_unit_with_its_reference_range() -> None:
    plan = plan_observations([result(3, "glucose", 5.55, "mmol/L", low=3.9, high=5.5)], SYSTEM)
    body = plan.drafts[0].body
    assert body["valueQuantity"] == {"value": 100.0, "unit": "mg/dL", "system": UCUM_SYSTEM, "code": "mg/dL"}
    assert (
        body["referenceRange"][0]["low"]["value"] == 70 and body["referenceRange"][0]["high"]["value"] == 99
    )


def test_an_unconvertible_unit_is_rejected_with_a_reason() -> None:
    plan = plan_observations(
        [result(4, "glucose", 90, "g/L"), result(5, "testosterone_total", 12.0, "nmol/L")], SYSTEM
    )
    assert plan.drafts == []
    assert plan.rejected["biomarker:4"] == "no exact conversion of glucose from g/L to mg/dL"
    assert "testosterone_total" in plan.rejected["biomarker:5"]
    table = load_loinc_table()
    with pytest.raises(UnitNotConvertible):
        table.to_table_unit(table.biomarkers["tsh"], 2.0, "IU/L")


def test_unit_spellings_are_aliases_of_their_ucum_code() -> None:
    plan = plan_observations(
        [
            result(6, "blood_pressure_systolic", 120, "mmHg"),
            result(7, "blood_pressure_diastolic", 80, "mmHg"),
        ],
        SYSTEM,
    )
    component = plan.drafts[0].body["component"][0]
    assert component["valueQuantity"] == {
        "value": 120.0,
        "unit": "mmHg",
        "system": UCUM_SYSTEM,
        "code": "mm[Hg]",
    }


def test_a_blood_pressure_pair_becomes_one_observation_with_two_components() -> None:
    records = [
        result(11, "blood_pressure_diastolic", 82, "mm[Hg]", low=60, high=80),
        result(10, "blood_pressure_systolic", 131, "mm[Hg]", low=90, high=120),
        result(12, "glucose", 90, "mg/dL"),
    ]
    plan = plan_observations(records, SYSTEM)
    assert plan.rejected == {}
    pressure = next(d for d in plan.drafts if len(d.record_keys) == 2)
    assert set(pressure.record_keys) == {"biomarker:10", "biomarker:11"}
    assert pressure.identifier_value == "biomarker-10-11"  # systolic first, as the panel lists them
    body = pressure.resource("Patient/1")
    assert body["code"]["coding"][0]["code"] == "85354-9"
    assert "valueQuantity" not in body
    assert [c["code"]["coding"][0]["code"] for c in body["component"]] == ["8480-6", "8462-4"]
    assert [c["valueQuantity"]["value"] for c in body["component"]] == [131, 82]
    assert body["category"][0]["coding"][0]["code"] == "vital-signs"


def test_half_a_blood_pressure_pair_is_rejected() -> None:
    records = [
        result(20, "blood_pressure_systolic", 131, "mm[Hg]"),
        result(21, "blood_pressure_diastolic", 82, "mm[Hg]", observed=datetime(2024, 5, 2, 9, 0)),
    ]
    plan = plan_observations(records, SYSTEM)
    assert plan.drafts == []
    assert set(plan.rejected.values()) == {"blood pressure needs both systolic and diastolic"}


def test_a_critical_glucose_gives_one_alert_without_the_value() -> None:
    critical = result(30, "glucose", 452, "mg/dL", user_id=42)
    normal = result(31, "glucose", 91, "mg/dL", user_id=43)
    alerts = critical_alerts([critical, normal])
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.user_id, alert.biomarker, alert.loinc, alert.direction) == (42, "glucose", "2345-7", "high")
    assert "critical" in alert.text.lower() and "glucose" in alert.text and "user:42" in alert.text
    assert "452" not in alert.text
    assert critical_alerts([normal]) == []


def test_critical_values_are_judged_in_the_tables_unit() -> None:
    low_mmol = result(32, "glucose", 2.0, "mmol/L")  # 36 mg/dL: below the critical 40
    assert [a.direction for a in critical_alerts([low_mmol])] == ["low"]
    assert critical_alerts([result(33, UNKNOWN_BIOMARKER, 99, "%")]) == []


def test_host_ids_and_times_are_normalised() -> None:
    assert host_id(12) == host_id(12.0) == host_id("12") == 12
    for bad in (None, "x", 1.5, 0):
        with pytest.raises(Rejected):
            host_id(bad)
    assert fhir_datetime("2024-05-01T10:30:00+02:00") == "2024-05-01T08:30:00Z"
    assert fhir_datetime(OBSERVED) == "2024-05-01T08:30:00Z"


def test_the_loinc_table_names_file_and_line_of_a_wrong_check_digit(tmp_path: Path) -> None:
    table, errors = check_loinc_file(LOINC_TABLE_PATH)
    assert table is not None and errors == []
    broken = tmp_path / "loinc.yaml"
    text = LOINC_TABLE_PATH.read_text()
    broken.write_text(text.replace("loinc: 2345-7", "loinc: 2345-6"))
    table, errors = check_loinc_file(broken)
    assert table is None
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "loinc: 2345-7" in row)
    assert [(e.line, "check digit" in e.reason) for e in errors] == [(line, True)]
    with pytest.raises(LoincTableError):
        load_loinc_table(broken)
