"""Apply a mapping to a frame, vectorised: destination fields from source paths through named transforms."""

from __future__ import annotations

import pandas as pd

from mappings.schema import FieldSpec, Mapping
from mappings.transforms import MULTI_SOURCE, TRANSFORMS

META_COLUMNS = ("_record_key", "_event_id", "_user_id")


class MissingSourceColumns(KeyError):
    pass


def field_values(spec: FieldSpec, source: pd.DataFrame) -> pd.Series:
    if spec.source is None:
        return pd.Series([spec.value] * len(source), index=source.index, dtype=object)
    steps = list(spec.transforms)
    if isinstance(spec.source, tuple):
        concat, _, _ = MULTI_SOURCE[steps[0].name]
        values = concat(source[list(spec.source)], steps[0].params)
        steps = steps[1:]
    else:
        values = source[spec.source]
    for step in steps:
        values = TRANSFORMS[step.name].vectorised(values, step.params)
    out = values.astype(object)
    out = out.where(out.notna(), None)
    return out.mask(out.eq(""), None)


def apply_mapping(mapping: Mapping, source: pd.DataFrame) -> pd.DataFrame:
    """The destination frame: meta columns, then one column per mapped field, and nothing else."""
    needed = mapping.source_columns | {f"{mapping.record}.id", "event.id", "user.id"}
    missing = sorted(needed - set(source.columns))
    if missing:
        raise MissingSourceColumns(
            f"mapping {mapping.event_type}/{mapping.connector}: source columns missing: {', '.join(missing)}"
        )
    columns: dict[str, pd.Series] = {
        "_record_key": mapping.record + ":" + source[f"{mapping.record}.id"].astype("Int64").astype(str),
        "_event_id": source["event.id"].astype(object),
        "_user_id": source["user.id"].astype(object),
    }
    for name, spec in mapping.fields.items():
        columns[name] = field_values(spec, source)
    return pd.DataFrame(columns, index=source.index, dtype=object)
