"""Apply a mapping to a frame, vectorised: destination fields from source paths through named transforms."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mappings.schema import NESTED_SOURCES, FieldSpec, Mapping
from mappings.transforms import (
    TRANSFORMS,
    MultiSourceTransform,
    Transform,
    blanks_to_none,
    is_blank,
    nulls_to_none,
)

META_COLUMNS = ("_record_key", "_event_id", "_user_id")


class MissingSourceColumns(KeyError):
    """The source frame lacks columns the mapping reads; the message names the mapping and the columns."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# Up to this many rows a field is computed with the transforms' per-value definitions (which the property
# tests hold equal to the vectorised forms, types included): pandas' cost per call outweighs per-row work.
PER_VALUE_ROWS = 16


def _per_value(spec: FieldSpec, source: dict[str, list[Any]]) -> list[Any]:
    assert spec.source is not None
    steps = list(spec.transforms)
    columns = [source[column] for column in spec.source]
    values: list[Any]
    if len(spec.source) > 1:
        joiner = TRANSFORMS[steps[0].name]
        assert isinstance(joiner, MultiSourceTransform)  # the schema puts it first
        values = [joiner.per_value(list(row), steps[0].params) for row in zip(*columns, strict=True)]
        steps = steps[1:]
    else:
        values = columns[0]
    for step in steps:
        transform = TRANSFORMS[step.name]
        assert isinstance(transform, Transform)  # the schema allows a multi-source one only first
        values = [transform.per_value(v, step.params) for v in values]
    return [None if is_blank(v) else v for v in values]


def field_values(
    spec: FieldSpec, source: pd.DataFrame, as_lists: dict[str, list[Any]] | None = None
) -> pd.Series:
    """One destination column: the literal, or the source column(s) through the field's transforms.

    `as_lists` (the source's columns as lists, for a small frame) selects the per-value definitions.
    """
    if spec.source is None:
        return pd.Series([spec.value] * len(source), index=source.index, dtype=object)
    if as_lists is not None:
        return pd.Series(_per_value(spec, as_lists), index=source.index, dtype=object)
    steps = list(spec.transforms)
    values: pd.Series
    if len(spec.source) > 1:
        joiner = TRANSFORMS[steps[0].name]
        assert isinstance(joiner, MultiSourceTransform)  # the schema puts it first
        values = joiner.vectorised(source[list(spec.source)], steps[0].params)
        steps = steps[1:]
    else:
        values = source[spec.source[0]]
    for step in steps:
        transform = TRANSFORMS[step.name]
        assert isinstance(transform, Transform)  # the schema allows a multi-source one only first
        values = transform.vectorised(values, step.params)
    return blanks_to_none(values)


def _ids(ids: pd.Series) -> pd.Series:
    """Ids as Python values, nulls None; an integer id stays an int when nulls made its column float."""
    if pd.api.types.is_float_dtype(ids.dtype):
        ids = ids.astype("Int64")
    return nulls_to_none(ids)


def _sparse(column: str) -> bool:
    """A pivoted column (`assessment.scores.<category>`): it exists only when some row of the batch has it."""
    kind, _, rest = column.partition(".")
    return any(rest.startswith(f"{nested}.") for nested in NESTED_SOURCES.get(kind, ()))


def apply_mapping(mapping: Mapping, source: pd.DataFrame) -> pd.DataFrame:
    """The destination frame: meta columns, then one column per mapped field, and nothing else.

    Args:
        mapping: the connector's mapping for the frame's event type.
        source: the extracted frame, one row per record, columns named by source path.

    Returns:
        A frame with `source`'s index, object columns `_record_key` ("user:42"), `_event_id`, `_user_id`
        and the mapping's destination fields in mapping order; nulls and empty strings are None (so is a
        score category that no row of the batch has).
    """
    record_id = f"{mapping.record}.id"
    needed = mapping.source_columns | {record_id, "event.id", "user.id"}
    absent = needed - set(source.columns)
    if any(_sparse(c) for c in absent):  # no row of this batch has that score: null, like a row without it
        source = source.assign(**{c: None for c in absent if _sparse(c)})
    missing = sorted(c for c in absent if not _sparse(c))
    if missing:
        raise MissingSourceColumns(f"mapping {mapping.name}: source columns missing: {', '.join(missing)}")
    record_ids = _ids(source[record_id])
    record_key = (mapping.record + ":" + record_ids.astype(str)).astype(object)
    columns: dict[str, pd.Series] = {
        "_record_key": record_key.where(record_ids.notna(), None),
        "_event_id": nulls_to_none(source["event.id"]),
        "_user_id": _ids(source["user.id"]),
    }
    # A small frame's columns as lists, read once: a pandas column access costs more than its values.
    as_lists: dict[str, list[Any]] | None = None
    if len(source) <= PER_VALUE_ROWS:
        as_lists = {str(k): v for k, v in source[sorted(mapping.source_columns)].to_dict("list").items()}
    for name, spec in mapping.fields.items():
        columns[name] = field_values(spec, source, as_lists)
    return pd.DataFrame(columns, index=source.index, dtype=object)
