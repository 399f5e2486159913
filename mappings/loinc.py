"""The LOINC table (`mappings/loinc.yaml`): host biomarker names to LOINC, UCUM and category, with exact unit
conversions and critical ranges; loaded through one schema, with mistakes reported as `path:line: reason`."""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mappings.loader import LintError
from mappings.precision import MAX_DECIMALS, decimals_of, reported, round_significant, significant_digits

LOINC_TABLE_PATH = Path(__file__).resolve().parent / "loinc.yaml"
LOINC_CODE = re.compile(r"^(\d{1,7})-(\d)$")
UCUM_CODE = re.compile(r"^[!-~]+$")  # printable ASCII, no spaces: the UCUM case-sensitive code syntax
HOST_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class LoincTableError(ValueError):
    """The LOINC table cannot be used; the message is `path:line: reason`, one line per mistake."""

    def __init__(self, errors: list[LintError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class UnitNotConvertible(ValueError):
    """The unit is neither the table's UCUM unit nor one it converts from exactly; the message names units."""


def loinc_check_digit(number: str) -> int:
    """LOINC's mod-10 check digit of the part before the dash (the Luhn rule)."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            digit = digit // 10 + digit % 10
        total += digit
    return (10 - total % 10) % 10


def valid_loinc_code(code: str) -> bool:
    match = LOINC_CODE.match(code)
    return match is not None and loinc_check_digit(match.group(1)) == int(match.group(2))


class Category(StrEnum):
    """FHIR observation-category codes we use."""

    LABORATORY = "laboratory"
    VITAL_SIGNS = "vital-signs"


def _check_loinc(value: str) -> str:
    if not LOINC_CODE.match(value):
        raise ValueError(f"{value!r} is not a LOINC code (digits, dash, check digit)")
    if not valid_loinc_code(value):
        raise ValueError(f"{value!r}: wrong LOINC check digit")
    return value


def _check_ucum(value: str) -> str:
    if not UCUM_CODE.match(value):
        raise ValueError(f"{value!r} is not a UCUM code (printable ASCII without spaces)")
    return value


class Conversion(BaseModel):
    """Another unit the table accepts: value in the entry's unit = value in `unit` * `factor`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str
    factor: float = Field(gt=0)
    decimals: int = Field(ge=0, le=6)  # precision of results reported in `unit` (when the host does not say)

    _ucum = field_validator("unit")(_check_ucum)


class LoincEntry(BaseModel):
    """How one host biomarker is coded in FHIR."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""  # the host name, set from the key by the table
    label: str = Field(min_length=1, max_length=60)  # short human name, used in alerts
    loinc: str
    display: str = Field(min_length=1)
    unit: str
    unit_display: str | None = None
    category: Category
    decimals: int | None = Field(default=None, ge=0, le=6)  # most decimals of a value converted to `unit`
    critical_low: float | None = None
    critical_high: float | None = None
    conversions: tuple[Conversion, ...] = ()
    panel: str | None = None

    _loinc = field_validator("loinc")(_check_loinc)
    _ucum = field_validator("unit")(_check_ucum)

    @model_validator(mode="after")
    def _consistent(self) -> LoincEntry:
        if (
            self.critical_low is not None
            and self.critical_high is not None
            and self.critical_low >= self.critical_high
        ):
            raise ValueError("critical_low must be below critical_high")
        units = [c.unit for c in self.conversions]
        if self.unit in units or len(set(units)) != len(units):
            raise ValueError("conversions: each unit once, and not the entry's own unit")
        if self.conversions and self.decimals is None:
            raise ValueError("decimals: needed when there are conversions")
        return self

    @property
    def human_unit(self) -> str:
        return self.unit_display or self.unit

    def conversion(self, unit: str) -> Conversion | None:
        return next((c for c in self.conversions if c.unit == unit), None)


class Panel(BaseModel):
    """Several host rows that FHIR carries as one Observation with one component each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    label: str = Field(min_length=1)
    loinc: str
    display: str = Field(min_length=1)
    category: Category
    components: tuple[str, ...] = Field(min_length=2)
    incomplete_reason: str = Field(min_length=1)

    _loinc = field_validator("loinc")(_check_loinc)


class LoincTable(BaseModel):
    """The whole table: aliases of unit spellings, biomarker entries and panels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_aliases: dict[str, str] = Field(default_factory=dict)
    biomarkers: dict[str, LoincEntry] = Field(min_length=1)
    panels: dict[str, Panel] = Field(default_factory=dict)

    @field_validator("unit_aliases")
    @classmethod
    def _alias_targets(cls, value: dict[str, str]) -> dict[str, str]:
        for target in value.values():
            _check_ucum(target)
        return value

    @field_validator("biomarkers", "panels", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for name in value:
            if not HOST_NAME.match(str(name)):
                raise ValueError(f"{name!r}: names are lower_snake_case")
        return {
            name: {**entry, "name": name} if isinstance(entry, dict) else entry
            for name, entry in value.items()
        }

    @model_validator(mode="after")
    def _panels_agree(self) -> LoincTable:
        for name, entry in self.biomarkers.items():
            if entry.panel is not None:
                panel = self.panels.get(entry.panel)
                if panel is None or name not in panel.components:
                    raise ValueError(f"biomarkers.{name}: panel {entry.panel!r} does not list it")
        for name, panel in self.panels.items():
            for component in panel.components:
                member = self.biomarkers.get(component)
                if member is None or member.panel != name:
                    raise ValueError(f"panels.{name}: component {component!r} is not a biomarker of it")
        return self

    def entry(self, name: str) -> LoincEntry | None:
        return self.biomarkers.get(name)

    def ucum(self, unit: str) -> str:
        """The UCUM code of a unit as written by the host (aliases are exact synonyms)."""
        unit = unit.strip()
        return self.unit_aliases.get(unit, unit)

    def to_table_unit(self, entry: LoincEntry, value: float, unit: str) -> float:
        """`value` in the entry's UCUM unit; raises `UnitNotConvertible` when no exact conversion exists."""
        return self.convert(entry, value, unit, entry.unit)

    def convert(self, entry: LoincEntry, value: float, from_unit: str, to_unit: str) -> float:
        """Convert between the entry's unit and one of its declared units, in either direction."""
        return float(
            self.convert_reported(entry, self.reported_in(entry, value, from_unit), from_unit, to_unit)
        )

    def reported_in(self, entry: LoincEntry, value: float, unit: str, decimals: int | None = None) -> Decimal:
        """A value as the lab reported it in `unit`: with its declared decimals; unknown, with those of the
        stored number but no fewer than results in a converted unit carry (2.0 mmol/L was 2.00)."""
        if decimals is not None:
            return reported(value, decimals)
        stored = reported(value)
        conversion = entry.conversion(self.ucum(unit))
        if conversion is None:
            return stored
        return reported(value, max(decimals_of(stored), conversion.decimals))

    def convert_reported(self, entry: LoincEntry, value: Decimal, from_unit: str, to_unit: str) -> Decimal:
        """A reported value in another unit, to the significant digits it was reported with (never more
        decimals than results in the target unit carry: `decimals` of the entry or of the conversion)."""
        factor, decimals = self.factor(entry, from_unit, to_unit)
        if factor == 1:
            return value
        return round_significant(value * factor, significant_digits(value), decimals)

    def factor(self, entry: LoincEntry, from_unit: str, to_unit: str) -> tuple[Decimal, int]:
        """(exact factor, decimals of the target unit) between two units of the entry; 1 when they agree."""
        source, target = self.ucum(from_unit), self.ucum(to_unit)
        if source == target:
            return Decimal(1), MAX_DECIMALS
        if target == entry.unit and (forward := entry.conversion(source)) is not None:
            assert entry.decimals is not None  # the schema requires it with conversions
            return Decimal(repr(forward.factor)), entry.decimals
        if source == entry.unit and (backward := entry.conversion(target)) is not None:
            return 1 / Decimal(repr(backward.factor)), backward.decimals
        raise UnitNotConvertible(f"no exact conversion of {entry.name} from {source} to {target}")


def _line_of(root: yaml.Node, loc: tuple[Any, ...]) -> int:
    """The line of the deepest YAML node a pydantic error location reaches."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    node = value_node if not isinstance(value_node, yaml.ScalarNode) else key_node
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return int(node.start_mark.line) + 1


def check_loinc_file(path: Path) -> tuple[LoincTable | None, list[LintError]]:
    """Parse and validate the table; the table, or every reason it is unusable."""
    text = path.read_text()
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = int(mark.line) + 1 if mark is not None else 1
        return None, [LintError(path, line, f"YAML syntax: {getattr(exc, 'problem', None) or exc}")]
    if root is None or not isinstance(data, dict):
        return None, [LintError(path, 1, "the LOINC table is a YAML mapping")]
    try:
        return LoincTable.model_validate(data), []
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_input=False, include_url=False):
            loc = tuple(error["loc"])
            reason = str(error["msg"]).removeprefix("Value error, ")
            where = ".".join(str(p) for p in loc)
            errors.append(LintError(path, _line_of(root, loc), f"{where}: {reason}" if where else reason))
        return None, errors


@lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int) -> LoincTable:
    table, errors = check_loinc_file(path)
    if table is None:
        raise LoincTableError(errors)
    return table


def load_loinc_table(path: Path = LOINC_TABLE_PATH) -> LoincTable:
    """The LOINC table, reloaded when the file changes."""
    return _load(path, path.stat().st_mtime_ns)
