"""Every transform's vectorised result equals its per-value definition (hypothesis), plus known values."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.transforms import (
    TRANSFORMS,
    BandParams,
    ConcatParams,
    DefaultParams,
    E164Params,
    LinkParams,
    MultiSourceTransform,
    Params,
    RoundParams,
    TemplateParams,
    Transform,
    ValueMapParams,
)

NULLS = st.sampled_from([None, float("nan"), np.nan, pd.NA, pd.NaT, ""])
TEXT = st.one_of(
    NULLS,
    st.text(max_size=20),
    st.sampled_from(
        [" Ann ", "ÉLODIE", "o'neil", "  ", "straße", "İstanbul", "\u00a0x\u2028", "None", "nan"]
    ),
    st.integers(-5, 5),
)
PHONES = st.one_of(
    NULLS,
    st.from_regex(r"\+?1?[ (.-]*[2-9]\d{2}[ ).-]*\d{3}[ .-]*\d{4}", fullmatch=True),
    st.from_regex(r"\+\d{6,16}", fullmatch=True),
    st.text(alphabet="0123456789 ()-+.x", max_size=18),
    st.sampled_from(["+١٢٣٤٥٦٧٨٩٠", "555-0101 ext 12", "phone", "+", "0044 20 7946 0958", "44 20 7946 0958"]),
    st.integers(0, 10**12),
)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))])
DATES = st.one_of(
    NULLS,
    st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1)),
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2100, 1, 1)),  # naive: taken as UTC
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2100, 1, 1), timezones=ZONES),
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2100, 1, 1), timezones=ZONES).map(
        pd.Timestamp
    ),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1)).map(date.isoformat),
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2100, 1, 1), timezones=ZONES).map(
        datetime.isoformat
    ),
    st.sampled_from(["not a date", "2024-13-45", "yesterday", "5", "2024-01-02Z?"]),
    st.integers(-5, 5),
)
NUMBERS = st.one_of(
    NULLS,
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.integers(-1000, 1000),
    st.sampled_from(["7.44", "abc", Decimal("2.675"), float("inf")]),
)
KEYS = st.one_of(NULLS, st.sampled_from(["a", "b", "c", "zz", "A"]), st.integers(0, 3), st.booleans())


def same(got: Any, want: Any) -> bool:
    if got is None or want is None:
        return got is None and want is None
    if isinstance(got, float) and isinstance(want, float):
        return got == want or (math.isnan(got) and math.isnan(want))
    return bool(got == want) and type(got) is type(want)


def check(name: str, values: list[Any], params: Params | None = None) -> None:
    """The vectorised transform over a Series equals the per-value definition at every position."""
    transform = TRANSFORMS[name]
    assert isinstance(transform, Transform)
    series = pd.Series(values, dtype=object, index=pd.RangeIndex(len(values)) * 3)  # not 0..n-1
    got = transform.vectorised(series, params)
    assert list(got.index) == list(series.index)
    want = [transform.per_value(v, params) for v in values]
    for position, (g, w) in enumerate(zip(got.tolist(), want, strict=True)):
        assert same(g, w), (name, position, g, w)
    # the dtype pandas itself infers (str, float64, datetime64[us, tz]...) gives the same answer
    try:
        inferred = pd.Series(values)
    except (TypeError, ValueError):
        return
    if inferred.dtype != object:
        got = transform.vectorised(inferred, params)
        want = [transform.per_value(v, params) for v in inferred.tolist()]
        for position, (g, w) in enumerate(zip(got.tolist(), want, strict=True)):
            assert same(g, w), (name, "inferred", inferred.dtype, position, g, w)


@settings(max_examples=60, deadline=None)
@given(st.lists(TEXT, max_size=25))
def test_trim(values: list[Any]) -> None:
    check("trim", values)


@settings(max_examples=60, deadline=None)
@given(st.lists(TEXT, max_size=25))
def test_lower(values: list[Any]) -> None:
    check("lower", values)


@settings(max_examples=60, deadline=None)
@given(st.lists(TEXT, max_size=25))
def test_upper(values: list[Any]) -> None:
    check("upper", values)


@settings(max_examples=60, deadline=None)
@given(st.lists(TEXT, max_size=25))
def test_pseudonym(values: list[Any]) -> None:
    check("pseudonym", values)


@settings(max_examples=80, deadline=None)
@given(st.lists(PHONES, max_size=25), st.sampled_from(["1", "44", "353"]))
def test_e164_phone(values: list[Any], country: str) -> None:
    check("e164_phone", values, E164Params(default_country_code=country))


@settings(max_examples=60, deadline=None)
@given(st.lists(DATES, max_size=25))
def test_iso_date(values: list[Any]) -> None:
    check("iso_date", values)


@settings(max_examples=60, deadline=None)
@given(st.lists(DATES, max_size=25))
def test_epoch_ms_date(values: list[Any]) -> None:
    check("epoch_ms_date", values)


@settings(max_examples=60, deadline=None)
@given(st.lists(NUMBERS, max_size=25), st.integers(0, 3))
def test_round(values: list[Any], digits: int) -> None:
    check("round", values, RoundParams(digits=digits))


@settings(max_examples=60, deadline=None)
@given(st.lists(NUMBERS, max_size=25))
def test_band(values: list[Any]) -> None:
    check("band", values, BandParams(bands={"medium": 4, "low": 0, "high": 7}))


def test_bands_take_the_label_of_the_highest_bound_reached() -> None:
    bands = BandParams(bands={"high": 7, "low": 0, "medium": 4})  # any order in the file
    assert vectorised("band", [-1, 0, 3.99, 4, 6.9, 7, 10, None, "5"], bands) == [
        None,
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
        None,
        "medium",
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(KEYS, max_size=25), st.one_of(st.none(), st.just("other")))
def test_value_map(values: list[Any], default: str | None) -> None:
    check(
        "value_map", values, ValueMapParams(map={"a": "A", "b": "B", True: "yes", 2: "two"}, default=default)
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(KEYS, TEXT), max_size=25), st.sampled_from(["n/a", 0]))
def test_default(values: list[Any], fill: Any) -> None:
    check("default", values, DefaultParams(value=fill))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(TEXT, TEXT, TEXT), max_size=20), st.sampled_from([" ", ", ", ""]))
def test_concat(rows: list[tuple[Any, Any, Any]], separator: str) -> None:
    concat = TRANSFORMS["concat"]
    assert isinstance(concat, MultiSourceTransform)
    frame = pd.DataFrame(
        {c: pd.Series([row[i] for row in rows], dtype=object) for i, c in enumerate("abc")}, dtype=object
    )
    params = ConcatParams(separator=separator)
    got = concat.vectorised(frame, params).tolist()
    assert got == [concat.per_value(list(row), params) for row in rows]


IDS = st.one_of(
    NULLS, st.integers(1, 10**6), st.integers(1, 10**6).map(float), st.sampled_from(["12", "x y"])
)
NAMES = st.one_of(
    NULLS, st.sampled_from(["glucose", " Glucose ", "tsh", "omega3_index", "blood_pressure_systolic"])
)
UNITS = st.one_of(NULLS, st.sampled_from(["mg/dL", "mmol/L", "m[IU]/L", "g/L", "mm[Hg]", "%"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(IDS, max_size=25))
def test_template(values: list[Any]) -> None:
    check("template", values, TemplateParams(template="https://ehr.example.org/results/{}?view=1"))


@settings(max_examples=60, deadline=None)
@given(st.lists(IDS, max_size=25))
def test_link(values: list[Any]) -> None:
    check("link", values, LinkParams(to="host_app", path="/wp-admin/user-edit.php?user_id={}"))
    check("link", values, LinkParams(to="ehr", path="/Observation?identifier=x%7C{}"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(NAMES, TEXT), max_size=25))
def test_biomarker_label(values: list[Any]) -> None:
    check("biomarker_label", values)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(NAMES, NUMBERS, UNITS), max_size=20))
def test_interpretation_flag(rows: list[tuple[Any, Any, Any]]) -> None:
    flag = TRANSFORMS["interpretation_flag"]
    assert isinstance(flag, MultiSourceTransform)
    frame = pd.DataFrame(
        {c: pd.Series([row[i] for row in rows], dtype=object) for i, c in enumerate("nvu")}, dtype=object
    )
    assert flag.vectorised(frame, None).tolist() == [flag.per_value(list(row), None) for row in rows]


def test_known_labels_flags_and_links() -> None:
    assert vectorised("biomarker_label", [" TSH ", "omega3_index"]) == ["TSH", None]  # no entry: None
    assert vectorised("biomarker_label", ["tsh", "blood_pressure_systolic"]) == [
        "TSH",
        "systolic blood pressure",
    ]
    flag = TRANSFORMS["interpretation_flag"]
    assert isinstance(flag, MultiSourceTransform)
    rows = [["glucose", 612, "mg/dL"], ["glucose", 2.0, "mmol/L"], ["glucose", 92, "mg/dL"], ["x", 1, "%"]]
    assert [flag.per_value(r, None) for r in rows] == ["HH", "LL", None, None]
    assert flag.per_value(["glucose", 92, "mg/dL", 70, 99], None) == "N"
    link = TemplateParams(template="https://ehr.example.org/r/{}")
    assert vectorised("template", [12.0, 7, None], link) == [
        "https://ehr.example.org/r/12",
        "https://ehr.example.org/r/7",
        None,
    ]


PROPERTY_TESTS = {
    "trim": test_trim,
    "lower": test_lower,
    "upper": test_upper,
    "pseudonym": test_pseudonym,
    "e164_phone": test_e164_phone,
    "iso_date": test_iso_date,
    "epoch_ms_date": test_epoch_ms_date,
    "round": test_round,
    "band": test_band,
    "value_map": test_value_map,
    "default": test_default,
    "concat": test_concat,
    "template": test_template,
    "link": test_link,
    "biomarker_label": test_biomarker_label,
    "interpretation_flag": test_interpretation_flag,
}


def test_every_registered_transform_has_a_property_test() -> None:
    assert set(TRANSFORMS) == set(PROPERTY_TESTS)


def vectorised(name: str, values: list[Any], params: Params | None = None) -> list[Any]:
    transform = TRANSFORMS[name]
    assert isinstance(transform, Transform)
    return transform.vectorised(pd.Series(values, dtype=object), params).tolist()


def test_pseudonyms_are_keyed_and_an_empty_value_never_becomes_a_shared_one() -> None:
    import hashlib

    [keyed] = vectorised("pseudonym", ["42"])
    assert keyed not in {hashlib.md5(b"42").hexdigest(), hashlib.sha256(b"42").hexdigest()}  # noqa: S324
    assert vectorised("pseudonym", ["", None]) == [None, None]


def test_e164_known_values() -> None:
    phones = ["(555) 010-1234", "1-555-010-1234", "+44 20 7946 0958", "555.010.1234 ", "12", "+1234567", None]
    assert vectorised("e164_phone", phones, E164Params()) == [
        "+15550101234",
        "+15550101234",
        "+442079460958",
        "+15550101234",
        "12",  # cleaned but invalid: the phone constraint rejects it
        "1234567",  # seven digits after + is too short to be E.164
        None,
    ]
    uk = vectorised("e164_phone", ["44 2079 460958", "2079460958"], E164Params(default_country_code="44"))
    assert uk == ["+442079460958", "+442079460958"]


def test_dates_known_values() -> None:
    values = [
        date(2024, 1, 2),
        "2024-01-02T23:59:59Z",
        datetime(2024, 1, 2, 22, tzinfo=timezone(timedelta(hours=-5))),
    ]
    assert vectorised("epoch_ms_date", values) == [1704153600000, 1704153600000, 1704240000000]
    assert vectorised("iso_date", [pd.Timestamp("2024-01-02 05:00", tz="UTC"), "1980-07-09", "soon"]) == [
        "2024-01-02",
        "1980-07-09",
        None,
    ]


def test_value_map_keeps_unmapped_values_unless_a_default_is_given() -> None:
    params = ValueMapParams(map={"weight_loss": "Weight Loss"})
    assert vectorised("value_map", ["weight_loss", "sleep", None], params) == ["Weight Loss", "sleep", None]
    with_default = ValueMapParams(map={"weight_loss": "Weight Loss"}, default="Other")
    assert vectorised("value_map", ["weight_loss", "sleep", None], with_default) == [
        "Weight Loss",
        "Other",
        None,
    ]


def test_nulls_never_become_strings() -> None:
    nulls = [None, float("nan"), pd.NA, pd.NaT, ""]
    for name, transform in TRANSFORMS.items():
        if isinstance(transform, Transform) and name not in ("default",):
            required = {
                "value_map": {"map": {"x": "y"}},
                "template": {"template": "x/{}"},
                "link": {"to": "host_app", "path": "/u/{}"},
                "band": {"bands": {"low": 0}},
            }
            params = transform.params.model_validate(required[name]) if name in required else None
            if transform.params is not None and params is None:
                params = transform.params()
            assert vectorised(name, nulls, params) == [None] * len(nulls), name
