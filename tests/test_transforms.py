"""Every transform's vectorised result equals its per-value definition (hypothesis), plus known values."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.transforms import (
    MULTI_SOURCE,
    TRANSFORMS,
    ConcatParams,
    DefaultParams,
    E164Params,
    RoundParams,
    ValueMapParams,
)

NULLS = st.sampled_from([None, float("nan"), ""])
TEXT = st.one_of(NULLS, st.text(max_size=20), st.sampled_from([" Ann ", "ÉLODIE", "o'neil", "  "]))
PHONES = st.one_of(
    NULLS,
    st.from_regex(r"\+?1?[ (.-]*[2-9]\d{2}[ ).-]*\d{3}[ .-]*\d{4}", fullmatch=True),
    st.from_regex(r"\+\d{6,16}", fullmatch=True),
    st.text(alphabet="0123456789 ()-+.x", max_size=18),
)
DATES = st.one_of(
    NULLS,
    st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1)),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1)).map(date.isoformat),
)
NUMBERS = st.one_of(
    NULLS, st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.integers(-1000, 1000)
)


def same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return (bool(a == b) and type(a) is type(b)) or (
        isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) and a == b
    )


def check(name: str, values: list[Any], params: Any = None) -> None:
    transform = TRANSFORMS[name]
    vectorised = transform.vectorised(pd.Series(values, dtype=object), params).tolist()
    expected = [transform.per_value(v, params) for v in values]
    assert len(vectorised) == len(expected)
    for got, want in zip(vectorised, expected, strict=True):
        got = None if got is None or (isinstance(got, float) and math.isnan(got)) else got
        assert same(got, want), (name, got, want)


@settings(max_examples=60, deadline=None)
@given(st.lists(TEXT, max_size=25))
def test_string_transforms(values: list[Any]) -> None:
    for name in ("trim", "lower", "upper", "md5"):
        check(name, values)


@settings(max_examples=80, deadline=None)
@given(st.lists(PHONES, max_size=25), st.sampled_from(["1", "44"]))
def test_e164_phone(values: list[Any], country: str) -> None:
    check("e164_phone", values, E164Params(default_country_code=country))


@settings(max_examples=60, deadline=None)
@given(st.lists(DATES, max_size=25))
def test_dates(values: list[Any]) -> None:
    check("iso_date", values)
    check("epoch_ms_date", values)


@settings(max_examples=60, deadline=None)
@given(st.lists(NUMBERS, max_size=25), st.integers(0, 3))
def test_round(values: list[Any], digits: int) -> None:
    check("round", values, RoundParams(digits=digits))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(NULLS, st.sampled_from(["a", "b", "c", "zz"])), max_size=25),
    st.one_of(st.none(), st.just("other")),
)
def test_value_map_and_default(values: list[Any], default: str | None) -> None:
    check("value_map", values, ValueMapParams(map={"a": "A", "b": "B"}, default=default))
    check("default", values, DefaultParams(value="n/a"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(TEXT, TEXT, TEXT), max_size=20), st.sampled_from([" ", ", ", ""]))
def test_concat(rows: list[tuple[Any, Any, Any]], separator: str) -> None:
    concat, per_value, _ = MULTI_SOURCE["concat"]
    frame = (
        pd.DataFrame(rows, columns=["a", "b", "c"], dtype=object)
        if rows
        else pd.DataFrame({"a": [], "b": [], "c": []}, dtype=object)
    )
    params = ConcatParams(separator=separator)
    got = concat(frame, params).tolist()
    assert got == [per_value(list(row), params) for row in rows]


def test_known_values() -> None:
    md5 = TRANSFORMS["md5"].vectorised(pd.Series(["jane.doe@example.com"]), None)
    assert md5.tolist() == ["0cba00ca3da1b283a57287bcceb17e35"]
    phones = TRANSFORMS["e164_phone"].vectorised(
        pd.Series(["(555) 010-1234", "1-555-010-1234", "+44 20 7946 0958", "12", None]), E164Params()
    )
    assert phones.tolist() == ["+15550101234", "+15550101234", "+442079460958", "12", None]
    epoch = TRANSFORMS["epoch_ms_date"].vectorised(
        pd.Series([date(2024, 1, 2), "2024-01-02T23:59:59Z"]), None
    )
    assert epoch.tolist() == [1704153600000, 1704153600000]
    assert TRANSFORMS["iso_date"].vectorised(
        pd.Series([datetime(2024, 1, 2, 5, tzinfo=UTC)]), None
    ).tolist() == ["2024-01-02"]
