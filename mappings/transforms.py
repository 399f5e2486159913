"""The registry of named transforms: each a vectorised function over a Series and its per-value definition.

Adding a transform is one entry in `TRANSFORMS`: its name, the vectorised function the pipeline runs, the
per-value function that defines what it means (the property tests hold the two equal), and the pydantic
model of its parameters (or None). Every transform passes nulls through as None, never as "nan" or "None".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

# The pure-Python string storage keeps `.str` operations identical to Python's own str methods (the
# per-value definitions); pyarrow storage differs on some Unicode case mappings and whitespace.
TEXT = pd.StringDtype(storage="python")
EPOCH = date(1970, 1, 1)
MS_PER_DAY = 86_400_000


class Params(BaseModel):
    """Base of every transform's parameters: unknown keys are mistakes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class E164Params(Params):
    model_config = ConfigDict(coerce_numbers_to_str=True)  # `default_country_code: 1` means "1"

    default_country_code: str = Field(default="1", pattern=r"^[1-9][0-9]{0,2}$")


MapKey = str | int | float | bool


class ValueMapParams(Params):
    map: dict[MapKey, Any] = Field(min_length=1)
    default: Any = None


class ConcatParams(Params):
    separator: str = " "


class DefaultParams(Params):
    value: Any


class RoundParams(Params):
    digits: int = Field(default=0, ge=0, le=15)


class BandParams(Params):
    """Labels by lower bound (`{low: 0, medium: 4, high: 7}`): a value takes the label of the highest bound
    it reaches; a value below every bound has none."""

    bands: dict[str, float] = Field(min_length=1)

    def ordered(self) -> list[tuple[float, str]]:
        return sorted((bound, label) for label, bound in self.bands.items())


class TemplateParams(Params):
    # One `{}`, where the value goes; `{}` alone is the value as text (an id: 12.0 from a join is "12").
    template: str = Field(min_length=2, pattern=r"^[^{}]*\{\}[^{}]*$")


class LinkParams(Params):
    """A link into a site's own systems: the base URL its setting names (`ennu.settings.link_base`), then
    `path` with the value at its one `{}`: `{link: {to: host_app, path: "/users/{}"}}`."""

    to: Literal["host_app", "ehr"]
    path: str = Field(min_length=3, pattern=r"^/[^{}]*\{\}[^{}]*$")

    def template(self) -> TemplateParams:
        from ennu.settings import link_base

        return TemplateParams(template=link_base(self.to) + self.path)


P = TypeVar("P", bound=Params | None)


@dataclass(frozen=True)
class Transform(Generic[P]):
    """A transform of one column: the vectorised function and the per-value rule it must equal."""

    name: str
    vectorised: Callable[[pd.Series, P], pd.Series]
    per_value: Callable[[Any, P], Any]
    params: type[Params] | None = None


@dataclass(frozen=True)
class MultiSourceTransform(Generic[P]):
    """A transform that reduces several source columns to one; it must be a field's first transform."""

    name: str
    vectorised: Callable[[pd.DataFrame, P], pd.Series]
    per_value: Callable[[list[Any], P], Any]
    params: type[Params] | None = None


# --------------------------------------------------------------------------- nulls and text


def is_null(value: Any) -> bool:
    """None, NaN, NaT and pandas NA (a list or mapping value is never null)."""
    if value is None:
        return True
    if isinstance(value, str | list | dict | tuple):
        return False
    return bool(pd.isna(value))


def is_blank(value: Any) -> bool:
    """Null, or the empty string."""
    return is_null(value) or (isinstance(value, str) and value == "")


def nulls_to_none(series: pd.Series) -> pd.Series:
    """An object Series in which every null is None."""
    out = series.astype(object)
    return out.where(out.notna(), None)


def blanks_to_none(series: pd.Series) -> pd.Series:
    """An object Series in which every null and every empty string is None."""
    out = nulls_to_none(series)
    return out.mask(out.eq(""), None)


def _on_text(series: pd.Series, operation: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply a string operation to the values as text; blanks in and out are None."""
    out = blanks_to_none(series)
    present = out.notna()
    if present.any():
        out.loc[present] = operation(out.loc[present].astype(TEXT)).to_numpy(dtype=object)
    return out.mask(out.eq(""), None)


def _text_1(value: Any, operation: Callable[[str], str]) -> Any:
    return None if is_blank(value) else (operation(str(value)) or None)


# --------------------------------------------------------------------------- trim, lower, upper, pseudonym


def trim_v(series: pd.Series, _: None) -> pd.Series:
    return _on_text(series, lambda s: s.str.strip())


def trim_1(value: Any, _: None) -> Any:
    return _text_1(value, str.strip)


def lower_v(series: pd.Series, _: None) -> pd.Series:
    return _on_text(series, lambda s: s.str.lower())


def lower_1(value: Any, _: None) -> Any:
    return _text_1(value, str.lower)


def upper_v(series: pd.Series, _: None) -> pd.Series:
    return _on_text(series, lambda s: s.str.upper())


def upper_1(value: Any, _: None) -> Any:
    return _text_1(value, str.upper)


def _pseudonym(text: str) -> str:
    from ennu.pseudonyms import pseudonym

    return pseudonym(text)


def pseudonym_v(series: pd.Series, _: None) -> pd.Series:
    """HMAC-SHA256 under the hub's secret pepper (ennu/pseudonyms.py): never a plain, reversible hash."""
    from ennu.pseudonyms import current_pepper, pseudonym

    pepper = current_pepper()  # once per column, not per value
    # hmac has no vectorised form in pandas or numpy: one C call per value is the operation itself
    return _on_text(series, lambda s: s.map(lambda v: pseudonym(v, pepper)))


def pseudonym_1(value: Any, _: None) -> Any:
    return _text_1(value, _pseudonym)


# --------------------------------------------------------------------------- E.164 phone


def e164_v(series: pd.Series, params: E164Params) -> pd.Series:
    cc = params.default_country_code

    def convert(raw: pd.Series) -> pd.Series:
        text = raw.str.strip()
        plus = text.str.startswith("+").to_numpy(dtype=bool)
        # ASCII digits only: \d would also keep other scripts' digits
        digits = text.str.replace(r"[^0-9]", "", regex=True)
        n = digits.str.len().to_numpy()
        with_cc = digits.str.startswith(cc).to_numpy(dtype=bool)
        international = ("+" + digits).to_numpy(dtype=object)
        chosen = np.select(
            [plus & (n >= 8) & (n <= 15), ~plus & (n == 10), ~plus & (n == 10 + len(cc)) & with_cc],
            [international, ("+" + cc + digits).to_numpy(dtype=object), international],
            # cleaned but invalid, for the phone constraint to reject
            default=digits.where(n > 0, text).to_numpy(dtype=object),
        )
        return pd.Series(chosen, index=raw.index, dtype=object)

    return _on_text(series, convert)


def e164_1(value: Any, params: E164Params) -> Any:
    if is_blank(value):
        return None
    cc = params.default_country_code
    text = str(value).strip()
    digits = "".join(c for c in text if "0" <= c <= "9")
    if text.startswith("+") and 8 <= len(digits) <= 15:
        return "+" + digits
    if not text.startswith("+") and len(digits) == 10:
        return "+" + cc + digits
    if not text.startswith("+") and len(digits) == 10 + len(cc) and digits.startswith(cc):
        return "+" + digits
    return (digits or text) or None


# --------------------------------------------------------------------------- dates
# A value is read as a date through its ISO text (dates, datetimes and Timestamps print as ISO 8601); the
# text must start with a whole calendar date, so numbers, partial dates ("2024") and free text are no date.
# A naive datetime is taken as UTC; an aware one is converted to UTC before its date is taken.

CALENDAR_DATE = r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}"


def _utc_stamps(series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return pd.to_datetime(series, utc=True)
    values = series.astype(object)
    out = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]")
    present = values.loc[values.notna()]
    if present.empty:
        return out
    if pd.api.types.infer_dtype(present, skipna=True) in ("date", "datetime", "datetime64"):
        # dates and datetimes only: parsed as they are, which equals parsing their ISO text, only faster
        stamps = pd.to_datetime(present, utc=True, errors="coerce", format="ISO8601")
        out.loc[present.index] = stamps.where(stamps.dt.year >= 1000)
        return out
    text = present.astype(TEXT)
    text = text.loc[text.str.match(CALENDAR_DATE)]
    out.loc[text.index] = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    return out


def _utc_date(value: Any) -> date | None:
    if is_null(value):
        return None
    text = str(value)
    if not re.match(CALENDAR_DATE, text):
        return None
    stamp = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    return None if pd.isna(stamp) else date(stamp.year, stamp.month, stamp.day)


def iso_date_v(series: pd.Series, _: None) -> pd.Series:
    return nulls_to_none(_utc_stamps(series).dt.strftime("%Y-%m-%d"))


def iso_date_1(value: Any, _: None) -> Any:
    day = _utc_date(value)
    return None if day is None else day.isoformat()


def epoch_ms_date_v(series: pd.Series, _: None) -> pd.Series:
    days = _utc_stamps(series).dt.floor("D")
    ms = (days - pd.Timestamp(EPOCH, tz="UTC")) // pd.Timedelta(milliseconds=1)
    return nulls_to_none(ms.astype("Int64"))


def epoch_ms_date_1(value: Any, _: None) -> Any:
    day = _utc_date(value)
    return None if day is None else (day - EPOCH).days * MS_PER_DAY


# --------------------------------------------------------------------------- value map, default, round


def value_map_v(series: pd.Series, params: ValueMapParams) -> pd.Series:
    out = blanks_to_none(series)
    known = out.isin(list(params.map))
    result = out.where(~known, out.map(params.map))
    if params.default is not None:
        result = result.where(known | out.isna(), params.default)
    return nulls_to_none(result)


def value_map_1(value: Any, params: ValueMapParams) -> Any:
    if is_blank(value):
        return None
    if value in params.map:
        return params.map[value]
    return value if params.default is None else params.default


def default_v(series: pd.Series, params: DefaultParams) -> pd.Series:
    out = blanks_to_none(series)
    return out.where(out.notna(), params.value)


def default_1(value: Any, params: DefaultParams) -> Any:
    return params.value if is_blank(value) else value


def _numbers(series: pd.Series) -> pd.Series:
    """The values as floats; NaN where one is no number."""
    return pd.to_numeric(series.astype(object), errors="coerce").astype(float)


def _number(value: Any) -> float | None:
    """One value as a float; None where it is null or no number (NaN included)."""
    if is_null(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def round_v(series: pd.Series, params: RoundParams) -> pd.Series:
    return nulls_to_none(_numbers(series).round(params.digits))


def round_1(value: Any, params: RoundParams) -> Any:
    number = _number(value)
    # numpy's rounding (half to even on the scaled value) is the definition, as in the vectorised form
    return None if number is None else float(np.round(number, params.digits))


# --------------------------------------------------------------------------- band


def band_v(series: pd.Series, params: BandParams) -> pd.Series:
    numbers = _numbers(series)
    result = pd.Series(None, index=series.index, dtype=object)
    for bound, label in params.ordered():  # a loop over the few bands, not over rows
        result = result.mask(numbers >= bound, label)
    return nulls_to_none(result)


def band_1(value: Any, params: BandParams) -> Any:
    number = _number(value)
    if number is None:
        return None
    reached = [label for bound, label in params.ordered() if number >= bound]
    return reached[-1] if reached else None


# --------------------------------------------------------------------------- concat (several sources)


def concat_v(frame: pd.DataFrame, params: ConcatParams) -> pd.Series:
    result = pd.Series(None, index=frame.index, dtype=object)
    for column in frame.columns:  # a loop over the few source columns, not over rows
        part = blanks_to_none(frame[column])
        present = part.notna()
        if present.any():
            part.loc[present] = part.loc[present].astype(TEXT).to_numpy(dtype=object)
        part = part.mask(part.eq(""), None)
        both = result.notna() & part.notna()
        joined = result.where(~both, result.astype(TEXT) + params.separator + part.astype(TEXT))
        result = nulls_to_none(joined.where(joined.notna(), part))
    return result


def concat_1(values: list[Any], params: ConcatParams) -> Any:
    return params.separator.join(str(v) for v in values if not is_blank(v) and str(v) != "") or None


# --------------------------------------------------------------------------- template


def _as_text(value: Any) -> str:
    """An id as text: 12, 12.0 and "12" are all "12" (a join with misses turns integer ids into floats)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def template_v(series: pd.Series, params: TemplateParams) -> pd.Series:
    out = blanks_to_none(series)
    present = out.notna()
    if present.any():
        text = out.loc[present].map(_as_text).astype(TEXT)
        before, after = params.template.split("{}")
        out.loc[present] = (before + text + after).to_numpy(dtype=object)
    return out


def template_1(value: Any, params: TemplateParams) -> Any:
    return None if is_blank(value) else params.template.replace("{}", _as_text(value))


def link_v(series: pd.Series, params: LinkParams) -> pd.Series:
    return template_v(series, params.template())


def link_1(value: Any, params: LinkParams) -> Any:
    return template_1(value, params.template())


# --------------------------------------------------------------------------- biomarkers (mappings/loinc.yaml)


def biomarker_label_v(series: pd.Series, _: None) -> pd.Series:
    from mappings.loinc import load_loinc_table

    labels = {name: entry.label for name, entry in load_loinc_table().biomarkers.items()}
    names = _on_text(series, lambda s: s.str.strip().str.lower())
    return nulls_to_none(names.map(labels))


def biomarker_label_1(value: Any, _: None) -> Any:
    from mappings.loinc import load_loinc_table

    if is_blank(value):
        return None
    entry = load_loinc_table().entry(str(value).strip().lower())
    return None if entry is None else entry.label


def interpretation_flag_v(frame: pd.DataFrame, _: None) -> pd.Series:
    # One LOINC lookup and exact unit conversion per result: only critical results take the routes that
    # use it (`where: critical_biomarker`), a handful per batch.
    rows = frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None)
    return pd.Series(
        [interpretation_flag_1(list(row), None) for row in rows], index=frame.index, dtype=object
    )


def interpretation_flag_1(values: list[Any], _: None) -> Any:
    """N, L, H, LL or HH of [name, value, unit(, reference low, reference high)]; None when not judged."""
    from mappings.interpretation import flag_of

    clean = [None if is_blank(v) else v for v in values]
    flag = flag_of(*clean[:5])
    return None if flag is None else flag.value


TRANSFORMS: dict[str, Transform[Any] | MultiSourceTransform[Any]] = {
    t.name: t
    for t in (
        Transform("trim", trim_v, trim_1),
        Transform("lower", lower_v, lower_1),
        Transform("upper", upper_v, upper_1),
        Transform("pseudonym", pseudonym_v, pseudonym_1),
        Transform("e164_phone", e164_v, e164_1, E164Params),
        Transform("iso_date", iso_date_v, iso_date_1),
        Transform("epoch_ms_date", epoch_ms_date_v, epoch_ms_date_1),
        Transform("value_map", value_map_v, value_map_1, ValueMapParams),
        Transform("default", default_v, default_1, DefaultParams),
        Transform("round", round_v, round_1, RoundParams),
        Transform("band", band_v, band_1, BandParams),
        Transform("template", template_v, template_1, TemplateParams),
        Transform("link", link_v, link_1, LinkParams),
        Transform("biomarker_label", biomarker_label_v, biomarker_label_1),
        MultiSourceTransform("concat", concat_v, concat_1, ConcatParams),
        MultiSourceTransform("interpretation_flag", interpretation_flag_v, interpretation_flag_1),
    )
}
