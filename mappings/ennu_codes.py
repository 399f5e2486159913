"""ENNU's code system for assessment scores (`mappings/ennu_codes.yaml`): one schema, errors as path:line."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mappings.loader import LintError

ENNU_CODES_PATH = Path(__file__).resolve().parent / "ennu_codes.yaml"
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
OVERALL = "overall"


class ScoreUnit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[!-~]+$")  # a UCUM code
    display: str = Field(min_length=1)


def _codes(value: dict[str, str]) -> dict[str, str]:
    for code, display in value.items():
        if not CODE.match(str(code)):
            raise ValueError(f"{code!r}: codes are lower_snake_case")
        if not str(display or "").strip():
            raise ValueError(f"{code!r}: a display is required")
    return value


class EnnuCodes(BaseModel):
    """The code system: its URI, the Observation codes of assessments and the component codes of scores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str = Field(pattern=r"^(urn|https?):\S+$")
    version: str = Field(min_length=1)
    unit: ScoreUnit
    assessments: dict[str, str] = Field(min_length=1)
    scores: dict[str, str] = Field(min_length=1)

    _assessments = field_validator("assessments")(_codes)

    @field_validator("scores")
    @classmethod
    def _scores(cls, value: dict[str, str]) -> dict[str, str]:
        _codes(value)
        if OVERALL not in value:
            raise ValueError(f"scores: {OVERALL!r} is required")
        return value


def check_codes_file(path: Path) -> tuple[EnnuCodes | None, list[LintError]]:
    """Parse and validate the code system; it, or every reason it is unusable."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return None, [LintError(path, int(mark.line) + 1 if mark else 1, "YAML syntax")]
    if not isinstance(data, dict):
        return None, [LintError(path, 1, "the code system is a YAML mapping")]
    try:
        return EnnuCodes.model_validate(data), []
    except ValidationError as exc:
        lines = path.read_text().splitlines()
        errors = []
        for error in exc.errors(include_input=False, include_url=False):
            top = str(error["loc"][0]) if error["loc"] else ""
            line = next((i for i, row in enumerate(lines, 1) if row.startswith(f"{top}:")), 1)
            where = ".".join(str(p) for p in error["loc"])
            errors.append(
                LintError(path, line, f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
            )
        return None, errors


@lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int) -> EnnuCodes:
    codes, errors = check_codes_file(path)
    if codes is None:
        raise ValueError("\n".join(str(e) for e in errors))
    return codes


def load_ennu_codes(path: Path = ENNU_CODES_PATH) -> EnnuCodes:
    """The code system, reloaded when the file changes."""
    return _load(path, path.stat().st_mtime_ns)
