"""Biomarker results to FHIR Observations: LOINC table, units, precision, flags, blood-pressure panels."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from connectors.base import Record
from connectors.epic_fhir.observations import (
    LOINC_SYSTEM,
    UCUM_SYSTEM,
    ObservationDraft,
    Rejected,
    critical_results,
    fhir_datetime,
    host_id,
    plan_observations,
)
from connectors.epic_fhir.panels import PanelWindow, Waiting, choose, plan_halves
from devtools.demo import BIOMARKER_CATALOGUE, UNKNOWN_BIOMARKER
from mappings.interpretation import INTERPRETATION_SYSTEM
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
WINDOW = PanelWindow()


def result(
    biomarker_id: int,
    name: str,
    value: float,
    unit: str,
    user_id: int = 7,
    low: float | None = None,
    high: float | None = None,
    observed: Any = OBSERVED,
    decimals: int | None = None,
) -> Record:
    return Record(
        f"biomarker:{biomarker_id}",
        f"evt-{biomarker_id}",
        user_id,
        {
            "identifier": biomarker_id,
            "biomarker_name": name,
            "value": value,
            "value_decimals": decimals,
            "unit": unit,
            "reference_low": low,
            "reference_high": high,
            "effective": observed,
            "recorded_at": observed,
        },
    )


def panels_of(records: list[Record]) -> list[ObservationDraft]:
    """The blood-pressure drafts the halves of a batch make among themselves (no host, no EHR)."""
    plan = plan_observations(records, SYSTEM)
    table = load_loinc_table()
    halves = plan_halves(plan.halves, plan.halves, table, SYSTEM, WINDOW)
    return [h.panel for h in halves if h.panel is not None]


def flags(body: dict[str, Any]) -> list[str]:
    return [c["code"] for i in body.get("interpretation") or [] for c in i["coding"]]


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
    assert len(plan.drafts) == len(BIOMARKER_CATALOGUE) - 2 and len(plan.halves) == 2
    [pressure] = {p.identifier_value: p for p in panels_of(catalogue_records())}.values()
    for draft in [*plan.drafts, pressure]:
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
    assert body["valueQuantity"] == {"value": 100, "unit": "mg/dL", "system": UCUM_SYSTEM, "code": "mg/dL"}
    assert (
        body["referenceRange"][0]["low"]["value"] == 70 and body["referenceRange"][0]["high"]["value"] == 99
    )
    assert flags(body) == ["H"]  # 5.55 mmol/L is above 5.5: judged in the unit the lab reported


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
    panels = panels_of(
        [
            result(6, "blood_pressure_systolic", 120, "mmHg"),
            result(7, "blood_pressure_diastolic", 80, "mmHg"),
        ]
    )
    component = panels[0].body["component"][0]
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
    assert plan.rejected == {} and len(plan.drafts) == 1 and len(plan.halves) == 2
    panels = panels_of(records)
    assert len(panels) == 2 and len({p.identifier_value for p in panels}) == 1  # both halves: one panel
    pressure = panels[0]
    assert pressure.identifier_value == "biomarker-10-11"  # systolic first, as the panel lists them
    body = pressure.resource("Patient/1")
    assert body["code"]["coding"][0]["code"] == "85354-9"
    assert "valueQuantity" not in body and "interpretation" not in body
    assert [c["code"]["coding"][0]["code"] for c in body["component"]] == ["8480-6", "8462-4"]
    assert [c["valueQuantity"]["value"] for c in body["component"]] == [131, 82]
    assert [flags(c) for c in body["component"]] == [["H"], ["H"]]  # each component its own flag
    assert body["category"][0]["coding"][0]["code"] == "vital-signs"


def test_halves_measured_apart_are_no_panel_and_a_lone_half_waits_then_goes_alone() -> None:
    records = [
        result(20, "blood_pressure_systolic", 131, "mm[Hg]"),
        result(21, "blood_pressure_diastolic", 82, "mm[Hg]", observed=datetime(2024, 5, 2, 9, 0)),
    ]
    plan = plan_observations(records, SYSTEM)
    table = load_loinc_table()
    systolic, diastolic = plan_halves(plan.halves, plan.halves, table, SYSTEM, WINDOW)
    assert systolic.panel is None and diastolic.panel is None
    recorded = OBSERVED.replace(tzinfo=UTC)
    waiting = choose(systolic, set(), recorded + timedelta(minutes=1), WINDOW)
    assert waiting == Waiting("biomarker:20", recorded + timedelta(minutes=2))
    last = choose(systolic, set(), recorded + timedelta(minutes=14, seconds=30), WINDOW)
    assert last == Waiting("biomarker:20", recorded + WINDOW.wait)  # the last offer: the window's end
    alone = choose(systolic, set(), recorded + WINDOW.wait, WINDOW)
    assert isinstance(alone, ObservationDraft) and alone.identifier_value == "biomarker-20"
    assert alone.body["code"]["coding"][0]["code"] == "8480-6"  # the half as its own coded Observation


def test_what_the_ehr_holds_keeps_both_halves_consistent() -> None:
    records = [
        result(40, "blood_pressure_systolic", 131, "mm[Hg]"),
        result(41, "blood_pressure_diastolic", 82, "mm[Hg]"),
    ]
    plan = plan_observations(records, SYSTEM)
    systolic, _ = plan_halves(plan.halves, plan.halves, load_loinc_table(), SYSTEM, WINDOW)
    now = datetime.now(UTC)
    assert choose(systolic, set(), now, WINDOW) == systolic.panel
    # The diastolic went alone after its window: the systolic goes alone too, never beside a panel.
    assert choose(systolic, {"biomarker-41"}, now, WINDOW) == systolic.alone
    assert choose(systolic, {"biomarker-40"}, now, WINDOW) == systolic.alone


@pytest.mark.parametrize(
    ("name", "value", "unit", "low", "high", "flag"),
    [
        ("glucose", 85, "mg/dL", 70, 99, "N"),
        ("glucose", 65, "mg/dL", 70, 99, "L"),
        ("glucose", 126, "mg/dL", 70, 99, "H"),
        ("glucose", 38, "mg/dL", 70, 99, "LL"),
        ("glucose", 452, "mg/dL", 70, 99, "HH"),
        ("glucose", 5.55, "mmol/L", 3.9, 5.5, "H"),  # converted: 100 mg/dL, range 70-99
        ("glucose", 2.0, "mmol/L", 3.9, 5.5, "LL"),  # 36.03 mg/dL: below the critical 40
        ("glucose", 22.3, "mmol/L", 3.9, 5.5, "HH"),  # 401.76 mg/dL: above the critical 400
        ("ldl", 2.5, "mmol/L", None, 2.59, "N"),  # an open range: only a high bound
        ("hdl", 35, "mg/dL", 40, None, "L"),
        ("tsh", 4.5, "m[IU]/L", 0.45, 4.5, "N"),  # on the bound is inside
        ("tsh", 4.51, "m[IU]/L", 0.45, 4.5, "H"),
        ("blood_pressure_diastolic", 125, "mm[Hg]", 60, 80, "HH"),
    ],
)
def test_interpretation_codes_normal_low_high_and_critical(
    name: str, value: float, unit: str, low: float | None, high: float | None, flag: str
) -> None:
    records = [result(50, name, value, unit, low=low, high=high)]
    plan = plan_observations(records, SYSTEM)
    halves = plan_halves(plan.halves, plan.halves, load_loinc_table(), SYSTEM, WINDOW)
    [body] = [d.body for d in plan.drafts] + [h.alone.body for h in halves]
    assert body["interpretation"] == [
        {
            "coding": [
                {
                    "system": INTERPRETATION_SYSTEM,
                    "code": flag,
                    "display": {"N": "Normal", "L": "Low", "H": "High"}.get(flag)
                    or {"LL": "Critical low", "HH": "Critical high"}[flag],
                }
            ]
        }
    ]


def test_without_a_range_only_critical_values_are_flagged() -> None:
    plan = plan_observations(
        [result(60, "body_weight", 71.5, "kg"), result(61, "glucose", 35, "mg/dL")], SYSTEM
    )
    weight, glucose = (d.body for d in plan.drafts)
    assert "interpretation" not in weight and flags(glucose) == ["LL"]


def test_values_keep_the_precision_the_lab_reported() -> None:
    plan = plan_observations(
        [
            result(70, "glucose", 76.0, "mg/dL", low=70.0, high=99.0),  # stored as a float: 76.0
            result(71, "creatinine", 5.55, "mg/dL"),
            result(72, "glucose", 4.2, "mmol/L"),  # 4.20 (mmol/L is reported to 2 decimals): 75.67 → 76 mg/dL
            result(73, "hba1c", 5.0, "%", decimals=1),  # the host says: reported with one decimal
        ],
        SYSTEM,
    )
    values = [d.body["valueQuantity"]["value"] for d in plan.drafts]
    assert values == [76, 5.55, 76, 5.0]
    table = load_loinc_table()
    glucose = table.biomarkers["glucose"]
    # A converted value keeps the significant digits it was reported with: 0.9 mmol/L (one) is 20 mg/dL.
    assert (
        table.convert_reported(glucose, table.reported_in(glucose, 0.9, "mmol/L", 1), "mmol/L", "mg/dL") == 20
    )
    assert [type(v) for v in values] == [int, float, int, float]
    wire = json.dumps([d.resource("Patient/1") for d in plan.drafts])
    assert '"value": 76,' in wire and '"value": 5.55,' in wire and "76.0" not in wire
    assert '"low": {"value": 70,' in wire


def test_critical_results_are_the_ll_and_hh_ones_judged_in_the_tables_unit() -> None:
    critical = result(30, "glucose", 452, "mg/dL", user_id=42)
    normal = result(31, "glucose", 91, "mg/dL", user_id=43)
    low_mmol = result(32, "glucose", 2.0, "mmol/L")  # 36 mg/dL: below the critical 40
    found = critical_results([critical, normal, low_mmol, result(33, UNKNOWN_BIOMARKER, 99, "%")])
    assert [(c.result.record_key, c.flag) for c in found] == [("biomarker:30", "HH"), ("biomarker:32", "LL")]


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
