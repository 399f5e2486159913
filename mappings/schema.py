"""The one schema of mapping files (`mappings/<event type>/<connector>.yaml`): configuration with a type."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mappings.transforms import MULTI_SOURCE, TRANSFORMS, Params

SOURCE_KINDS = ("event", "user", "assessment", "biomarker", "health_goal")
RECORD_KINDS = ("user", "assessment", "biomarker", "health_goal")
SOURCE_PATH = re.compile(r"^(event|user|assessment|biomarker|health_goal)\.[a-z0-9_]+(\.[a-z0-9_]+)?$")
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)?$")


class Constraints(BaseModel):
    """What a destination value must satisfy; each becomes one Great Expectations expectation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    required: bool = False
    email: bool = False
    phone: bool = False
    range: tuple[float, float] | None = None
    enum: tuple[Any, ...] | None = None
    max_length: int | None = Field(default=None, gt=0)

    @field_validator("range")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError("range: min is greater than max")
        return value

    @field_validator("enum")
    @classmethod
    def _non_empty(cls, value: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        if value is not None and not value:
            raise ValueError("enum: needs at least one value")
        return value


class TransformStep(BaseModel):
    """A transform by name with its validated parameters."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    params: Params | None = None


def parse_step(raw: Any) -> TransformStep:
    """`lower` or `{round: {digits: 1}}` (a bare value is accepted for single-parameter transforms)."""
    if isinstance(raw, str):
        name, given = raw, None
    elif isinstance(raw, dict) and len(raw) == 1:
        name, given = next(iter(raw.items()))
    else:
        raise ValueError("a transform is a name or a one-key mapping {name: params}")
    if name in TRANSFORMS:
        params_model = TRANSFORMS[name].params
        required = TRANSFORMS[name].params_required
    elif name in MULTI_SOURCE:
        params_model, required = MULTI_SOURCE[name][2], False
    else:
        known = sorted([*TRANSFORMS, *MULTI_SOURCE])
        raise ValueError(f"unknown transform {name!r}; known: {', '.join(known)}")
    if params_model is None:
        if given is not None:
            raise ValueError(f"transform {name!r} takes no parameters")
        return TransformStep(name=name)
    if given is None:
        if required:
            raise ValueError(f"transform {name!r} needs parameters")
        return TransformStep(name=name, params=params_model())
    if not isinstance(given, dict):
        fields = list(params_model.model_fields)
        if len(fields) != 1:
            raise ValueError(f"transform {name!r} takes a mapping of parameters: {', '.join(fields)}")
        given = {fields[0]: given}
    return TransformStep(name=name, params=params_model.model_validate(given))


class FieldSpec(BaseModel):
    """One destination field: from a source path (or several, concatenated) or a literal value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    source: str | tuple[str, ...] | None = None
    value: Any = None
    transforms: tuple[TransformStep, ...] = ()
    constraints: Constraints = Constraints()

    @field_validator("transforms", mode="before")
    @classmethod
    def _steps(cls, raw: Any) -> tuple[TransformStep, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise ValueError("transforms is a list")
        return tuple(step if isinstance(step, TransformStep) else parse_step(step) for step in raw)

    @field_validator("source")
    @classmethod
    def _paths(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        for path in [value] if isinstance(value, str) else list(value or ()):
            if not SOURCE_PATH.match(path):
                raise ValueError(
                    f"source {path!r} is not <kind>.<column> with kind one of {', '.join(SOURCE_KINDS)}"
                )
        return value

    @model_validator(mode="after")
    def _one_origin(self) -> FieldSpec:
        if (self.source is None) == (self.value is None):
            raise ValueError("a field has exactly one of source or value")
        several = isinstance(self.source, tuple)
        first_is_concat = bool(self.transforms) and self.transforms[0].name in MULTI_SOURCE
        if several and not first_is_concat:
            raise ValueError("several sources need concat as the first transform")
        if not several and any(t.name in MULTI_SOURCE for t in self.transforms):
            raise ValueError("concat needs a list of sources")
        if any(t.name in MULTI_SOURCE for t in self.transforms[1:]):
            raise ValueError("concat can only be the first transform")
        return self

    @property
    def sources(self) -> tuple[str, ...]:
        if self.source is None:
            return ()
        return (self.source,) if isinstance(self.source, str) else self.source


class Mapping(BaseModel):
    """A connector's mapping for one event type: destination object, upsert key and fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    connector: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    object: str = Field(min_length=1)
    record: str
    upsert_key: str
    fields: dict[str, FieldSpec] = Field(min_length=1)
    event_type: str = ""  # set from the directory by the loader

    @field_validator("record")
    @classmethod
    def _record_kind(cls, value: str) -> str:
        if value not in RECORD_KINDS:
            raise ValueError(f"record must be one of {', '.join(RECORD_KINDS)}")
        return value

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for name in value:
            if not FIELD_NAME.match(name) or name.startswith("_"):
                raise ValueError(
                    f"field name {name!r} must be a destination name (letters, digits, _ and one .)"
                )
        return value

    @model_validator(mode="after")
    def _upsert_key_required(self) -> Mapping:
        spec = self.fields.get(self.upsert_key)
        if spec is None:
            raise ValueError(f"upsert_key {self.upsert_key!r} is not one of the fields")
        if not spec.constraints.required:
            raise ValueError(f"upsert_key {self.upsert_key!r} must be declared required")
        return self

    @property
    def source_columns(self) -> set[str]:
        return {path for spec in self.fields.values() for path in spec.sources}
