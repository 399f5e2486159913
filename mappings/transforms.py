"""The registry of named transforms: each a vectorised function over a Series and its per-value definition."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class E164Params(Params):
    default_country_code: str = "1"


class ValueMapParams(Params):
    map: dict[str, Any]
    default: Any = None


class ConcatParams(Params):
    separator: str = " "


class DefaultParams(Params):
    value: Any


class RoundParams(Params):
    digits: int = 0


def is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NaT or (not isinstance(value, str | list | dict | tuple) and bool(pd.isna(value)))


def _nulls_to_none(series: pd.Series) -> pd.Series:
    out = series.astype(object)
    return out.where(out.notna(), None)


def _strings(series: pd.Series, fn: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply a string operation to the non-null values; empty results become None."""
    out = _nulls_to_none(series)
    mask = out.notna()
    if mask.any():
        out.loc[mask] = fn(out.loc[mask].astype(str)).to_numpy(dtype=object)
    return out.mask(out.eq(""), None)


# --------------------------------------------------------------------------- trim, lower, upper


def trim_v(series: pd.Series, _: Params | None) -> pd.Series:
    return _strings(series, lambda s: s.str.strip())


def trim_1(value: Any, _: Params | None) -> Any:
    return None if is_null(value) or str(value).strip() == "" else str(value).strip()


def lower_v(series: pd.Series, _: Params | None) -> pd.Series:
    return _strings(series, lambda s: s.str.lower())


def lower_1(value: Any, _: Params | None) -> Any:
    return None if is_null(value) or str(value) == "" else str(value).lower()


def upper_v(series: pd.Series, _: Params | None) -> pd.Series:
    return _strings(series, lambda s: s.str.upper())


def upper_1(value: Any, _: Params | None) -> Any:
    return None if is_null(value) or str(value) == "" else str(value).upper()


# --------------------------------------------------------------------------- E.164 phone

_NOT_DIGIT = re.compile(r"\D")


def e164_v(series: pd.Series, params: Params | None) -> pd.Series:
    cc = params.default_country_code if isinstance(params, E164Params) else "1"

    def convert(s: pd.Series) -> pd.Series:
        stripped = s.str.strip()
        plus = stripped.str.startswith("+")
        digits = stripped.str.replace(r"\D", "", regex=True)
        n = digits.str.len()
        national = "+" + cc + digits
        with_cc = "+" + digits
        result = digits.where(digits != "", stripped)
        result = result.mask(~plus & (n == 10), national)
        result = result.mask(~plus & (n == 10 + len(cc)) & digits.str.startswith(cc), with_cc)
        result = result.mask(plus & n.between(8, 15), with_cc)
        return result

    return _strings(series, convert)


def e164_1(value: Any, params: Params | None) -> Any:
    cc = params.default_country_code if isinstance(params, E164Params) else "1"
    if is_null(value):
        return None
    stripped = str(value).strip()
    if stripped == "":
        return None
    digits = _NOT_DIGIT.sub("", stripped)
    if stripped.startswith("+") and 8 <= len(digits) <= 15:
        return "+" + digits
    if not stripped.startswith("+") and len(digits) == 10:
        return "+" + cc + digits
    if not stripped.startswith("+") and len(digits) == 10 + len(cc) and digits.startswith(cc):
        return "+" + digits
    return digits if digits else stripped


# --------------------------------------------------------------------------- dates


def _as_utc_timestamps(series: pd.Series) -> pd.Series:
    out = pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns, UTC]")
    mask = series.notna()
    if mask.any():
        values = series.loc[mask]
        parsed = pd.to_datetime(values.map(_normalise_date), utc=True, errors="coerce", format="ISO8601")
        out.loc[mask] = parsed
    return out


def _normalise_date(value: Any) -> Any:
    # a plain date is that calendar day; a naive datetime is taken as UTC
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value


def _one_timestamp(value: Any) -> pd.Timestamp | None:
    if is_null(value):
        return None
    try:
        ts = pd.to_datetime(_normalise_date(value), utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return None
    return None if pd.isna(ts) else ts


def iso_date_v(series: pd.Series, _: Params | None) -> pd.Series:
    stamps = _as_utc_timestamps(series)
    return _nulls_to_none(stamps.dt.strftime("%Y-%m-%d"))


def iso_date_1(value: Any, _: Params | None) -> Any:
    ts = _one_timestamp(value)
    return None if ts is None else ts.strftime("%Y-%m-%d")


def epoch_ms_date_v(series: pd.Series, _: Params | None) -> pd.Series:
    stamps = _as_utc_timestamps(series).dt.floor("D")
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    ms = (stamps - epoch) // pd.Timedelta(milliseconds=1)
    return _nulls_to_none(ms.astype("Int64"))


def epoch_ms_date_1(value: Any, _: Params | None) -> Any:
    ts = _one_timestamp(value)
    if ts is None:
        return None
    midnight = ts.floor("D")
    return int((midnight - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(milliseconds=1))


# --------------------------------------------------------------------------- value map, default, round, md5


def value_map_v(series: pd.Series, params: Params | None) -> pd.Series:
    assert isinstance(params, ValueMapParams)
    out = _nulls_to_none(series)
    keys = out.map(lambda v: None if v is None else str(v))
    mapped = keys.map(params.map)
    known = keys.isin(list(params.map))
    result = out.where(~known, mapped)
    if params.default is not None:
        result = result.where(known | out.isna(), params.default)
    return _nulls_to_none(result)


def value_map_1(value: Any, params: Params | None) -> Any:
    assert isinstance(params, ValueMapParams)
    if is_null(value):
        return None
    key = str(value)
    if key in params.map:
        return params.map[key]
    return params.default if params.default is not None else value


def default_v(series: pd.Series, params: Params | None) -> pd.Series:
    assert isinstance(params, DefaultParams)
    out = _nulls_to_none(series)
    return out.where(out.notna(), params.value)


def default_1(value: Any, params: Params | None) -> Any:
    assert isinstance(params, DefaultParams)
    return params.value if is_null(value) else value


def round_v(series: pd.Series, params: Params | None) -> pd.Series:
    digits = params.digits if isinstance(params, RoundParams) else 0
    numbers = pd.to_numeric(series, errors="coerce").round(digits)
    return _nulls_to_none(numbers)


def round_1(value: Any, params: Params | None) -> Any:
    digits = params.digits if isinstance(params, RoundParams) else 0
    if is_null(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    # numpy's rounding (round half to even on the scaled value) is the definition, as in the vectorised form
    return None if math.isnan(number) else float(np.round(number, digits))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def md5_v(series: pd.Series, _: Params | None) -> pd.Series:
    out = _nulls_to_none(series)
    mask = out.notna()
    # hashlib has no vectorised form; one call per value is the operation itself
    out.loc[mask] = out.loc[mask].astype(str).map(_md5)
    return out


def md5_1(value: Any, _: Params | None) -> Any:
    return None if is_null(value) else _md5(str(value))


# --------------------------------------------------------------------------- concat (several sources)


def concat_frame(frame: pd.DataFrame, params: Params | None) -> pd.Series:
    sep = params.separator if isinstance(params, ConcatParams) else " "
    result: pd.Series | None = None
    for column in frame.columns:
        part = _nulls_to_none(frame[column])
        part = part.where(part.isna(), part.astype(str))
        part = part.mask(part.eq(""), None)
        if result is None:
            result = part
            continue
        both = result.notna() & part.notna()
        joined = result.where(~both, result.astype(str) + sep + part.astype(str))
        result = joined.where(joined.notna(), part)
    assert result is not None
    return _nulls_to_none(result)


def concat_1(values: list[Any], params: Params | None) -> Any:
    sep = params.separator if isinstance(params, ConcatParams) else " "
    text = sep.join(str(v) for v in values if not is_null(v) and str(v) != "")
    return text or None


@dataclass(frozen=True)
class Transform:
    """A named transform: the vectorised function the pipeline uses and the per-value rule it must equal."""

    name: str
    vectorised: Callable[[pd.Series, Params | None], pd.Series]
    per_value: Callable[[Any, Params | None], Any]
    params: type[Params] | None = None
    params_required: bool = False


TRANSFORMS: dict[str, Transform] = {
    t.name: t
    for t in (
        Transform("trim", trim_v, trim_1),
        Transform("lower", lower_v, lower_1),
        Transform("upper", upper_v, upper_1),
        Transform("e164_phone", e164_v, e164_1, E164Params),
        Transform("iso_date", iso_date_v, iso_date_1),
        Transform("epoch_ms_date", epoch_ms_date_v, epoch_ms_date_1),
        Transform("value_map", value_map_v, value_map_1, ValueMapParams, params_required=True),
        Transform("default", default_v, default_1, DefaultParams, params_required=True),
        Transform("round", round_v, round_1, RoundParams),
        Transform("md5", md5_v, md5_1),
    )
}
# concat reduces several source columns to one and so must come first when a field has several sources.
MULTI_SOURCE = {"concat": (concat_frame, concat_1, ConcatParams)}
