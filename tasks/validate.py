"""Validate: a Great Expectations suite from the mapping's constraints splits valid from rejected rows."""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mappings import Mapping
from mappings.frame import META_COLUMNS

# Before GX is first imported anywhere through this module: the machine is offline.
os.environ["GX_ANALYTICS_ENABLED"] = "false"

AT = "_at"  # the long frame's row id handed to GX: the only thing kept from its results


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


def _no_fingerprints() -> None:
    """GX fingerprints every in-memory batch it is handed (a hash of every cell, twice a validation: a
    third of a 2,000-row batch's validation) only to mark the batch in its results, which are never kept
    here. Health data is not hashed for nothing: frames of every size count as above GX's threshold."""
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0


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


ExpectationKey = tuple[str, str]  # (expectation class name, its arguments as canonical JSON)
NOT_NULL = "ExpectColumnValuesToNotBeNull"


def expectation_key(expectation: str, arguments: dict[str, Any]) -> ExpectationKey:
    return expectation, json.dumps(arguments, sort_keys=True, default=str)


@dataclass(frozen=True)
class Block:
    """The rows of the long frame holding one field of one part (a mapped frame), in the part's order."""

    part: int
    field: str
    start: int
    stop: int


@dataclass
class LongFrame:
    """Every checked value of every part, one row per (part, record, field), one column per distinct
    expectation: an expectation declared on many fields of many destinations runs once over all of them.

    A cell outside an expectation's fields is null (GX skips nulls in every expectation but "not null",
    whose column is filled with a present value instead).
    """

    frame: pd.DataFrame
    blocks: list[Block]
    columns: dict[ExpectationKey, str]
    members: dict[ExpectationKey, list[Block]]

    @classmethod
    def of(cls, parts: Sequence[tuple[Mapping, pd.DataFrame]]) -> LongFrame:
        wanted: list[tuple[int, str, list[ExpectationKey]]] = []
        for p, (mapping, _) in enumerate(parts):
            by_field: dict[str, list[ExpectationKey]] = {}
            for column, expectation, arguments in expectations_for(mapping):
                by_field.setdefault(column, []).append(expectation_key(expectation, arguments))
            wanted += [(p, column, keys) for column, keys in by_field.items()]
        total = sum(len(parts[p][1]) for p, _, _ in wanted)
        columns: dict[ExpectationKey, str] = {}
        members: dict[ExpectationKey, list[Block]] = {}
        data: dict[str, np.ndarray[Any, Any]] = {}
        blocks: list[Block] = []
        at = 0
        for p, column, keys in wanted:
            values = parts[p][1][column].to_numpy(dtype=object)
            block = Block(p, column, at, at + len(values))
            blocks.append(block)
            for key in keys:
                name = columns.setdefault(key, f"x{len(columns)}")
                if name not in data:
                    data[name] = np.full(total, True if key[0] == NOT_NULL else None, dtype=object)
                data[name][block.start : block.stop] = values
                members.setdefault(key, []).append(block)
            at = block.stop
        frame = pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in data.items()})
        frame[AT] = np.arange(total)
        return cls(frame, blocks, columns, members)


def _label(block: Block, expectation_type: str) -> str:
    return f"{block.field}: {expectation_type}"


class _ThreadValidator:
    """GX contexts are not thread-safe: each thread builds and keeps its own context and suites."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.runs = 0  # GX validation runs, every thread: what the cost of a batch is counted in
        self.checked = 0  # expectations handed to those runs (GX costs some CPU-ms each, whatever the rows)
        self.runs_lock = threading.Lock()

    def _batch_definition(self) -> Any:
        definition = getattr(self.local, "batch_definition", None)
        if definition is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            _quiet_gx()
            _no_fingerprints()
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

    def _suite(self, expectations: tuple[tuple[ExpectationKey, str], ...]) -> Any:
        suite = self.local.suites.get(expectations)
        if suite is None:
            import great_expectations as gx

            suite = gx.ExpectationSuite(name=f"checks.{len(self.local.suites)}")
            for (expectation, arguments), column in expectations:
                expectation_class = getattr(gx.expectations, expectation)
                suite.add_expectation(expectation_class(column=column, **json.loads(arguments)))
            self.local.suites[expectations] = suite
        return suite

    def _results(
        self, frame: pd.DataFrame, expectations: tuple[tuple[ExpectationKey, str], ...], *, rows: bool
    ) -> Any:
        with self.runs_lock:
            self.runs += 1
            self.checked += len(expectations)
        batch = self._batch_definition().get_batch(batch_parameters={"dataframe": frame})
        result_format: Any = (
            {"result_format": "COMPLETE", "unexpected_index_column_names": [AT]} if rows else "BOOLEAN_ONLY"
        )
        return batch.validate(self._suite(expectations), result_format=result_format).results

    def failed_rows(self, parts: Sequence[tuple[Mapping, pd.DataFrame]]) -> dict[int, dict[int, set[str]]]:
        """Part → row position → the failed labels ("field: expectation_type") of that row.

        One GX run with every distinct expectation that has a value to check (results as booleans, the
        cheap format); only the expectations that failed run again for the rows. One that could not run on
        a column mixing several fields is tried on each field alone, so it rejects only the rows it could
        not check. An expectation other than "not null" whose column holds no value in this batch (an
        optional field nobody filled) is not handed to GX: GX skips nulls, so it passes every row anyway,
        and each expectation costs GX the same whatever the rows.
        """
        long = LongFrame.of(parts)
        if not len(long.frame):
            return {}
        every = tuple(
            (key, column)
            for key, column in long.columns.items()
            if key[0] == NOT_NULL or long.frame[column].notna().any()
        )
        if not every:
            return {}
        by_column = {column: key for key, column in long.columns.items()}
        failed = tuple(
            (by_column[item.expectation_config.kwargs["column"]], item.expectation_config.kwargs["column"])
            for item in self._results(long.frame, every, rows=False)
            if not item.success
        )
        out: dict[int, dict[int, set[str]]] = {}

        def mark(block: Block, positions: Sequence[int], label: str) -> None:
            rows = out.setdefault(block.part, {})
            for at in positions:
                rows.setdefault(at - block.start, set()).add(label)

        if not failed:
            return out
        for item in self._results(long.frame, failed, rows=True):
            if item.success:
                continue
            column = item.expectation_config.kwargs["column"]
            key = by_column[column]
            if _raised(item.exception_info):
                for block in long.members[key]:
                    self._one_block(long, key, column, block, mark)
                continue
            # Each entry also carries the failing value: only the row id leaves this loop.
            ats = sorted(int(entry[AT]) for entry in item.result.get("unexpected_index_list") or ())
            for block in long.members[key]:
                lo, hi = bisect_left(ats, block.start), bisect_left(ats, block.stop)
                mark(block, ats[lo:hi], _label(block, item.expectation_config.type))
        return out

    def _one_block(
        self,
        long: LongFrame,
        key: ExpectationKey,
        column: str,
        block: Block,
        mark: Callable[[Block, Sequence[int], str], None],
    ) -> None:
        """An expectation on one field alone; if it still cannot run, every row of the field fails it."""
        frame = long.frame.iloc[block.start : block.stop][[column, AT]]
        [item] = self._results(frame, ((key, column),), rows=True)
        if item.success:
            return
        label = _label(block, item.expectation_config.type)
        ats = [int(entry[AT]) for entry in item.result.get("unexpected_index_list") or ()]
        if not ats and _raised(item.exception_info):
            ats = list(range(block.start, block.stop))  # it could not run: reject rather than pass
        mark(block, ats, label)


_validator = _ThreadValidator()


def _split(mapping: Mapping, frame: pd.DataFrame, labels_by_row: dict[int, set[str]]) -> ValidationResult:
    if not labels_by_row:
        return ValidationResult(frame, [])
    bad = sorted(labels_by_row)
    meta = frame.iloc[bad][list(META_COLUMNS)].to_numpy(dtype=object)
    rejected = [
        Rejection(
            record_key="" if record_key is None else str(record_key),
            event_id=None if event_id is None else str(event_id),
            user_id=None if user_id is None else int(user_id),
            failed=tuple(sorted(labels_by_row[row])),
        )
        for row, (record_key, event_id, user_id) in zip(bad, meta, strict=True)
    ]
    keep = np.ones(len(frame), dtype=bool)
    keep[bad] = False
    return ValidationResult(frame.iloc[keep], rejected)


def validate_parts(parts: Sequence[tuple[Mapping, pd.DataFrame]]) -> list[ValidationResult]:
    """Split each mapped frame into the rows meeting every declared constraint and rejections naming what
    failed; all frames are checked in one Great Expectations run.

    Args:
        parts: (mapping, the output of `apply_mapping` for it) per destination; the mapping's constraints
            are the expectations.

    Returns:
        Per part, in order: the valid rows (same index and columns) and one `Rejection` per other row,
        with ids and the failed expectations only.
    """
    failures = _validator.failed_rows(parts)
    return [_split(mapping, frame, failures.get(p, {})) for p, (mapping, frame) in enumerate(parts)]


def validate_mapped(mapping: Mapping, frame: pd.DataFrame) -> ValidationResult:
    """`validate_parts` for one mapped frame."""
    [result] = validate_parts([(mapping, frame)])
    return result
