"""One copy of the clinical reference data: the demo's biomarkers are the product's LOINC table's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from devtools.demo import BIOMARKER_CATALOGUE, MOLAR_CONVERSIONS, MOLAR_UNIT, REFERENCE_RANGES
from mappings.loinc import load_loinc_table

DEMO = Path(__file__).resolve().parent.parent / "devtools" / "demo.py"
LOINC_LITERAL = re.compile(r"^\d{1,7}-\d$")


def test_the_demo_reports_every_biomarker_of_the_table() -> None:
    assert set(REFERENCE_RANGES) == set(load_loinc_table().biomarkers)


def test_the_demo_takes_codes_units_and_critical_limits_from_the_table() -> None:
    table = load_loinc_table()
    for spec in BIOMARKER_CATALOGUE:
        entry = table.biomarkers[spec.name]
        assert (spec.loinc, spec.unit, spec.display) == (entry.loinc, entry.unit, entry.display)
        assert (spec.critical_low, spec.critical_high) == (entry.critical_low, entry.critical_high)
    for name, factor in MOLAR_CONVERSIONS.items():
        conversion = table.biomarkers[name].conversion(MOLAR_UNIT)
        assert conversion is not None and conversion.factor == factor


def test_the_demo_source_spells_out_no_loinc_code() -> None:
    literals = [
        node.value
        for node in ast.walk(ast.parse(DEMO.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and LOINC_LITERAL.match(node.value)
    ]
    assert literals == []
