"""The demo generator on real SQLite and PostgreSQL databases: counts, determinism, defects, coding, ids."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Table, func, inspect, select

import devtools.demo as demo
from devtools.demo import (
    ASSESSMENT_CATEGORIES,
    BIOMARKER_CATALOGUE,
    BIOMARKERS_BY_NAME,
    CONSENT_INTEGRATIONS,
    GOAL_KINDS,
    HOST_TABLES,
    MOLAR_CONVERSIONS,
    MOLAR_UNIT,
    UNKNOWN_BIOMARKER,
    DemoSummary,
    generate_demo,
)
from ennu.db import get_engine, session_scope
from ennu.models import Assessment, OutboxEvent, User

PG_ADMIN_URL = os.environ.get("ENNU_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
NOW = datetime(2026, 6, 1, tzinfo=UTC)

# Well-formed address (no consecutive dots anywhere) on an RFC 2606 domain.
ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
WELL_FORMED_EMAIL = re.compile(rf"^{ATOM}(\.{ATOM})*@example\.(com|org|net)$")
NANP_LINE = re.compile(r"^[2-9]\d{2}5550(1\d\d)$")  # area code + 555-01xx once normalised


def us_digits(phone: str) -> str | None:
    """Ten NANP digits if the string is a well-formed US number in one of the usual notations."""
    if re.search(r"[A-Za-z]", phone):
        return None
    digits = re.sub(r"\D", "", phone)
    if phone.startswith("+"):
        return digits[1:] if len(digits) == 11 and digits.startswith("1") else None
    return digits if len(digits) == 10 else None


# --------------------------------------------------------------------------- databases of our own


@pytest.fixture(scope="module")
def postgresql_demo_url() -> Iterator[str]:
    name = f"ennu_demo_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def sqlite_demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    yield url
    get_engine(url).dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    """A database of this module's own; each test starts with `replace=True` (or empties it)."""
    return str(request.getfixturevalue(f"{request.param}_demo_url"))


def rows_of(url: str, table: Table) -> list[tuple[Any, ...]]:
    with get_engine(url).connect() as conn:
        return [tuple(r) for r in conn.execute(select(table).order_by(table.c.id))]


def digest(url: str) -> dict[str, str]:
    """A fingerprint of every host table, to compare runs without holding or showing any value."""
    return {t.name: hashlib.sha256(repr(rows_of(url, t)).encode()).hexdigest() for t in HOST_TABLES}


def count(url: str, table: Table) -> int:
    with get_engine(url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def table(name: str) -> Table:
    return next(t for t in HOST_TABLES if t.name == name)


def naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


# --------------------------------------------------------------------------- tests


def test_counts_match_the_summary(url: str) -> None:
    summary = generate_demo(url, people=1500, seed=3, chunk_size=400, replace=True, now=NOW)

    assert isinstance(summary, DemoSummary)
    assert (summary.users, summary.first_user_id, summary.last_user_id) == (1500, 1, 1500)
    for name, expected in summary.as_dict().items():
        if name.endswith("_user_id"):
            continue
        assert count(url, table(name)) == expected, name
    # the shape asked for: 1-3 assessments, 3-10 biomarkers, 0-3 goals a person, consents for ~5 %
    assert 1.5 * summary.users < summary.assessments < 2.0 * summary.users
    assert 5.5 * summary.users < summary.biomarkers < 7.5 * summary.users
    assert 0.8 * summary.users < summary.health_goals < 1.3 * summary.users
    with get_engine(url).connect() as conn:
        consenting = conn.execute(select(func.count(func.distinct(table("consents").c.user_id)))).scalar_one()
    assert 0.03 * summary.users < consenting < 0.07 * summary.users


def test_same_seed_same_rows_whatever_the_chunk_size(url: str) -> None:
    generate_demo(url, people=1200, seed=5, replace=True, now=NOW)
    first = digest(url)
    with get_engine(url).connect() as conn:
        emails = list(conn.execute(select(User.email).order_by(User.id)).scalars())

    generate_demo(url, people=1200, seed=5, chunk_size=1, replace=True, now=NOW)
    assert digest(url) == first
    with get_engine(url).connect() as conn:
        again = list(conn.execute(select(User.email).order_by(User.id)).scalars())
    assert again == emails  # the same e-mail sequence (compared here, never shown)

    generate_demo(url, people=1200, seed=6, replace=True, now=NOW)
    other = digest(url)
    assert all(other[name] != first[name] for name in ("users", "biomarkers", "assessment_scores"))


def test_invalid_fraction_is_roughly_as_asked(url: str) -> None:
    generate_demo(url, people=2000, seed=11, invalid_fraction=0.05, replace=True, now=NOW)
    with get_engine(url).connect() as conn:
        emails = list(conn.execute(select(User.email)).scalars())
        phones = [p for p in conn.execute(select(User.phone)).scalars() if p is not None]
    bad_emails = sum(1 for e in emails if not WELL_FORMED_EMAIL.match(e))
    bad_phones = sum(1 for p in phones if us_digits(p) is None)
    assert 0.03 * len(emails) < bad_emails < 0.07 * len(emails)
    assert 0.03 * len(emails) < bad_phones < 0.07 * len(emails)
    # every well-formed e-mail is unique (it carries the user id), every good phone is fictional
    good = [e.lower() for e in emails if WELL_FORMED_EMAIL.match(e)]
    assert len(set(good)) == len(good)
    assert all(NANP_LINE.match(d) for p in phones if (d := us_digits(p)) is not None)

    clean = generate_demo(url, people=1000, seed=11, invalid_fraction=0.0, replace=True, now=NOW)
    with get_engine(url).connect() as conn:
        assert all(WELL_FORMED_EMAIL.match(e) for e in conn.execute(select(User.email)).scalars())
        assert all(us_digits(p) for p in conn.execute(select(User.phone)).scalars() if p is not None)
        bio = table("biomarkers")
        assert conn.execute(select(func.count()).where(bio.c.loinc_code.is_(None))).scalar_one() == 0
        overall = Assessment.overall_score
        assert conn.execute(select(func.count()).where((overall < 0) | (overall > 10))).scalar_one() == 0
    assert clean.users == 1000


def test_biomarkers_are_coded_except_the_deliberate_unknowns(url: str) -> None:
    summary = generate_demo(url, people=2000, seed=13, replace=True, now=NOW)
    rows = rows_of(url, table("biomarkers"))
    columns = [c.name for c in table("biomarkers").columns]
    records = [dict(zip(columns, r, strict=True)) for r in rows]
    unknown = [r for r in records if r["name"] == UNKNOWN_BIOMARKER]
    coded = [r for r in records if r["name"] != UNKNOWN_BIOMARKER]

    assert 1 <= len(unknown) <= 0.004 * summary.biomarkers  # about 1 in 1000
    assert all(r["loinc_code"] is None and r["unit"] for r in unknown)
    molar = 0
    for r in coded:
        spec = BIOMARKERS_BY_NAME[r["name"]]
        assert r["loinc_code"] == spec.loinc_code == spec.loinc
        if r["unit"] == MOLAR_UNIT:
            molar += 1
            assert r["name"] in MOLAR_CONVERSIONS
        else:
            assert r["unit"] == spec.unit
        assert (r["reference_low"] is None) == (spec.reference_low is None)
        assert (r["reference_high"] is None) == (spec.reference_high is None)
        assert r["value"] > 0
        # the decimals the lab reported travel with the value (a float keeps no trailing zero)
        assert 0 <= r["value_decimals"] <= 2 and round(r["value"], r["value_decimals"]) == r["value"]
    assert molar > 0
    # every catalogue marker appears; most results inside the reference range; a few critical glucoses
    assert {r["name"] for r in coded} == {b.name for b in BIOMARKER_CATALOGUE}
    outside = sum(
        1
        for r in coded
        if (r["reference_low"] is not None and r["value"] < r["reference_low"])
        or (r["reference_high"] is not None and r["value"] > r["reference_high"])
    )
    assert 0.05 * len(coded) < outside < 0.35 * len(coded)
    assert any(r["name"] == "glucose" and r["unit"] == "mg/dL" and r["value"] > 400 for r in coded)
    # 3-10 results a person, systolic and diastolic always together
    per_person: dict[int, list[str]] = {}
    for r in records:
        per_person.setdefault(r["user_id"], []).append(r["name"])
    assert all(3 <= len(names) <= 10 for names in per_person.values())
    assert all(
        ("blood_pressure_systolic" in n) == ("blood_pressure_diastolic" in n) for n in per_person.values()
    )


def test_scores_are_within_range_except_the_deliberate_outliers(url: str) -> None:
    generate_demo(url, people=2000, seed=17, replace=True, now=NOW)
    assessments = {r[0]: r for r in rows_of(url, table("assessments"))}
    scores: dict[int, list[tuple[str, float]]] = {}
    for _id, assessment_id, category, score in rows_of(url, table("assessment_scores")):
        scores.setdefault(assessment_id, []).append((category, score))
    users = {r[0]: r for r in rows_of(url, table("users"))}

    outliers = 0
    for assessment_id, user_id, kind, status, started, completed, overall in assessments.values():
        if status == "in_progress":
            assert completed is None and overall is None and assessment_id not in scores
            continue
        assert status == "completed" and started is not None and completed is not None
        assert started < completed
        assert naive_utc(NOW - timedelta(days=366)) < naive_utc(completed) <= naive_utc(NOW)
        categories = [c for c, _s in scores[assessment_id]]
        assert set(categories) == set(ASSESSMENT_CATEGORIES[kind]) and 4 <= len(categories) <= 6
        values = [s for _c, s in scores[assessment_id]]
        assert all(0 <= s <= 10 and round(s, 1) == s for s in values)
        if 0 <= overall <= 10:
            assert abs(overall - sum(values) / len(values)) <= 0.05 + 1e-9
        else:
            outliers += 1
            assert overall in (11.5, -1.0)
        if kind == "menopause":
            assert users[user_id][6] == "female"
    completed_count = sum(1 for a in assessments.values() if a[3] == "completed")
    assert 1 <= outliers <= 0.006 * completed_count  # about 1 in 500
    assert 0.02 * len(assessments) < len(assessments) - completed_count < 0.12 * len(assessments)
    # postgres keeps them aware; SQLite gives back the same UTC wall time
    stamp = next(a[5] for a in assessments.values() if a[5] is not None)
    assert stamp.tzinfo is not None if url.startswith("postgresql") else stamp.tzinfo is None


def test_most_people_belong_to_a_clinic_with_a_name_and_its_own_domain(url: str) -> None:
    summary = generate_demo(url, people=2000, seed=23, replace=True, now=NOW)
    clinics = {c[0]: c for c in rows_of(url, table("clinics"))}
    clinic_column = list(table("users").columns.keys()).index("clinic_id")
    members = [u[clinic_column] for u in rows_of(url, table("users"))]

    assert summary.clinics == len(clinics) == 20  # one a hundred people
    assert 0.75 < sum(1 for m in members if m is not None) / len(members) < 0.85
    assert {m for m in members if m is not None} <= set(clinics)
    domains = [c[2] for c in clinics.values()]
    assert len(set(domains)) == len(domains) and all(d.endswith(".example.com") for d in domains)
    assert all(c[1] and " " in c[1] for c in clinics.values())


def test_people_goals_and_consents_look_real(url: str) -> None:
    generate_demo(url, people=1000, seed=19, replace=True, now=NOW)
    users = rows_of(url, table("users"))
    sexes = [u[6] for u in users]
    assert {"female", "male", "other"} == set(sexes)
    assert sexes.count("female") > sexes.count("male") > sexes.count("other")
    # CRM-owned columns (lifecycle stage, owners) stay empty: only the inbound sync writes them
    for (
        _id,
        first,
        last,
        _email,
        _phone,
        born,
        _sex,
        zone,
        _m,
        _c,
        *crm,
        mrn,
        _clinic,
        _channel,
        created,
        updated,
    ) in users:
        assert crm == [None, None, None]
        assert mrn is None  # the EHR's record number: the demo's people are not patients of a clinic
        assert first and last
        assert date(1945, 1, 1) <= born <= date(2005, 12, 31)
        zoneinfo.ZoneInfo(zone)
        assert zone.startswith(("America/", "Pacific/"))
        assert naive_utc(created) <= naive_utc(updated) <= naive_utc(NOW)
    marketing = sum(1 for u in users if u[8]) / len(users)
    communication = sum(1 for u in users if u[9]) / len(users)
    assert 0.64 < marketing < 0.76 and 0.54 < communication < 0.66

    for _id, _user, kind, target, status, created, due, completed, *_progress in rows_of(
        url, table("health_goals")
    ):
        assert kind in GOAL_KINDS and target and len(target) <= 200
        assert status in ("active", "completed")
        assert (completed is not None) == (status == "completed")
        assert due is not None and due > created.date()
    consents = rows_of(url, table("consents"))
    assert {c[2] for c in consents} <= set(CONSENT_INTEGRATIONS)
    granted = sum(1 for c in consents if c[3])
    assert 0 < granted < 0.4 * len(consents)


def test_person_one_is_the_readme_example(url: str) -> None:
    generate_demo(url, people=20, replace=True)  # default seed and today's window, as `make up` does
    with session_scope(url) as session:
        person = session.get(User, 1)
        assessment = session.get(Assessment, 1)
        assert person is not None and person.marketing_consent and person.communication_consent
        assert WELL_FORMED_EMAIL.match(person.email) and person.phone and us_digits(person.phone)
        assert assessment is not None and assessment.user_id == 1 and assessment.status == "completed"


def test_appending_continues_the_ids(url: str) -> None:
    first = generate_demo(url, people=1000, seed=23, replace=True, now=NOW)
    second = generate_demo(url, people=700, seed=23, now=NOW)

    assert (second.first_user_id, second.last_user_id) == (1001, 1700)
    assert count(url, table("users")) == 1700
    for name in ("assessments", "assessment_scores", "biomarkers", "health_goals", "consents"):
        ids = [r[0] for r in rows_of(url, table(name))]
        assert len(ids) == len(set(ids)) == getattr(first, name) + getattr(second, name), name
    with get_engine(url).connect() as conn:
        emails = list(conn.execute(select(func.lower(User.email))).scalars())
    assert len(set(emails)) == len(emails)  # the same seed again still makes other people
    # the host app's own inserts (no explicit id) still work afterwards: PostgreSQL sequences moved on
    with session_scope(url) as session:
        user = User(first_name="Ada", last_name="Appended", email="ada.appended@example.com")
        session.add(user)
        session.flush()
        assert user.id == 1701


def test_replace_empties_host_tables_and_keeps_hub_tables(url: str) -> None:
    generate_demo(url, people=300, seed=29, replace=True, now=NOW)
    with session_scope(url) as session:
        session.merge(OutboxEvent(id="demo-hub-row", type="user.login", subject=1))
    summary = generate_demo(url, people=200, seed=29, replace=True, now=NOW)
    assert (summary.first_user_id, count(url, table("users"))) == (1, 200)
    with session_scope(url) as session:
        assert session.get(OutboxEvent, "demo-hub-row") is not None
        session.delete(session.get(OutboxEvent, "demo-hub-row"))


def schema_of(url: str) -> dict[str, Any]:
    inspector = inspect(get_engine(url))
    schema: dict[str, Any] = {}
    for t in HOST_TABLES:
        indexes = [
            (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(t.name)
        ]
        keys = [
            (tuple(fk["constrained_columns"]), fk["referred_table"], fk.get("options", {}).get("ondelete"))
            for fk in inspector.get_foreign_keys(t.name)
        ]
        schema[t.name] = (sorted(indexes), sorted(keys))
    return schema


def test_bulk_load_writes_the_same_rows_and_restores_the_schema(url: str) -> None:
    generate_demo(url, people=1500, seed=31, replace=True, now=NOW, bulk=False)
    expected = digest(url)
    schema = schema_of(url)
    assert any(indexes for indexes, _fks in schema.values())

    generate_demo(url, people=1500, seed=31, replace=True, now=NOW, bulk=True)
    assert digest(url) == expected
    assert schema_of(url) == schema

    appended = generate_demo(url, people=300, seed=31, now=NOW, bulk=True)  # forced on a non-empty table
    assert (appended.first_user_id, count(url, table("users"))) == (1501, 1800)
    assert schema_of(url) == schema


def test_fast_paths_write_what_core_insert_writes(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite executemany of ready-made text, PostgreSQL COPY: the same rows as Core insert() writes."""
    generate_demo(url, people=500, seed=37, replace=True, now=NOW)
    expected = digest(url)
    for method in ("core", "executemany") if url.startswith("postgresql") else ("core",):
        monkeypatch.setattr(demo, "_WRITE_METHOD", method)
        generate_demo(url, people=500, seed=37, replace=True, now=NOW)
        assert digest(url) == expected, method


def test_cli_prints_counts_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = f"sqlite:///{tmp_path / 'cli.db'}"
    demo.main(["--people", "250", "--seed", "3", "--url", target])
    demo.main(["--people", "100", "--seed", "3", "--url", target, "--replace"])
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["users"] == 250 and second["users"] == 100 and second["first_user_id"] == 1
    assert set(first) == set(DemoSummary.__dataclass_fields__) | {"seconds"}
    assert all(isinstance(v, int | float) for v in first.values())
    get_engine(target).dispose()


def test_arguments_are_checked(tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'args.db'}"
    with pytest.raises(ValueError):
        generate_demo(target, people=-1)
    with pytest.raises(ValueError):
        generate_demo(target, invalid_fraction=0.9)
    with pytest.raises(ValueError):
        generate_demo(target, chunk_size=0)
    empty = generate_demo(target, people=0)
    assert (empty.users, empty.first_user_id, empty.last_user_id) == (0, None, None)
    get_engine(target).dispose()


def test_some_people_have_an_upcoming_appointment_and_some_want_calls(url: str) -> None:
    summary = generate_demo(url, people=2000, seed=31, replace=True, now=NOW)
    with session_scope(url) as session:
        appointments = session.execute(
            select(
                table("appointments").c.user_id,
                table("appointments").c.starts_at,
                table("appointments").c.kind,
            )
        ).all()
        channels = dict(
            session.execute(select(User.reminder_channel, func.count()).group_by(User.reminder_channel)).all()
        )

    assert summary.appointments == len(appointments)
    assert 0.03 * summary.users < len(appointments) < 0.07 * summary.users
    assert len({user for user, _, _ in appointments}) == len(appointments)  # one each
    # Upcoming: 1 to 14 days after the demo's `now`, in the afternoon of the demo's US zones.
    assert all(
        naive_utc(NOW) + timedelta(days=1) <= naive_utc(at) < naive_utc(NOW) + timedelta(days=15)
        and 15 <= at.hour < 22
        for _, at, _ in appointments
    )
    assert {kind for _, _, kind in appointments} == set(demo.APPOINTMENT_KINDS)
    assert set(channels) == {"sms", "voice"} and 0.15 < channels["voice"] / summary.users < 0.25
