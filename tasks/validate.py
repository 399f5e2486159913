"""Validate: a Great Expectations suite from the mapping's constraints splits valid from rejected rows."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from mappings import Mapping
from mappings.frame import META_COLUMNS
from mappings.schema import Constraints

# Before GX is first imported anywhere through this module: the machine is offline.
os.environ["GX_ANALYTICS_ENABLED"] = "false"

ROW = "_row"  # positional row id handed to GX: the only thing kept from its results


@dataclass(frozen=True)
class Rejection:
    """A record that failed its destination's expectations: ids and expectation names, never values."""

    record_key: str
    event_id: str | None
    user_id: int | None
    failed: tuple[str, ...]  # "email: expect_column_values_to_match_regex"


@dataclass
class ValidationResult:
    """The rows that met every constraint (same columns) and one rejection per row that did not."""

    valid: pd.DataFrame = field(repr=False)
    rejected: list[Rejection]

    def __repr__(self) -> str:
        return f"ValidationResult(valid={len(self.valid)} rows, rejected={len(self.rejected)})"

    __str__ = __repr__


def _quiet_gx() -> None:
    """GX's log lines and warnings can quote data: keep none of them."""
    logging.getLogger("great_expectations").setLevel(logging.CRITICAL)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations."):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module=r"great_expectations(\.|$)")


SuiteKey = tuple[tuple[str, Constraints], ...]


def _suite_key(mapping: Mapping) -> SuiteKey:
    """A suite depends only on the fields' constraints: equal constraints share it."""
    return tuple((name, spec.constraints) for name, spec in mapping.fields.items())


def expectations_for(mapping: Mapping) -> list[tuple[str, str, dict[str, Any]]]:
    """(column, expectation class name, arguments) for every declared constraint of every field.

    A row with no record id cannot be sent or recorded, so `_record_key` must never be null.
    """
    out: list[tuple[str, str, dict[str, Any]]] = [("_record_key", "ExpectColumnValuesToNotBeNull", {})]
    for name, spec in mapping.fields.items():
        out.extend(
            (name, expectation, arguments) for expectation, arguments in spec.constraints.expectations()
        )
    return out


def _raised(info: dict[str, Any] | None) -> bool:
    """Whether GX could not run an expectation (its info is flat, or keyed by metric when a metric failed)."""
    if not info:
        return False
    if info.get("raised_exception"):
        return True
    return any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


class _ThreadValidator:
    """GX contexts are not thread-safe: each thread builds and keeps its own context and suites."""

    def __init__(self) -> None:
        self.local = threading.local()

    def _batch_definition(self) -> Any:
        definition = getattr(self.local, "batch_definition", None)
        if definition is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            _quiet_gx()
            context = gx.get_context(mode="ephemeral")
            _quiet_gx()  # GX creates some of its loggers on first use
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            asset = context.data_sources.add_pandas("mapped_frames").add_dataframe_asset("mapped")
            definition = asset.add_batch_definition_whole_dataframe("whole")
            self.local.context = context  # the batch definition reaches it; kept for clarity and lifetime
            self.local.batch_definition = definition
            self.local.suites = {}
        return definition

    def warm(self) -> None:
        """Build this thread's context now (the GX import and set-up cost seconds, once per thread)."""
        self._batch_definition()

    def _suite(self, mapping: Mapping) -> Any:
        key = _suite_key(mapping)
        suite = self.local.suites.get(key)
        if suite is None:
            import great_expectations as gx

            suite = gx.ExpectationSuite(name=f"{mapping.name}.{len(self.local.suites)}")
            for column, expectation_type, arguments in expectations_for(mapping):
                expectation_class = getattr(gx.expectations, expectation_type)
                suite.add_expectation(expectation_class(column=column, **arguments))
            self.local.suites[key] = suite
        return suite

    def failed_rows(self, mapping: Mapping, frame: pd.DataFrame) -> dict[str, set[int]]:
        """Failed expectation label ("field: expectation_type") → the `_row` ids that failed it."""
        definition = self._batch_definition()
        suite = self._suite(mapping)
        batch = definition.get_batch(batch_parameters={"dataframe": frame})
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
            # Each entry also carries the failing value: only the row id leaves this loop.
            rows = {int(entry[ROW]) for entry in item.result.get("unexpected_index_list") or ()}
            if not rows and _raised(item.exception_info):
                rows = set(range(len(frame)))  # the expectation could not run: reject rather than pass
            failures[label] = rows
        del result, batch
        return failures


_validator = _ThreadValidator()


def validate_mapped(mapping: Mapping, frame: pd.DataFrame) -> ValidationResult:
    """Split a mapped frame into the rows meeting every declared constraint and rejections naming what failed.

    Args:
        mapping: the mapping that produced `frame`; its constraints are the expectations.
        frame: the output of `apply_mapping` (meta columns and destination fields).

    Returns:
        The valid rows (same index and columns) and one `Rejection` per other row, with ids and the
        failed expectations only.
    """
    if frame.empty:
        return ValidationResult(frame, [])
    positional = frame.reset_index(drop=True)
    checked = positional.assign(**{ROW: range(len(positional))})
    failures = _validator.failed_rows(mapping, checked)
    labels_by_row: dict[int, list[str]] = {}
    for label, rows in failures.items():
        for row in rows:
            labels_by_row.setdefault(row, []).append(label)
    if not labels_by_row:
        return ValidationResult(frame, [])
    bad = sorted(labels_by_row)
    meta = positional.iloc[bad][list(META_COLUMNS)].to_numpy(dtype=object)
    rejected = [
        Rejection(
            record_key="" if record_key is None else str(record_key),
            event_id=None if event_id is None else str(event_id),
            user_id=None if user_id is None else int(user_id),
            failed=tuple(sorted(labels_by_row[row])),
        )
        for row, (record_key, event_id, user_id) in zip(bad, meta, strict=True)
    ]
    keep = ~positional.index.isin(bad)
    return ValidationResult(frame.loc[keep], rejected)


@task(name="validate", cache_policy=NONE)
def validate(mapping: Mapping, frame: pd.DataFrame) -> ValidationResult:
    """The validation stage as a Prefect task; logs counts only."""
    result = validate_mapped(mapping, frame)
    get_run_logger().info(
        "validate %s: %d valid, %d rejected", mapping.name, len(result.valid), len(result.rejected)
    )
    return result
