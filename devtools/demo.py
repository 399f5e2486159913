"""Seeded, column-wise generator of realistic synthetic people for the host app's tables."""

from __future__ import annotations

import argparse
import json
import logging
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    Table,
    TypeDecorator,
    bindparam,
    func,
    insert,
    select,
    text,
)

from ennu.db import get_engine, migrate
from ennu.models import (
    Appointment,
    Assessment,
    AssessmentScore,
    Biomarker,
    Clinic,
    Consent,
    HealthGoal,
    InboundFieldVersion,
    Payment,
    Subscription,
    User,
)
from mappings.loinc import LoincTable, load_loinc_table

log = logging.getLogger(__name__)

Array = npt.NDArray[Any]
Values = Array | list[Any]  # one generated column

# --------------------------------------------------------------------------- public reference data


@dataclass(frozen=True, slots=True)
class BiomarkerSpec:
    """One biomarker the host app records: its host name, LOINC code, UCUM unit and adult reference range.

    Code, unit, display and critical limits are the product's LOINC table (mappings/loinc.yaml); only the
    reference range is the demo lab's own. A bound of None means the range is open on that side ("< 200"
    has no low bound).
    """

    name: str
    loinc_code: str
    unit: str
    reference_low: float | None
    reference_high: float | None
    display: str
    critical_low: float | None = None
    critical_high: float | None = None

    @property
    def loinc(self) -> str:
        """The LOINC code (alias of `loinc_code`)."""
        return self.loinc_code


# The demo lab's adult reference ranges (low, high), printed beside each result; a biomarker of the LOINC
# table without one here is not in the demo data (tests/test_reference_data.py asks for every one).
REFERENCE_RANGES: Mapping[str, tuple[float | None, float | None]] = MappingProxyType(
    {
        "glucose": (70, 99),
        "hba1c": (4.0, 5.6),
        "total_cholesterol": (None, 200),
        "ldl": (None, 100),
        "hdl": (40, None),
        "triglycerides": (None, 150),
        "testosterone_total": (264, 916),
        "testosterone_free": (46, 224),
        "estradiol": (15, 350),
        "vitamin_d": (30, 100),
        "tsh": (0.45, 4.5),
        "free_t4": (0.8, 1.8),
        "ferritin": (30, 400),
        "crp_hs": (None, 3),
        "creatinine": (0.6, 1.3),
        "alt": (7, 56),
        "ast": (10, 40),
        "body_weight": (None, None),
        "bmi": (18.5, 24.9),
        "blood_pressure_systolic": (90, 120),
        "blood_pressure_diastolic": (60, 80),
    }
)
MOLAR_UNIT = "mmol/L"

# A host biomarker name without a LOINC entry (loinc_code None): the FHIR stage must reject it.
UNKNOWN_BIOMARKER = "omega3_index"  # unit %, reference low 8

# A few demo results of these markers are reported in mmol/L (unit "mmol/L", reference range converted
# too) while keeping the table's mass-concentration LOINC code: whoever sends them on has to convert them
# back (value * factor, the table's conversion) or refuse them.
MOLAR_MARKERS: tuple[str, ...] = ("glucose", "total_cholesterol", "ldl", "hdl")


def _catalogue(table: LoincTable) -> tuple[BiomarkerSpec, ...]:
    """The table's biomarkers that the demo lab reports (those with a reference range), in table order."""
    strangers = sorted(set(REFERENCE_RANGES) - set(table.biomarkers))
    if strangers:
        raise RuntimeError(f"devtools/demo.py: ranges of biomarkers not in mappings/loinc.yaml: {strangers}")
    if UNKNOWN_BIOMARKER in table.biomarkers:
        raise RuntimeError(f"devtools/demo.py: {UNKNOWN_BIOMARKER} is meant to have no LOINC entry")
    return tuple(
        BiomarkerSpec(
            name,
            entry.loinc,
            entry.unit,
            *REFERENCE_RANGES[name],
            entry.display,
            critical_low=entry.critical_low,
            critical_high=entry.critical_high,
        )
        for name, entry in table.biomarkers.items()
        if name in REFERENCE_RANGES
    )


def _molar_factor(table: LoincTable, name: str) -> float:
    """mg/dL per mmol/L of one marker: the table's exact conversion."""
    conversion = table.biomarkers[name].conversion(MOLAR_UNIT)
    if conversion is None:
        raise RuntimeError(f"devtools/demo.py: mappings/loinc.yaml has no {MOLAR_UNIT} conversion of {name}")
    return conversion.factor


_TABLE = load_loinc_table()
BIOMARKER_CATALOGUE: tuple[BiomarkerSpec, ...] = _catalogue(_TABLE)
BIOMARKERS_BY_NAME: Mapping[str, BiomarkerSpec] = MappingProxyType({b.name: b for b in BIOMARKER_CATALOGUE})
MOLAR_CONVERSIONS: Mapping[str, float] = MappingProxyType(
    {name: _molar_factor(_TABLE, name) for name in MOLAR_MARKERS}
)


ASSESSMENT_TYPES: tuple[str, ...] = (
    "weight_loss",
    "hormone",
    "sleep",
    "skin",
    "testosterone",
    "menopause",
    "health_optimization",
)
ASSESSMENT_CATEGORIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "weight_loss": ("nutrition", "activity", "metabolism", "motivation", "body_composition", "cravings"),
        "hormone": ("energy", "mood", "libido", "sleep", "stress"),
        "sleep": ("sleep_quality", "sleep_duration", "restfulness", "energy"),
        "skin": ("hydration", "texture", "tone", "elasticity", "sun_damage"),
        "testosterone": ("energy", "libido", "strength", "mood", "recovery", "focus"),
        "menopause": ("hot_flashes", "sleep", "mood", "energy", "cognition"),
        "health_optimization": ("energy", "fitness", "nutrition", "stress", "sleep", "longevity"),
    }
)
GOAL_KINDS: tuple[str, ...] = (
    "lose_weight",
    "improve_sleep",
    "balance_hormones",
    "lower_cholesterol",
    "build_muscle",
    "reduce_stress",
    "improve_energy",
    "lower_blood_pressure",
)
CONSENT_INTEGRATIONS: tuple[str, ...] = ("mailchimp", "hubspot", "twilio", "salesforce", "stripe")
EXAMPLE_DOMAINS: tuple[str, ...] = ("example.com", "example.org", "example.net")  # RFC 2606
# The host's clinics (the CRMs' Accounts / companies): "<place> <kind>", a web domain under example.com.
CLINIC_PLACES: tuple[str, ...] = (
    "Northside", "Lakeside", "Riverside", "Hillcrest", "Westgate", "Eastwood", "Maple Grove", "Cedar Park",
    "Harbor View", "Oak Ridge", "Summit", "Brookfield",
)  # fmt: skip
CLINIC_KINDS: tuple[str, ...] = ("Wellness Clinic", "Family Health", "Medical Group", "Longevity Center")
CLINIC_PEOPLE = 100  # people a clinic, on average
CLINIC_SHARE = 0.8  # of people belong to a clinic; the others have none (a CRM gives them their own account)
APPOINTMENT_SHARE = 0.05  # of people have an upcoming appointment (1 to 14 days after `now`)
APPOINTMENT_KINDS: tuple[str, ...] = ("consultation", "follow_up", "lab_visit")
VOICE_SHARE = 0.2  # of people chose calls for their reminders (users.reminder_channel); the others SMS
# the host app's tables, parents first
HOST_TABLES: tuple[Table, ...] = tuple(
    cast(Table, m.__table__)
    for m in (Clinic, User, Assessment, AssessmentScore, Biomarker, HealthGoal, Consent, Appointment)
)
# what a reset clears: the generated tables and the tables that refer to their people (the hub's record of
# when a CRM last changed a person's column is about people who are gone)
CLEARED_TABLES: tuple[Table, ...] = (
    *HOST_TABLES,
    cast(Table, Subscription.__table__),
    cast(Table, Payment.__table__),
    cast(Table, InboundFieldVersion.__table__),
)

# --------------------------------------------------------------------------- private generation tables

_BLOCK = 1000  # people generated with one RNG stream; rows do not depend on chunk_size
_DAY = 86_400
_YEAR = 365 * _DAY


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_BULK_MIN_PEOPLE = 20_000
_NA = -(2**62)  # a missing timestamp in a column of epoch seconds
_EPOCH_DAY = np.datetime64("1970-01-01", "D")
_DOB_FIRST = np.datetime64("1945-01-01", "D")
_DOB_DAYS = int((np.datetime64("2005-12-31", "D") - _DOB_FIRST).astype(int)) + 1

_FEMALE_NAMES = _words(
    "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Sandra "
    "Margaret Ashley Kimberly Emily Donna Michelle Carol Amanda Melissa Deborah Stephanie Dorothy Rebecca "
    "Sharon Laura Cynthia Amy Kathleen Angela Shirley Brenda Emma Anna Pamela Nicole Samantha Katherine "
    "Christine Helen Debra Rachel Carolyn Janet Maria Catherine Heather Diane Olivia Julie Joyce Victoria "
    "Ruth Virginia Lauren Kelly Christina Joan Evelyn Judith Andrea Hannah Megan Cheryl Jacqueline Martha "
    "Madison Teresa Gloria Sara Janice Ann Kathryn Abigail Sophia Frances Jean Alice Judy Isabella Julia "
    "Grace Amber Denise Danielle Marilyn Beverly Charlotte Natalie Theresa Diana Brittany Doris Kayla "
    "Alexis Lori Marie Ava Mia Chloé Zoë Renée Aaliyah Ximena Priya Mei Yesenia Keisha"
)
_MALE_NAMES = _words(
    "James Robert John Michael David William Richard Joseph Thomas Christopher Charles Daniel Matthew "
    "Anthony Mark Donald Steven Andrew Paul Joshua Kenneth Kevin Brian George Timothy Ronald Jason Edward "
    "Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel "
    "Gregory Alexander Patrick Frank Raymond Jack Dennis Jerry Tyler Aaron Jose Adam Nathan Henry Zachary "
    "Douglas Peter Kyle Noah Ethan Jeremy Walter Christian Keith Roger Terry Austin Sean Gerald Carl "
    "Harold Dylan Arthur Lawrence Jordan Jesse Bryan Billy Bruce Gabriel Joe Logan Alan Juan Albert "
    "Willie Elijah Wayne Randy Vincent Mason Roy Ralph Bobby Russell Bradley Philip Eugene Liam Lucas "
    "José André Rahul Wei Darnell Tomás Malik Hiroshi"
)
_LAST_NAMES = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
    "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
    "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker "
    "Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper "
    "Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James "
    "Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez "
    "Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher Vasquez "
    "Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole "
    "Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens "
    "Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker "
    "Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Muñoz "
    "Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice "
    "Schmidt García Martínez O'Brien O'Connor D'Angelo Smith-Jones Nuñez Yamamoto Kowalski Okafor "
    "Ivanova Schröder Andersson Haddad Singh"
)

# IANA zone, share of people, area codes of that zone (real area codes; the 555-01xx lines are fictional).
_ZONES: tuple[tuple[str, float, tuple[int, ...]], ...] = (
    ("America/New_York", 0.40, (212, 646, 718, 617, 215, 404, 305, 202, 703, 919, 704, 407, 410, 216)),
    ("America/Chicago", 0.27, (312, 773, 214, 713, 512, 612, 314, 504, 615, 414, 210, 816, 501)),
    ("America/Denver", 0.05, (303, 720, 801, 505, 406, 307)),
    ("America/Phoenix", 0.03, (602, 480, 520)),
    ("America/Los_Angeles", 0.19, (213, 310, 415, 408, 619, 206, 503, 702, 916, 818, 909)),
    ("America/Detroit", 0.025, (313, 248, 616, 734)),
    ("America/Indiana/Indianapolis", 0.015, (317, 812)),
    ("America/Boise", 0.005, (208,)),
    ("America/Anchorage", 0.005, (907,)),
    ("Pacific/Honolulu", 0.005, (808,)),
)

_SEXES = np.array(["female", "male", "other"], dtype=object)
_SEX_P = (0.56, 0.41, 0.03)

# Assessment type weights per group: female < 40, female >= 40, male, other (order of ASSESSMENT_TYPES).
_TYPE_WEIGHTS = np.array(
    [
        [0.26, 0.18, 0.18, 0.18, 0.02, 0.00, 0.18],
        [0.22, 0.18, 0.14, 0.12, 0.02, 0.18, 0.14],
        [0.24, 0.12, 0.16, 0.08, 0.24, 0.00, 0.16],
        [0.24, 0.20, 0.20, 0.16, 0.04, 0.00, 0.16],
    ]
)
_TYPE_CUM = np.cumsum(_TYPE_WEIGHTS / _TYPE_WEIGHTS.sum(axis=1, keepdims=True), axis=1)
_TYPE_NAMES = np.array(ASSESSMENT_TYPES, dtype=object)
_N_CATEGORIES = np.array([len(ASSESSMENT_CATEGORIES[t]) for t in ASSESSMENT_TYPES])
_CATEGORY_TABLE = np.array(
    [
        list(ASSESSMENT_CATEGORIES[t]) + [""] * (int(_N_CATEGORIES.max()) - len(ASSESSMENT_CATEGORIES[t]))
        for t in ASSESSMENT_TYPES
    ],
    dtype=object,
)


@dataclass(frozen=True, slots=True)
class _Dist:
    """Value distribution of one biomarker: normal or log-normal, per sex (female, male).

    A share `extreme_rate` of results is drawn uniformly from `extreme` instead: far outside the reference
    range (critically so where the catalogue names a critical value).
    """

    log: bool
    centre: tuple[float, float]  # mean (normal) or median (log-normal)
    spread: tuple[float, float]  # sd (normal) or geometric sd (log-normal)
    decimals: int
    floor: float
    extreme_rate: float = 0.0
    extreme: tuple[float, float] = (0.0, 0.0)


_DISTRIBUTIONS: Mapping[str, _Dist] = MappingProxyType(
    {
        "glucose": _Dist(False, (87, 89), (9, 10), 0, 50, 0.004, (401, 600)),
        "hba1c": _Dist(False, (5.2, 5.25), (0.3, 0.32), 1, 3.8, 0.003, (8.0, 13.0)),
        "total_cholesterol": _Dist(False, (176, 174), (25, 26), 0, 90, 0.002, (300, 420)),
        "ldl": _Dist(False, (86, 88), (18, 19), 0, 30, 0.002, (190, 300)),
        "hdl": _Dist(False, (62, 50), (13, 11), 0, 20),
        "triglycerides": _Dist(True, (95, 112), (1.45, 1.5), 0, 30, 0.003, (500, 1500)),
        "testosterone_total": _Dist(False, (35, 560), (14, 170), 0, 5),
        "testosterone_free": _Dist(False, (3.2, 110), (1.5, 36), 1, 0.3),
        "estradiol": _Dist(True, (95, 26), (1.9, 1.3), 0, 5),
        "vitamin_d": _Dist(False, (41, 39), (10, 10), 0, 6),
        "tsh": _Dist(True, (1.9, 1.7), (1.6, 1.55), 2, 0.05, 0.002, (10, 40)),
        "free_t4": _Dist(False, (1.22, 1.28), (0.17, 0.17), 2, 0.3),
        "ferritin": _Dist(True, (75, 150), (1.8, 1.8), 0, 3),
        "crp_hs": _Dist(True, (1.3, 1.1), (2.2, 2.2), 2, 0.1, 0.002, (10, 60)),
        "creatinine": _Dist(False, (0.82, 1.0), (0.13, 0.15), 2, 0.3, 0.001, (2.5, 6.0)),
        "alt": _Dist(True, (20, 27), (1.5, 1.5), 0, 4, 0.003, (150, 600)),
        "ast": _Dist(True, (20, 24), (1.35, 1.35), 0, 6, 0.002, (120, 500)),
        "blood_pressure_systolic": _Dist(False, (112, 117), (11, 11), 0, 80, 0.003, (181, 220)),
        "blood_pressure_diastolic": _Dist(False, (72, 76), (8, 8), 0, 45, 0.002, (121, 140)),
        # body_weight and bmi come from each person's height and BMI (see _biomarkers)
    }
)
_CRITICAL_LOW_RATE = 0.001  # glucose < 40 mg/dL
_CATALOGUE_INDEX = {b.name: i for i, b in enumerate(BIOMARKER_CATALOGUE)}
_SYSTOLIC = _CATALOGUE_INDEX["blood_pressure_systolic"]
_DIASTOLIC = _CATALOGUE_INDEX["blood_pressure_diastolic"]
# Slots people are tested for; the blood-pressure slot yields systolic and diastolic together.
_SLOTS = np.array([i for i in range(len(BIOMARKER_CATALOGUE)) if i != _DIASTOLIC])
_SLOT_WEIGHTS = {  # how often a marker is on a person's panel, by sex (female, male, other); default 1
    "glucose": (3, 3, 3),
    "hba1c": (1.5, 1.5, 1.5),
    "total_cholesterol": (2.5, 2.5, 2.5),
    "ldl": (2, 2, 2),
    "hdl": (2, 2, 2),
    "triglycerides": (2, 2, 2),
    "testosterone_total": (0.25, 2.5, 1),
    "testosterone_free": (0.15, 1.5, 0.6),
    "estradiol": (1.5, 0.4, 1),
    "vitamin_d": (1.5, 1.5, 1.5),
    "tsh": (1.5, 1, 1.2),
    "body_weight": (2.5, 2.5, 2.5),
    "bmi": (2.5, 2.5, 2.5),
    "blood_pressure_systolic": (2.5, 2.5, 2.5),
}
_SLOT_LOG_WEIGHTS = np.log(
    np.array([_SLOT_WEIGHTS.get(BIOMARKER_CATALOGUE[i].name, (1.0, 1.0, 1.0)) for i in _SLOTS], dtype=float).T
)
_CATALOGUE_NAMES = np.array([b.name for b in BIOMARKER_CATALOGUE], dtype=object)
_CATALOGUE_LOINC = np.array([b.loinc_code for b in BIOMARKER_CATALOGUE], dtype=object)
_CATALOGUE_UNITS = np.array([b.unit for b in BIOMARKER_CATALOGUE], dtype=object)
_REF_LOW = np.array([np.nan if b.reference_low is None else b.reference_low for b in BIOMARKER_CATALOGUE])
_REF_HIGH = np.array([np.nan if b.reference_high is None else b.reference_high for b in BIOMARKER_CATALOGUE])

_MONTHS = _words("January February March April May June July August September October November December")


def _ascii_slug(name: str) -> str:
    """Lower-case ASCII letters only: 'O'Brien' -> 'obrien', 'Muñoz' -> 'munoz'."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(c for c in plain.lower() if c.isalpha())


_FEMALE = np.array(_FEMALE_NAMES, dtype=object)
_MALE = np.array(_MALE_NAMES, dtype=object)
_LAST = np.array(_LAST_NAMES, dtype=object)
_FEMALE_SLUG = np.array([_ascii_slug(n) for n in _FEMALE_NAMES], dtype=object)
_MALE_SLUG = np.array([_ascii_slug(n) for n in _MALE_NAMES], dtype=object)
_LAST_SLUG = np.array([_ascii_slug(n) for n in _LAST_NAMES], dtype=object)
_ZONE_NAMES = np.array([z[0] for z in _ZONES], dtype=object)
_ZONE_P = np.array([z[1] for z in _ZONES]) / sum(z[1] for z in _ZONES)
_AREA_CODES = np.array([c for z in _ZONES for c in z[2]])
_AREA_OFFSET = np.cumsum([0] + [len(z[2]) for z in _ZONES])[:-1]
_AREA_COUNT = np.array([len(z[2]) for z in _ZONES])


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class DemoSummary:
    """What one `generate_demo` call wrote: rows per host table and the ids of the people created."""

    users: int
    assessments: int
    assessment_scores: int
    biomarkers: int
    health_goals: int
    consents: int
    clinics: int
    appointments: int
    first_user_id: int | None
    last_user_id: int | None

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)


@dataclass
class _NextIds:
    clinics: int
    users: int
    assessments: int
    assessment_scores: int
    biomarkers: int
    health_goals: int
    consents: int
    appointments: int


@dataclass
class _Rows:
    """One block's rows, per table, column by column (timestamps as epoch seconds, dates as days)."""

    tables: dict[str, dict[str, Values]] = field(default_factory=dict)


# --------------------------------------------------------------------------- vector helpers


def _pick(rng: np.random.Generator, p: Sequence[float] | Array, n: int) -> Array:
    """n indices drawn with probabilities p."""
    cum = np.cumsum(np.asarray(p, dtype=float))
    return np.searchsorted(cum / cum[-1], rng.random(n), side="right")


def _pick_rows(rng: np.random.Generator, cum: Array) -> Array:
    """One index per row of a matrix of cumulative probabilities."""
    u = rng.random((cum.shape[0], 1))
    return np.minimum((u >= cum).sum(axis=1), cum.shape[1] - 1)


def _top_k(rng: np.random.Generator, log_weights: Array, k: Array) -> Array:
    """Per row, k[i] distinct column indices drawn by weight (Gumbel top-k), flattened row by row."""
    keys = log_weights + rng.gumbel(size=log_weights.shape)
    order = np.argsort(-keys, axis=1, kind="stable")
    take = np.arange(log_weights.shape[1])[None, :] < k[:, None]
    return order[take]


def _between(rng: np.random.Generator, low: Array, high: Array) -> Array:
    """Whole seconds uniformly between low and high (arrays of epoch seconds)."""
    return low + (rng.random(len(low)) * (high - low)).astype(np.int64)


def _round(values: Array, decimals: int) -> Array:
    scale = 10.0**decimals
    return np.rint(values * scale) / scale


def _iso(seconds: Array) -> list[str]:
    """Epoch seconds -> 'YYYY-MM-DDTHH:MM:SS' (UTC)."""
    return list(np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s").tolist())


def _column_kind(column: Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, TypeDecorator):  # e.g. ennu.models.UTCDateTime: what it stores is its impl
        kind = kind.impl_instance
    if isinstance(kind, DateTime):
        return "timestamp"
    if isinstance(kind, Date):
        return "date"
    if isinstance(kind, Boolean):
        return "boolean"
    if isinstance(kind, Float):
        return "float"
    return "plain"


def _db_values(values: Values, kind: str, style: str) -> list[Any]:
    """One generated column as the values a driver takes.

    Timestamps (epoch seconds, `_NA` for none) become SQLAlchemy's own SQLite text format (style
    "sqlite"), PostgreSQL timestamptz text ("postgresql") or aware UTC datetimes ("python"); dates (days
    since 1970) ISO text or `date`; NaN floats None.
    """
    if kind == "timestamp":
        seconds = np.asarray(values, dtype=np.int64)
        missing = seconds == _NA
        text = _iso(np.where(missing, 0, seconds))
        out: list[Any]
        if style == "sqlite":
            out = [f"{t[:10]} {t[11:]}.000000" for t in text]
        elif style == "postgresql":
            out = [f"{t}+00" for t in text]
        else:
            out = [datetime.fromisoformat(t).replace(tzinfo=UTC) for t in text]
        if missing.any():
            out = [None if m else v for v, m in zip(out, missing.tolist(), strict=True)]
        return out
    if kind == "date":
        days = np.asarray(values, dtype=np.int64).astype("datetime64[D]")
        if style == "python":
            return list(days.tolist())  # datetime.date
        return list(np.datetime_as_string(days).tolist())
    if kind == "float":
        floats = np.asarray(values, dtype=float)
        listed = floats.tolist()
        return [None if v != v else v for v in listed] if np.isnan(floats).any() else listed
    if kind == "boolean":
        return list(np.asarray(values, dtype=bool).tolist())
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


# How rows are written: None picks by database: SQLite "executemany" of ready-made text values,
# PostgreSQL "copy", anything else "core" (SQLAlchemy Core insert() executemany). Tests set it to check
# that every path writes the same rows. Measured on a shared 2-core box, 128,656 biomarker rows into an
# indexed table: SQLite 3.5 s here, 5.6 s Core insert(), 5.7 s pandas to_sql, 39 s to_sql(method="multi");
# PostgreSQL 5.7 s COPY, 11.0 s Core insert(), 11.1 s to_sql, 77 s "multi", and psycopg's pipelined
# executemany took 2.2 times as long as COPY. Core spends more time on per-row parameter processing than
# SQLite spends inserting.
_WRITE_METHOD: str | None = None
_VALUE_STYLE = {
    "executemany": "sqlite",
    "pg-executemany": "postgresql",
    "copy": "postgresql",
    "core": "python",
}


def _write(conn: Connection, table: Table, columns: Mapping[str, Values]) -> int:
    """Insert one block's rows of one table."""
    dialect = conn.dialect.name
    method = _WRITE_METHOD or {"sqlite": "executemany", "postgresql": "copy"}.get(dialect, "core")
    if method == "executemany" and dialect == "postgresql":
        method = "pg-executemany"
    names = list(columns)
    values = [_db_values(columns[c], _column_kind(table.c[c]), _VALUE_STYLE[method]) for c in names]
    count = len(values[0])
    if not count:
        return 0
    rows = zip(*values, strict=True)
    # table and column names come from the models, never from input
    quote = conn.dialect.identifier_preparer
    target = f"{quote.format_table(table)} ({', '.join(quote.quote(c) for c in names)})"
    if method == "copy":
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor, cursor.copy(f"COPY {target} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    elif method in ("executemany", "pg-executemany"):
        marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        placeholders = ", ".join([marker] * len(names))
        conn.exec_driver_sql(f"INSERT INTO {target} VALUES ({placeholders})", list(rows))  # noqa: S608
    else:
        conn.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])
    return count


# --------------------------------------------------------------------------- one block of people


def _block(
    rng: np.random.Generator,
    ids: _NextIds,
    n: int,
    now: int,
    invalid_fraction: float,
) -> _Rows:
    """Generate n people and everything that belongs to them; advance the id counters."""
    rows = _Rows()
    user_ids = np.arange(ids.users, ids.users + n)
    person = _people(rng, user_ids, n, now, invalid_fraction, rows)
    _assessments(rng, ids, person, now, invalid_fraction, rows)
    _biomarkers(rng, ids, person, now, invalid_fraction, rows)
    _goals(rng, ids, person, now, rows)
    _consents(rng, ids, person, now, rows)
    _clinics(rng, ids, person, now, rows)  # after the others: their draws stay what they were
    _appointments(rng, ids, person, now, rows)
    ids.users += n
    return rows


@dataclass
class _People:
    ids: Array
    sex: Array  # 0 female, 1 male, 2 other
    feminine: Array  # names and sex-specific distributions follow the female column
    group: Array  # 0 female < 40, 1 female >= 40, 2 male, 3 other
    created: Array  # epoch seconds
    activity_start: Array  # epoch seconds: the last year, not before the person registered


def _people(
    rng: np.random.Generator, user_ids: Array, n: int, now: int, invalid_fraction: float, rows: _Rows
) -> _People:
    sex = _pick(rng, _SEX_P, n)
    feminine = (sex == 0) | ((sex == 2) & (rng.random(n) < 0.5))
    fi = rng.integers(0, len(_FEMALE), n)
    mi = rng.integers(0, len(_MALE), n)
    li = rng.integers(0, len(_LAST), n)
    first = np.where(feminine, _FEMALE[fi], _MALE[mi])
    first_slug = np.where(feminine, _FEMALE_SLUG[fi], _MALE_SLUG[mi])
    last = _LAST[li]
    last_slug = _LAST_SLUG[li]

    # e-mail: several local-part styles, always carrying the user id, so every valid address is unique
    style = _pick(rng, (0.55, 0.12, 0.12, 0.11, 0.10), n)
    domain = _pick(rng, (0.7, 0.2, 0.1), n)
    capitalised = rng.random(n) < 0.03
    defect = rng.random(n)
    defect[user_ids == 1] = 1.0  # person 1 of a fresh database is the README's clean example
    bad_email = defect < invalid_fraction
    bad_phone = (defect >= invalid_fraction) & (defect < 2 * invalid_fraction)
    no_phone = (defect >= 2 * invalid_fraction) & (defect < 2 * invalid_fraction + 0.05)
    flaw = rng.integers(0, 3, n)
    emails = [
        _email(f, ln, int(i), int(s), EXAMPLE_DOMAINS[int(d)], bool(c), int(w) if b else -1)
        for f, ln, i, s, d, c, b, w in zip(
            first_slug.tolist(),
            last_slug.tolist(),
            user_ids.tolist(),
            style.tolist(),
            domain.tolist(),
            capitalised.tolist(),
            bad_email.tolist(),
            flaw.tolist(),
            strict=True,
        )
    ]

    zone = _pick(rng, _ZONE_P, n)
    area = _AREA_CODES[_AREA_OFFSET[zone] + (rng.random(n) * _AREA_COUNT[zone]).astype(np.int64)]
    line = rng.integers(100, 200, n)  # 555-0100 .. 555-0199: reserved for fiction
    phone_style = _pick(rng, (0.35, 0.30, 0.15, 0.12, 0.08), n)
    phones = [
        None if nothing else _phone(int(a), int(ln), int(s), int(w) if bad else -1)
        for a, ln, s, bad, w, nothing in zip(
            area.tolist(),
            line.tolist(),
            phone_style.tolist(),
            bad_phone.tolist(),
            flaw.tolist(),
            no_phone.tolist(),
            strict=True,
        )
    ]

    dob_days = rng.integers(0, _DOB_DAYS, n)
    dob = _DOB_FIRST + dob_days
    age = (np.datetime64(now, "s").astype("datetime64[D]") - dob).astype(np.int64) / 365.25
    group = np.where(sex == 1, 2, np.where(sex == 2, 3, np.where(age >= 40, 1, 0)))

    created = now - rng.integers(0, 3 * _YEAR, n)
    updated = _between(rng, created, np.full(n, now))
    marketing = (rng.random(n) < 0.70) | (user_ids == 1)
    communication = (rng.random(n) < 0.60) | (user_ids == 1)

    rows.tables["users"] = {
        "id": user_ids,
        "first_name": first,
        "last_name": last,
        "email": emails,
        "phone": phones,
        "date_of_birth": (dob - _EPOCH_DAY).astype(np.int64),
        "sex": _SEXES[sex],
        "timezone": _ZONE_NAMES[zone],
        "marketing_consent": marketing,
        "communication_consent": communication,
        "created_at": created,
        "updated_at": updated,
    }
    activity_start = np.maximum(created, now - _YEAR)
    return _People(user_ids, sex, feminine, group, created, activity_start)


def _email(first: str, last: str, n: int, style: int, domain: str, capitalised: bool, flaw: int) -> str:
    if capitalised:
        first, last = first.capitalize(), last.capitalize()
    local = (
        f"{first}.{last}{n}",
        f"{first}{last}{n}",
        f"{first[0]}{last}{n}",
        f"{first}_{last}{n}",
        f"{first}{n}",
    )[style]
    if flaw == 0:
        return f"{local}{domain}"  # no @
    if flaw == 1:
        return f"{local}@{domain.replace('.', '..')}"  # consecutive dots
    if flaw == 2:
        return f"{first} {last}{n}@{domain}"  # a space
    return f"{local}@{domain}"


def _phone(area: int, line: int, style: int, flaw: int) -> str:
    if flaw == 0:
        return f"555-{line:04d}"  # too short: no area code
    if flaw == 1:
        return f"{area}-55O-{line:04d}"  # a letter O for a zero
    if flaw == 2:
        return f"({area}) 555-{line:03d}"  # nine digits
    return (
        f"({area}) 555-{line:04d}",
        f"{area}-555-{line:04d}",
        f"+1{area}555{line:04d}",
        f"{area}555{line:04d}",
        f"{area}.555.{line:04d}",
    )[style]


def _assessments(
    rng: np.random.Generator, ids: _NextIds, person: _People, now: int, invalid_fraction: float, rows: _Rows
) -> None:
    n = len(person.ids)
    per_person = _pick(rng, (0.55, 0.30, 0.15), n) + 1
    owner = np.repeat(np.arange(n), per_person)
    m = len(owner)
    kind = _pick_rows(rng, _TYPE_CUM[person.group[owner]])
    moment = _between(rng, person.activity_start[owner], np.full(m, now))
    moment = moment[np.lexsort((moment, owner))]  # owners are already grouped: sort time within each
    latest = np.r_[owner[1:] != owner[:-1], True]
    # only a later assessment is left unfinished: everyone has at least one completed
    in_progress = latest & (per_person[owner] >= 2) & (rng.random(m) < 0.2)
    completed = ~in_progress
    took = rng.integers(4 * 60, 35 * 60, m)
    started = np.where(in_progress, moment, moment - took)

    # per-category scores: a person's general level plus noise, 0-10 with one decimal
    level = rng.normal(6.3, 1.1, n)
    done = np.flatnonzero(completed)
    n_cat = _N_CATEGORIES[kind[done]]
    of = np.repeat(np.arange(len(done)), n_cat)
    position = np.arange(len(of)) - np.repeat(np.cumsum(n_cat) - n_cat, n_cat)
    category = _CATEGORY_TABLE[kind[done][of], position]
    score = _round(np.clip(level[owner[done]][of] + rng.normal(0.0, 1.4, len(of)), 0.0, 10.0), 1)
    overall_done = _round(np.bincount(of, weights=score, minlength=len(done)) / n_cat, 1)
    outlier = rng.random(len(done)) < invalid_fraction / 15  # 1 in 500 at the default 3 %
    overall_done = np.where(outlier, np.where(rng.random(len(done)) < 0.5, 11.5, -1.0), overall_done)
    overall = np.full(m, np.nan)
    overall[done] = overall_done

    assessment_ids = np.arange(ids.assessments, ids.assessments + m)
    rows.tables["assessments"] = {
        "id": assessment_ids,
        "user_id": person.ids[owner],
        "type": _TYPE_NAMES[kind],
        "status": np.where(completed, "completed", "in_progress").astype(object),
        "started_at": started,
        "completed_at": np.where(completed, moment, _NA),
        "overall_score": overall,
    }
    rows.tables["assessment_scores"] = {
        "id": np.arange(ids.assessment_scores, ids.assessment_scores + len(of)),
        "assessment_id": assessment_ids[done][of],
        "category": category,
        "score": score,
    }
    ids.assessments += m
    ids.assessment_scores += len(of)


def _biomarkers(
    rng: np.random.Generator, ids: _NextIds, person: _People, now: int, invalid_fraction: float, rows: _Rows
) -> None:
    n = len(person.ids)
    slots = rng.integers(3, 10, n)  # 3-9 slots; the blood-pressure slot gives two results: 3-10 results
    chosen = _SLOTS[_top_k(rng, _SLOT_LOG_WEIGHTS[person.sex], slots)]
    owner = np.repeat(np.arange(n), slots)
    twice = 1 + (chosen == _SYSTOLIC)
    owner = np.repeat(owner, twice)
    marker = np.repeat(chosen, twice)
    second = (marker[1:] == _SYSTOLIC) & (marker[:-1] == _SYSTOLIC) & (owner[1:] == owner[:-1])
    marker[1:][second] = _DIASTOLIC
    order = np.lexsort((marker, owner))
    owner, marker = owner[order], marker[order]
    r = len(owner)
    fem = person.feminine[owner]

    # per-person body measures, so that weight, BMI and blood pressure agree with each other
    height = np.where(person.feminine, rng.normal(1.63, 0.07, n), rng.normal(1.77, 0.075, n))
    bmi = np.clip(np.exp(rng.normal(np.log(25.5), 0.16, n)), 16.0, 60.0)
    weight = bmi * height**2
    systolic_shift = rng.normal(0.0, 1.0, n)

    value = np.zeros(r)
    decimals = np.ones(r, dtype=np.int64)  # as reported: the lab's decimals, which a float cannot keep
    for idx, spec in enumerate(BIOMARKER_CATALOGUE):
        rows_of = np.flatnonzero(marker == idx)
        if not len(rows_of):
            continue
        if spec.name == "bmi":
            value[rows_of] = _round(bmi[owner[rows_of]], 1)
            continue
        if spec.name == "body_weight":
            value[rows_of] = _round(weight[owner[rows_of]], 1)
            continue
        dist = _DISTRIBUTIONS[spec.name]
        f = fem[rows_of]
        centre = np.where(f, dist.centre[0], dist.centre[1])
        spread = np.where(f, dist.spread[0], dist.spread[1])
        if spec.name in ("blood_pressure_systolic", "blood_pressure_diastolic"):
            z = 0.8 * systolic_shift[owner[rows_of]] + 0.6 * rng.normal(0.0, 1.0, len(rows_of))
        else:
            z = rng.normal(0.0, 1.0, len(rows_of))
        v = centre * np.exp(z * np.log(spread)) if dist.log else centre + z * spread
        v = np.maximum(v, dist.floor)
        if dist.extreme_rate:
            extreme = rng.random(len(rows_of)) < dist.extreme_rate
            v = np.where(extreme, rng.uniform(*dist.extreme, len(rows_of)), v)
        if spec.critical_low is not None:
            very_low = rng.random(len(rows_of)) < _CRITICAL_LOW_RATE
            v = np.where(very_low, spec.critical_low * rng.uniform(0.6, 0.97, len(rows_of)), v)
        value[rows_of] = _round(v, dist.decimals)
        decimals[rows_of] = dist.decimals

    names = _CATALOGUE_NAMES[marker]
    loinc = _CATALOGUE_LOINC[marker]
    unit = _CATALOGUE_UNITS[marker]
    low = _REF_LOW[marker]
    high = _REF_HIGH[marker]

    # a few lipid and glucose results come in mmol/L (values and ranges converted, LOINC code unchanged)
    molar = rng.random(r) < 0.03
    for name, factor in MOLAR_CONVERSIONS.items():
        hit = molar & (marker == _CATALOGUE_INDEX[name])
        digits = 1 if name == "glucose" else 2
        value[hit] = _round(value[hit] / factor, digits)
        decimals[hit] = digits
        low[hit] = _round(low[hit] / factor, digits)
        high[hit] = _round(high[hit] / factor, digits)
        unit[hit] = MOLAR_UNIT

    # a host biomarker without a LOINC code: 1 in 1000 at the default 3 %
    unknown = (rng.random(r) < invalid_fraction / 30) & (marker != _SYSTOLIC) & (marker != _DIASTOLIC)
    if unknown.any():
        names[unknown] = UNKNOWN_BIOMARKER
        loinc[unknown] = None
        unit[unknown] = "%"
        value[unknown] = _round(rng.normal(6.0, 1.5, int(unknown.sum())).clip(2.0, 14.0), 1)
        decimals[unknown] = 1
        low[unknown] = 8.0
        high[unknown] = np.nan

    # one blood draw (and vitals) per person; results reported within three days
    drawn = _between(rng, person.activity_start, np.full(n, now))
    observed = drawn[owner]
    reported = np.minimum(observed + rng.integers(2 * 3600, 72 * 3600, r), now)

    rows.tables["biomarkers"] = {
        "id": np.arange(ids.biomarkers, ids.biomarkers + r),
        "user_id": person.ids[owner],
        "name": names,
        "loinc_code": loinc,
        "value": value,
        "value_decimals": decimals,
        "unit": unit,
        "reference_low": low,
        "reference_high": high,
        "observed_at": observed,
        "updated_at": reported,
    }
    ids.biomarkers += r


def _goal_target(kind: int, amount: int, month: str) -> str:
    name = GOAL_KINDS[kind]
    if name == "lose_weight":
        return f"Lose {3 + amount % 18} kg by {month}"
    if name == "improve_sleep":
        return f"Sleep {(7, 7.5, 8)[amount % 3]} hours a night by {month}"
    if name == "balance_hormones":
        lead = ("Finish the hormone follow-up panel by", "Bring hormone levels into range by")[amount % 2]
        return f"{lead} {month}"
    if name == "lower_cholesterol":
        return f"Bring LDL under {(100, 130)[amount % 2]} mg/dL by {month}"
    if name == "build_muscle":
        return f"Gain {1 + amount % 5} kg of lean mass by {month}"
    if name == "reduce_stress":
        return f"Meditate {5 + 5 * (amount % 4)} minutes a day by {month}"
    if name == "improve_energy":
        return f"Walk {6000 + 500 * (amount % 9)} steps a day by {month}"
    return f"Keep blood pressure under {(120, 130)[amount % 2]}/80 by {month}"


def _goals(rng: np.random.Generator, ids: _NextIds, person: _People, now: int, rows: _Rows) -> None:
    n = len(person.ids)
    per_person = _pick(rng, (0.35, 0.35, 0.20, 0.10), n)
    kinds = _top_k(rng, np.zeros((n, len(GOAL_KINDS))), per_person)
    owner = np.repeat(np.arange(n), per_person)
    g = len(owner)
    created = _between(rng, person.activity_start[owner], np.full(g, now))
    due_days = created // _DAY + rng.integers(30, 241, g)
    completed = rng.random(g) < 0.25
    completed_at = _between(rng, created, np.full(g, now))
    amount = rng.integers(0, 1_000_000, g)
    due_month = (due_days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12).tolist()
    rows.tables["health_goals"] = {
        "id": np.arange(ids.health_goals, ids.health_goals + g),
        "user_id": person.ids[owner],
        "kind": np.array(GOAL_KINDS, dtype=object)[kinds],
        "target": [
            _goal_target(k, a, _MONTHS[mo])
            for k, a, mo in zip(kinds.tolist(), amount.tolist(), due_month, strict=True)
        ],
        "status": np.where(completed, "completed", "active").astype(object),
        "created_at": created,
        "due_date": due_days,
        "completed_at": np.where(completed, completed_at, _NA),
        # From a draw already made (no new one: the generator's stream stays as it was for what follows).
        "progress_percent": np.where(completed, 100, amount % 96),
    }
    ids.health_goals += g


def _consents(rng: np.random.Generator, ids: _NextIds, person: _People, now: int, rows: _Rows) -> None:
    n = len(person.ids)
    explicit = rng.random(n) < 0.05
    per_person = np.where(explicit, 1 + (rng.random(n) < 0.25), 0)
    integration = _top_k(rng, np.zeros((n, len(CONSENT_INTEGRATIONS))), per_person)
    owner = np.repeat(np.arange(n), per_person)
    c = len(owner)
    granted = rng.random(c) < 0.15
    updated = _between(rng, person.created[owner], np.full(c, now))
    rows.tables["consents"] = {
        "id": np.arange(ids.consents, ids.consents + c),
        "user_id": person.ids[owner],
        "integration": np.array(CONSENT_INTEGRATIONS, dtype=object)[integration],
        "granted": granted,
        "updated_at": updated,
    }
    ids.consents += c


def _clinics(rng: np.random.Generator, ids: _NextIds, person: _People, now: int, rows: _Rows) -> None:
    """A clinic per CLINIC_PEOPLE people of the block; CLINIC_SHARE of the people belong to one of them."""
    n = len(person.ids)
    k = max(1, n // CLINIC_PEOPLE)
    place = rng.integers(0, len(CLINIC_PLACES), k)
    kind = rng.integers(0, len(CLINIC_KINDS), k)
    clinic_ids = np.arange(ids.clinics, ids.clinics + k)
    places, kinds = np.array(CLINIC_PLACES, dtype=object)[place], np.array(CLINIC_KINDS, dtype=object)[kind]
    slugs = [
        f"{_ascii_slug(p)}-{_ascii_slug(c)}-{i}"
        for p, c, i in zip(places.tolist(), kinds.tolist(), clinic_ids.tolist(), strict=True)
    ]
    created = now - rng.integers(3 * _YEAR, 10 * _YEAR, k)
    rows.tables["clinics"] = {
        "id": clinic_ids,
        "name": places + " " + kinds,
        "domain": np.array([f"{slug}.example.com" for slug in slugs], dtype=object),
        "created_at": created,
        "updated_at": _between(rng, created, np.full(k, now)),
    }
    member = rng.random(n) < CLINIC_SHARE
    chosen = clinic_ids[rng.integers(0, k, n)].astype(object)
    chosen[~member] = None
    rows.tables["users"]["clinic_id"] = chosen
    ids.clinics += k


def _appointments(rng: np.random.Generator, ids: _NextIds, person: _People, now: int, rows: _Rows) -> None:
    """APPOINTMENT_SHARE of the people have one upcoming appointment (15:00 to 21:00 UTC, 1 to 14 days
    ahead: the afternoon in the demo's US zones); VOICE_SHARE of all people want their reminders as calls."""
    n = len(person.ids)
    rows.tables["users"]["reminder_channel"] = np.where(rng.random(n) < VOICE_SHARE, "voice", "sms").astype(
        object
    )
    booked = np.flatnonzero(rng.random(n) < APPOINTMENT_SHARE)
    a = len(booked)
    starts = now + rng.integers(1, 15, a) * _DAY + rng.integers(15, 22, a) * 3600
    rows.tables["appointments"] = {
        "id": np.arange(ids.appointments, ids.appointments + a),
        "user_id": person.ids[booked],
        "starts_at": starts,
        "kind": np.array(APPOINTMENT_KINDS, dtype=object)[rng.integers(0, len(APPOINTMENT_KINDS), a)],
        "status": np.full(a, "scheduled", dtype=object),
        "updated_at": np.full(a, now),
    }
    ids.appointments += a


# --------------------------------------------------------------------------- database


def _wipe_host_tables(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("TRUNCATE " + ", ".join(t.name for t in CLEARED_TABLES) + " RESTART IDENTITY")
    else:
        for table in reversed(CLEARED_TABLES):
            conn.execute(table.delete())


def _next_ids(conn: Connection) -> _NextIds:
    start = {
        t.name: int(conn.execute(select(func.coalesce(func.max(t.c.id), 0))).scalar_one()) + 1
        for t in HOST_TABLES
    }
    return _NextIds(**start)


def _sync_sequences(conn: Connection) -> None:
    """PostgreSQL serial columns do not see explicit ids: move each sequence past the largest id."""
    if conn.dialect.name != "postgresql":
        return
    for table in HOST_TABLES:
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608 - fixed names
                f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false) "
                f"WHERE pg_get_serial_sequence('{table.name}', 'id') IS NOT NULL"
            )
        )


def _drop_secondary_structures(conn: Connection) -> list[str]:
    """Drop the host tables' secondary indexes (and, on PostgreSQL, their foreign keys) for a bulk load.

    Returns the statements that put them back, exactly as the database itself reports them, indexes first.
    Primary keys and unique constraints stay. Both databases have transactional DDL: the caller runs the
    drop, the load and the rebuild in one transaction, so a failure leaves the schema as it was.
    """
    names = [t.name for t in HOST_TABLES]
    quote = conn.dialect.identifier_preparer.quote
    indexes: list[str] = []
    foreign_keys: list[str] = []
    if conn.dialect.name == "postgresql":
        for name, definition in conn.execute(
            text(
                "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                "WHERE t.relname = ANY(:names) AND t.relnamespace = to_regnamespace(current_schema()) "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
            ),
            {"names": names},
        ).all():
            conn.exec_driver_sql(f"DROP INDEX {quote(name)}")
            indexes.append(definition)
        for name, table, definition in conn.execute(
            text(
                "SELECT c.conname, t.relname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "JOIN pg_class t ON t.oid = c.conrelid WHERE c.contype = 'f' AND t.relname = ANY(:names) "
                "AND t.relnamespace = to_regnamespace(current_schema())"
            ),
            {"names": names},
        ).all():
            conn.exec_driver_sql(f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(name)}")
            foreign_keys.append(f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} {definition}")
    elif conn.dialect.name == "sqlite":
        for name, definition in conn.execute(
            text(
                "SELECT name, sql FROM sqlite_master "
                "WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN :names"
            ).bindparams(bindparam("names", expanding=True)),
            {"names": names},
        ).all():
            conn.exec_driver_sql(f"DROP INDEX {quote(name)}")
            indexes.append(definition)
    return indexes + foreign_keys


def _load_block(
    conn: Connection,
    ids: _NextIds,
    n: int,
    seed: int,
    now: int,
    invalid_fraction: float,
    counts: dict[str, int],
) -> None:
    # one RNG stream per block of people, keyed by the seed and the block's first user id
    rows = _block(np.random.default_rng([seed, ids.users]), ids, n, now, invalid_fraction)
    for table in HOST_TABLES:  # parents first
        if table.name in rows.tables:
            counts[table.name] += _write(conn, table, rows.tables[table.name])


def generate_demo(
    url: str | None = None,
    people: int = 1000,
    seed: int = 7,
    invalid_fraction: float = 0.03,
    chunk_size: int = 5000,
    *,
    replace: bool = False,
    now: datetime | None = None,
    bulk: bool | None = None,
) -> DemoSummary:
    """Write `people` synthetic people (and their assessments, biomarkers, goals, consents, upcoming
    appointments) to the database.

    - Migrates first. Appends after the largest existing ids, or, with `replace=True`, empties the host
      tables first (the hub's tables are never touched).
    - Deterministic: the same seed, starting ids and `now` give the same rows, whatever `chunk_size`.
      `now` (the end of every time window) defaults to today's UTC midnight.
    - `invalid_fraction` of people get a malformed e-mail and as many a malformed phone; at the default
      3 %, 1 in 500 completed assessments has an out-of-range overall score and 1 in 1000 biomarker results
      has no LOINC code. With 0, no such defect is generated (out-of-reference and mmol/L results remain:
      they are valid data).
    - `chunk_size` people (rounded up to whole blocks of 1,000) are generated and written at a time, one
      transaction each; memory does not grow with `people`.
    - Bulk load (`bulk=True`, or None when the host tables are empty and `people` >= 20,000): everything
      is written in one transaction with the host tables' secondary indexes (and PostgreSQL foreign keys)
      dropped and rebuilt at the end: two to three times as fast. Other sessions wait for the host tables
      until it commits; rebuilding costs time in proportion to the rows already there.
    """
    if people < 0:
        raise ValueError("people must be >= 0")
    if not 0.0 <= invalid_fraction <= 0.45:
        raise ValueError("invalid_fraction must be between 0 and 0.45")
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    anchor = now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if anchor.tzinfo is None:
        anchor = anchor.replace(tzinfo=UTC)
    now_s = int(anchor.timestamp())

    migrate(url)
    engine = get_engine(url)
    counts = {t.name: 0 for t in HOST_TABLES}
    blocks = [(start, min(_BLOCK, people - start)) for start in range(0, people, _BLOCK)]
    with engine.begin() as conn:
        if replace:
            _wipe_host_tables(conn)
        ids = _next_ids(conn)
        first_user = ids.users
        empty = all(v == 1 for v in asdict(ids).values())
        use_bulk = bool(blocks) and (empty and people >= _BULK_MIN_PEOPLE if bulk is None else bulk)
        if use_bulk:
            rebuild = _drop_secondary_structures(conn)
            for _start, n in blocks:
                _load_block(conn, ids, n, seed, now_s, invalid_fraction, counts)
            for statement in rebuild:
                conn.exec_driver_sql(statement)
            _sync_sequences(conn)
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("ANALYZE " + ", ".join(t.name for t in HOST_TABLES))
    if not use_bulk:
        per_chunk = max(1, -(-chunk_size // _BLOCK))  # whole blocks per transaction
        for first in range(0, len(blocks), per_chunk):
            with engine.begin() as conn:
                for _start, n in blocks[first : first + per_chunk]:
                    _load_block(conn, ids, n, seed, now_s, invalid_fraction, counts)
                _sync_sequences(conn)

    summary = DemoSummary(
        users=counts["users"],
        assessments=counts["assessments"],
        assessment_scores=counts["assessment_scores"],
        biomarkers=counts["biomarkers"],
        health_goals=counts["health_goals"],
        consents=counts["consents"],
        clinics=counts["clinics"],
        appointments=counts["appointments"],
        first_user_id=first_user if people else None,
        last_user_id=first_user + people - 1 if people else None,
    )
    log.info("demo data written: %s", json.dumps(summary.as_dict()))
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--invalid-fraction", type=float, default=0.03)
    parser.add_argument("--chunk-size", type=int, default=5000)
    parser.add_argument(
        "--replace", action="store_true", help="empty the host tables first (hub tables are kept)"
    )
    parser.add_argument(
        "--bulk",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="drop and rebuild the host tables' secondary indexes around the load "
        "(default: when they are empty and there are 20,000 people or more)",
    )
    parser.add_argument("--url", default=None, help="database URL (default: DATABASE_URL / settings)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    summary = generate_demo(
        args.url,
        people=args.people,
        seed=args.seed,
        invalid_fraction=args.invalid_fraction,
        chunk_size=args.chunk_size,
        replace=args.replace,
        bulk=args.bulk,
    )
    print(json.dumps({**summary.as_dict(), "seconds": round(time.perf_counter() - started, 2)}))


if __name__ == "__main__":
    main()
