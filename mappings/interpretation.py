"""A result's interpretation flag (N, L, H, LL, HH of v3-ObservationInterpretation) from range and limits."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

from mappings.loinc import LoincEntry, LoincTable, UnitNotConvertible, load_loinc_table
from mappings.precision import reported

INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


class Flag(StrEnum):
    NORMAL = "N"
    LOW = "L"
    HIGH = "H"
    CRITICAL_LOW = "LL"
    CRITICAL_HIGH = "HH"

    @property
    def display(self) -> str:
        return DISPLAYS[self]

    @property
    def critical(self) -> bool:
        return self in (Flag.CRITICAL_LOW, Flag.CRITICAL_HIGH)


DISPLAYS = {
    Flag.NORMAL: "Normal",
    Flag.LOW: "Low",
    Flag.HIGH: "High",
    Flag.CRITICAL_LOW: "Critical low",
    Flag.CRITICAL_HIGH: "Critical high",
}


def interpret(
    table: LoincTable,
    entry: LoincEntry,
    value: Decimal,
    unit: str,
    low: Decimal | None = None,
    high: Decimal | None = None,
) -> Flag | None:
    """LL/HH beyond the entry's critical limits, else L/H/N against the reference range; None with neither.

    The critical limits are in the entry's unit: the value is converted exactly (not rounded) before it is
    compared, so a converted value on the edge is judged as the lab measured it. The range is in the result's
    own unit. A value on a bound is inside it.
    """
    factor, _ = table.factor(entry, unit, entry.unit)
    in_table_unit = value * factor
    if entry.critical_low is not None and in_table_unit < Decimal(repr(entry.critical_low)):
        return Flag.CRITICAL_LOW
    if entry.critical_high is not None and in_table_unit > Decimal(repr(entry.critical_high)):
        return Flag.CRITICAL_HIGH
    if low is None and high is None:
        return None
    if low is not None and value < low:
        return Flag.LOW
    if high is not None and value > high:
        return Flag.HIGH
    return Flag.NORMAL


def _decimal(raw: Any) -> Decimal | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        return None
    return None if number != number or number in (float("inf"), float("-inf")) else reported(number)


def flag_of(
    name: Any, value: Any, unit: Any, low: Any = None, high: Any = None, table: LoincTable | None = None
) -> Flag | None:
    """The flag of a host result given as raw values; None when it cannot be coded, converted or read."""
    table = table or load_loinc_table()
    entry = table.entry(str(name or "").strip().lower())
    number = _decimal(value)
    if entry is None or number is None or not str(unit or "").strip():
        return None
    try:
        return interpret(table, entry, number, str(unit), _decimal(low), _decimal(high))
    except UnitNotConvertible:
        return None
