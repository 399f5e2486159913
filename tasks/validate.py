"""Validate: a Great Expectations suite from the mapping's constraints splits valid from rejected rows."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from mappings import Mapping

if TYPE_CHECKING:
    import great_expectations as gx

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

EMAIL_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"  # noqa: E501
PHONE_PATTERN = r"^\+[1-9]\d{7,14}$"
ROW = "_row"


@dataclass(frozen=True)
class Rejection:
    """A record that failed its destination's expectations: ids and expectation names, never values."""

    record_key: str
    event_id: str | None
    user_id: int | None
    failed: tuple[str, ...]


@dataclass
class ValidationResult:
    valid: pd.DataFrame = field(repr=False)
    rejected: list[Rejection]

    def __repr__(self) -> str:
        return f"ValidationResult(valid={len(self.valid)} rows, rejected={len(self.rejected)})"


def expectations_for(mapping: Mapping) -> list[Any]:
    """One expectation per declared constraint of every field."""
    import great_expectations as gx

    e = gx.expectations
    out: list[Any] = []
    for name, spec in mapping.fields.items():
        c = spec.constraints
        if c.required:
            out.append(e.ExpectColumnValuesToNotBeNull(column=name))
        if c.email:
            out.append(e.ExpectColumnValuesToMatchRegex(column=name, regex=EMAIL_PATTERN))
        if c.phone:
            out.append(e.ExpectColumnValuesToMatchRegex(column=name, regex=PHONE_PATTERN))
        if c.range is not None:
            out.append(
                e.ExpectColumnValuesToBeBetween(column=name, min_value=c.range[0], max_value=c.range[1])
            )
        if c.enum is not None:
            out.append(e.ExpectColumnValuesToBeInSet(column=name, value_set=list(c.enum)))
        if c.max_length is not None:
            out.append(e.ExpectColumnValueLengthsToBeBetween(column=name, max_value=c.max_length))
    return out


def quiet_gx_logging() -> None:
    """GX's own log lines can quote data; keep only its errors."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations."):
            logging.getLogger(name).setLevel(logging.ERROR)


class _ThreadValidator:
    """Great Expectations contexts are not thread-safe: each thread builds and keeps its own."""

    def __init__(self) -> None:
        self.local = threading.local()

    def context(self) -> gx.data_context.AbstractDataContext:
        ctx = getattr(self.local, "context", None)
        if ctx is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            quiet_gx_logging()
            ctx = gx.get_context(mode="ephemeral")
            quiet_gx_logging()
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            source = ctx.data_sources.add_pandas("frames")
            asset = source.add_dataframe_asset("mapped")
            self.local.context = ctx
            self.local.batch_definition = asset.add_batch_definition_whole_dataframe("whole")
            self.local.suites = {}
        return ctx

    def validate(self, mapping: Mapping, frame: pd.DataFrame) -> dict[str, set[int]]:
        """Failed expectation label → positional rows that failed it."""
        import great_expectations as gx

        self.context()
        key = (mapping.event_type, mapping.connector, mapping.object, id(mapping))
        suite = self.local.suites.get(key)
        if suite is None:
            suite = gx.ExpectationSuite(
                name=f"{mapping.event_type}-{mapping.connector}-{len(self.local.suites)}"
            )
            for expectation in expectations_for(mapping):
                suite.add_expectation(expectation)
            self.local.suites[key] = suite
        batch = self.local.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(
            suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW]}
        )
        failures: dict[str, set[int]] = {}
        for item in result.results:
            if item.success:
                continue
            config = item.expectation_config
            column = config.kwargs.get("column") if config is not None else None
            label = f"{column}: {config.type if config is not None else 'expectation'}"
            # Keep only the row ids: the result also carries the failing values.
            rows = {int(entry[ROW]) for entry in item.result.get("unexpected_index_list") or []}
            if not rows and item.exception_info and item.exception_info.get("raised_exception"):
                rows = set(range(len(frame)))  # the expectation could not run: reject rather than pass
            failures[label] = rows
        del result
        return failures


_validator = _ThreadValidator()


def validate_mapped(mapping: Mapping, frame: pd.DataFrame) -> ValidationResult:
    """Split a mapped frame into rows that meet every constraint and rejections naming what failed."""
    if frame.empty or not any(
        spec.constraints != type(spec.constraints)() for spec in mapping.fields.values()
    ):
        return ValidationResult(frame, [])
    positional = frame.reset_index(drop=True)
    checked = positional.assign(**{ROW: range(len(positional))})
    failures = _validator.validate(mapping, checked)
    failed_by_row: dict[int, list[str]] = {}
    for label, rows in failures.items():
        for row in rows:
            failed_by_row.setdefault(row, []).append(label)
    meta = positional[["_record_key", "_event_id", "_user_id"]].to_dict("index")
    rejected = [
        Rejection(
            record_key=str(meta[row]["_record_key"]),
            event_id=None if meta[row]["_event_id"] is None else str(meta[row]["_event_id"]),
            user_id=None if meta[row]["_user_id"] is None else int(meta[row]["_user_id"]),
            failed=tuple(sorted(labels)),
        )
        for row, labels in sorted(failed_by_row.items())
    ]
    keep = ~pd.Series(range(len(positional))).isin(list(failed_by_row)).to_numpy()
    return ValidationResult(frame.loc[keep], rejected)


@task(name="validate", cache_policy=NONE)
def validate(mapping: Mapping, frame: pd.DataFrame) -> ValidationResult:
    """Great Expectations suite from the mapping's constraints; only counts are logged."""
    result = validate_mapped(mapping, frame)
    get_run_logger().info(
        "%s/%s: %d valid, %d rejected",
        mapping.connector,
        mapping.object,
        len(result.valid),
        len(result.rejected),
    )
    return result
