"""The one schema of mapping files (`mappings/<event type>/<connector>.yaml`): configuration with a type.

Adding a constraint is one annotated field of `Constraints`: its type, its checks, and the Great
Expectations expectation it becomes (`Expect`). Adding a transform is one entry in `TRANSFORMS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mappings.transforms import TRANSFORMS, MultiSourceTransform, Params

SOURCE_KINDS = (
    "event",
    "user",
    "clinic",
    "assessment",
    "biomarker",
    "health_goal",
    "subscription",
    "payment",
    "appointment",
)
# what one destination record is; `event`: each event its own record (`event:<id>`), for destinations that
# count events (GA4, Zapier triggers), where two logins of one person in a batch are two records, not one
RecordKind = Literal[
    "user", "assessment", "biomarker", "health_goal", "subscription", "payment", "appointment", "event"
]
RECORD_KINDS: tuple[str, ...] = get_args(RecordKind)
# the kinds whose columns have one more level: assessment.scores.<category>
NESTED_SOURCES = {"assessment": ("scores",)}
_NAME = r"[a-z][a-z0-9_]*"
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")

# \Z rather than $: GX matches with re.search, and $ would let a trailing newline through.
EMAIL = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+\Z"
)
E164 = r"^\+[1-9][0-9]{7,14}\Z"  # E.164; [0-9] because \d also matches other scripts' digits

Scalar = str | int | float | bool

# Host columns the inbound half of a mapping may write: the CRMs own them. No outbound field may read
# them (the lint refuses it), so what the inbound sync writes can never be pushed back out (loop guard).
CRM_OWNED_COLUMNS = ("lifecycle_stage", "hubspot_owner_id", "salesforce_owner_id")
# A health goal's deal as the CRM's people left it: the CRM's view only, in columns of its own. The host
# owns the goal's state (status, completion): a deal won or lost at the CRM never completes or ends a goal.
CRM_OWNED_GOAL_COLUMNS = ("crm_stage", "crm_owner_id")
# Consents a CRM may withdraw (an opt-out there) but never grant: a `true` from the vendor is ignored.
WITHDRAWABLE_CONSENTS = ("marketing_consent", "communication_consent")
CRM_OWNED_SOURCES = (
    *(f"user.{c}" for c in CRM_OWNED_COLUMNS),
    *(f"health_goal.{c}" for c in CRM_OWNED_GOAL_COLUMNS),
)
INBOUND_TARGETS = (*CRM_OWNED_SOURCES, *(f"user.{c}" for c in WITHDRAWABLE_CONSENTS))
# The values the host itself sends for a vendor field it also reads back (flows/hubspot_changes.py says
# how each is worked out): a change to that value is our own write coming back, not the CRM's.
OwnValue = Literal["deal_stage"]


# --------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Expect:
    """The Great Expectations expectation a constraint becomes, with its arguments from the declared value."""

    expectation: str  # class name in great_expectations.expectations
    arguments: Callable[[Any], dict[str, Any]] = lambda _: {}


def _ordered(value: tuple[float, float] | None) -> tuple[float, float] | None:
    if value is not None and value[0] > value[1]:
        raise ValueError("min is greater than max")
    return value


def _non_empty(value: tuple[Scalar, ...] | None) -> tuple[Scalar, ...] | None:
    if value is not None and not value:
        raise ValueError("enum needs at least one value")
    return value


class Constraints(BaseModel):
    """What a destination value must satisfy; each declared constraint becomes one expectation.

    A boolean constraint is in force when true, any other when set. Nulls fail only `required`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    required: Annotated[bool, Expect("ExpectColumnValuesToNotBeNull")] = False
    email: Annotated[bool, Expect("ExpectColumnValuesToMatchRegex", lambda _: {"regex": EMAIL})] = False
    phone: Annotated[bool, Expect("ExpectColumnValuesToMatchRegex", lambda _: {"regex": E164})] = False
    range: Annotated[
        tuple[float, float] | None,
        AfterValidator(_ordered),
        Expect("ExpectColumnValuesToBeBetween", lambda r: {"min_value": r[0], "max_value": r[1]}),
    ] = None
    enum: Annotated[
        tuple[Scalar, ...] | None,
        AfterValidator(_non_empty),
        Expect("ExpectColumnValuesToBeInSet", lambda values: {"value_set": list(values)}),
    ] = None
    max_length: Annotated[
        int | None, Field(gt=0), Expect("ExpectColumnValueLengthsToBeBetween", lambda n: {"max_value": n})
    ] = None

    def expectations(self) -> list[tuple[str, dict[str, Any]]]:
        """(expectation class name, arguments) for every constraint in force, in declaration order."""
        out: list[tuple[str, dict[str, Any]]] = []
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None or value is False:
                continue
            for expect in (m for m in info.metadata if isinstance(m, Expect)):
                out.append((expect.expectation, expect.arguments(value)))
        return out


# --------------------------------------------------------------------------- transforms


def _one_line(error: ValidationError) -> str:
    """A params model's errors as one line, without the input values."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
    return "; ".join(parts)


class TransformStep(BaseModel):
    """A transform by name with its validated parameters; written `lower` or `{round: {digits: 1}}`.

    A transform with a single parameter also takes it bare: `{round: 1}`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    params: Params | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, raw: Any) -> Any:
        if isinstance(raw, TransformStep) or (isinstance(raw, dict) and set(raw) == {"name", "params"}):
            return raw  # already parsed (a copy or a round trip)
        if isinstance(raw, str):
            name, given = raw, None
        elif isinstance(raw, dict) and len(raw) == 1:
            name, given = next(iter(raw.items()))
        else:
            raise ValueError("a transform is a name or a one-key mapping {name: params}")
        transform = TRANSFORMS.get(str(name))
        if transform is None:
            raise ValueError(f"unknown transform {name!r}; known: {', '.join(sorted(TRANSFORMS))}")
        model = transform.params
        if model is None:
            if given is not None:
                raise ValueError(f"transform {name!r} takes no parameters")
            return {"name": name, "params": None}
        if given is None:
            given = {}
        elif not isinstance(given, dict):
            fields = list(model.model_fields)
            if len(fields) != 1:
                raise ValueError(f"transform {name!r} takes a mapping of parameters: {', '.join(fields)}")
            given = {fields[0]: given}
        try:
            return {"name": name, "params": model.model_validate(given)}
        except ValidationError as exc:
            raise ValueError(f"transform {name!r}: {_one_line(exc)}") from None

    @property
    def multi_source(self) -> bool:
        return isinstance(TRANSFORMS[self.name], MultiSourceTransform)


# --------------------------------------------------------------------------- fields and the mapping


def _source_path(path: str) -> str:
    kind, _, column = path.partition(".")
    if kind not in SOURCE_KINDS:
        raise ValueError(f"source {path!r}: kind {kind!r} is not one of {', '.join(SOURCE_KINDS)}")
    nested = "|".join(re.escape(n) for n in NESTED_SOURCES.get(kind, ()))
    pattern = rf"(?:{nested})\.{_NAME}|{_NAME}" if nested else _NAME
    if not re.fullmatch(pattern, column):
        nested_shapes = [f"{kind}.{n}.<name>" for n in NESTED_SOURCES.get(kind, ())]
        shape = " or ".join([f"{kind}.<column>", *nested_shapes])
        raise ValueError(f"source {path!r} is not {shape} (lower-case letters, digits and _)")
    return path


def _field_name(name: str) -> str:
    if not FIELD_NAME.match(name):
        raise ValueError(f"field name {name!r}: letters, digits and _, with parts separated by '.'")
    return name


SourcePath = Annotated[str, AfterValidator(_source_path)]
FieldName = Annotated[str, AfterValidator(_field_name)]


class FieldSpec(BaseModel):
    """One destination field: from a source path (or several, joined by `concat`) or a literal value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    source: tuple[SourcePath, ...] | None = None  # `source: user.email` is read as a one-item tuple
    value: Any = None
    transforms: tuple[TransformStep, ...] = ()
    constraints: Constraints = Constraints()

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_several(cls, raw: Any) -> Any:
        if raw is None or isinstance(raw, str):
            return raw if raw is None else (raw,)
        if not isinstance(raw, list | tuple) or not raw or not all(isinstance(p, str) for p in raw):
            raise ValueError("source is a path like user.email or a non-empty list of paths")
        return raw

    @field_validator("transforms", mode="before")
    @classmethod
    def _none_is_empty(cls, raw: Any) -> Any:
        return () if raw is None else raw

    @field_validator("value")
    @classmethod
    def _literal(cls, value: Any) -> Any:
        scalar = (str, int, float, bool)
        if value is None or isinstance(value, scalar):
            return value
        if isinstance(value, list) and all(isinstance(v, scalar) for v in value):
            return tuple(value)
        raise ValueError("a literal value is a string, number, boolean or a list of them")

    @model_validator(mode="after")
    def _one_origin(self) -> FieldSpec:
        if (self.source is None) == (self.value is None):
            raise ValueError("a field has exactly one of source or value")
        if self.value is not None and self.transforms:
            raise ValueError("a literal value takes no transforms")
        several = self.source is not None and len(self.source) > 1
        first_joins = bool(self.transforms) and self.transforms[0].multi_source
        if several and not first_joins:
            raise ValueError("several sources need concat as the first transform")
        if first_joins and not several:
            raise ValueError(f"{self.transforms[0].name} needs a list of several sources")
        if any(step.multi_source for step in self.transforms[1:]):
            raise ValueError("concat can only be the first transform")
        return self

    @property
    def sources(self) -> tuple[str, ...]:
        return self.source or ()


def _inbound_target(name: str) -> str:
    if name not in INBOUND_TARGETS:
        raise ValueError(f"inbound target {name!r} is not one of {', '.join(INBOUND_TARGETS)}")
    return name


InboundTarget = Annotated[str, AfterValidator(_inbound_target)]


class InboundField(BaseModel):
    """One host column set from one vendor field; a null after the transforms leaves the column alone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    source: FieldName  # the vendor's field (property) name
    transforms: tuple[TransformStep, ...] = ()
    # For a field our outbound mappings also write: what the host sends for it. The vendor holding that
    # value is our own write (the CRM's view column is cleared), never a change by the CRM's people.
    own_value: OwnValue | None = None

    @field_validator("transforms", mode="before")
    @classmethod
    def _none_is_empty(cls, raw: Any) -> Any:
        return () if raw is None else raw

    @model_validator(mode="after")
    def _single_source(self) -> InboundField:
        if any(step.multi_source for step in self.transforms):
            raise ValueError("an inbound field has one source; concat does not apply")
        return self


class InboundMapping(BaseModel):
    """The inbound half: which vendor changes the inbound sync and webhooks copy back to the host's users
    (contacts) or health goals (deals)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    object: str = Field(min_length=1)  # the vendor object whose changes are fetched
    match: FieldName  # the vendor field that holds the host record's id (our outbound key)
    fields: dict[InboundTarget, InboundField] = Field(min_length=1)

    @field_validator("fields")
    @classmethod
    def _one_record_kind(cls, fields: dict[str, InboundField]) -> dict[str, InboundField]:
        kinds = sorted({target.split(".", 1)[0] for target in fields})
        if len(kinds) > 1:
            raise ValueError(f"an inbound half writes one kind of host record, not {', '.join(kinds)}")
        return fields

    @property
    def record(self) -> str:
        """The host record kind the half writes: `user` or `health_goal`."""
        return next(iter(self.fields)).split(".", 1)[0]

    @property
    def vendor_fields(self) -> list[str]:
        """Every vendor field to fetch: the match key and each source, once, in order."""
        return list(dict.fromkeys([self.match, *(f.source for f in self.fields.values())]))


class Mapping(BaseModel):
    """A connector's mapping for one event type: destination object, upsert key and fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    connector: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    object: str = Field(min_length=1)
    record: RecordKind
    fields: dict[FieldName, FieldSpec] = Field(min_length=1)
    upsert_key: str  # declared after `fields` so that its check can see them
    inbound: InboundMapping | None = None
    event_type: str = ""  # set from the directory by the loader, never written in the file

    @field_validator("fields")
    @classmethod
    def _no_crm_owned_sources(cls, fields: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        owned = set(CRM_OWNED_SOURCES)
        for name, spec in fields.items():
            echoed = owned.intersection(spec.sources)
            if echoed:
                raise ValueError(
                    f"field {name!r} reads {', '.join(sorted(echoed))}, which the CRMs own through the "
                    "inbound sync; sending it back out would echo their own change"
                )
        return fields

    @field_validator("upsert_key")
    @classmethod
    def _upsert_key_required(cls, value: str, info: ValidationInfo) -> str:
        fields: dict[str, FieldSpec] | None = info.data.get("fields")
        if fields is None:
            return value  # the fields themselves are wrong and reported
        if value not in fields:
            raise ValueError(f"upsert_key {value!r} is not one of the fields")
        if not fields[value].constraints.required:
            raise ValueError(f"upsert_key {value!r} must be declared required")
        return value

    @property
    def source_columns(self) -> set[str]:
        """Every source column the mapping reads."""
        return {path for spec in self.fields.values() for path in spec.sources}

    @property
    def name(self) -> str:
        return f"{self.event_type}/{self.connector}"
