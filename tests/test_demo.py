"""The demo generator: realistic, seeded, coded, with deliberate mistakes for validation to catch."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from ennu.db import session_scope
from ennu.demo import BIOMARKER_CATALOGUE, generate_demo
from ennu.models import Assessment, AssessmentScore, Biomarker, Consent, HealthGoal, User

VALID_EMAIL = re.compile(r"^[a-z0-9.'-]+@example\.(com|org|net)$")


def count(model: type) -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_counts_match_the_summary_and_codes_are_real(database: str) -> None:
    summary = generate_demo(database, people=1500, seed=3, chunk_size=400)

    assert (summary.users, summary.first_user_id, summary.last_user_id) == (1500, 1, 1500)
    for model, expected in (
        (User, summary.users),
        (Assessment, summary.assessments),
        (AssessmentScore, summary.assessment_scores),
        (Biomarker, summary.biomarkers),
        (HealthGoal, summary.health_goals),
        (Consent, summary.consents),
    ):
        assert count(model) == expected
    catalogue = {spec.name: spec for spec in BIOMARKER_CATALOGUE}
    with session_scope() as session:
        for name, loinc, unit in session.execute(
            select(Biomarker.name, Biomarker.loinc_code, Biomarker.unit)
        ):
            if name in catalogue:
                assert loinc == catalogue[name].loinc
                assert unit in (catalogue[name].unit, "mmol/L")
            else:
                assert loinc is None  # the deliberate uncoded marker
        scores = list(session.execute(select(AssessmentScore.score)).scalars())
        assert all(0 <= s <= 10 for s in scores)
        overall = [s for s in session.execute(select(Assessment.overall_score)).scalars() if s is not None]
        assert sum(1 for s in overall if not 0 <= s <= 10) < len(overall) * 0.01
        emails = list(session.execute(select(User.email)).scalars())
    invalid = sum(1 for e in emails if not VALID_EMAIL.match(e))
    assert 0.01 * len(emails) < invalid < 0.06 * len(emails)


def test_same_seed_same_people_and_appending_continues_ids(sqlite_database: str) -> None:
    generate_demo(sqlite_database, people=300, seed=5)
    with session_scope() as session:
        first = list(session.execute(select(User.email).order_by(User.id)).scalars())
    generate_demo(sqlite_database, people=300, seed=5, replace=True)
    with session_scope() as session:
        again = list(session.execute(select(User.email).order_by(User.id)).scalars())
    assert first == again

    appended = generate_demo(sqlite_database, people=50, seed=6)
    assert (appended.first_user_id, appended.last_user_id) == (301, 350)
    assert count(User) == 350


def test_person_one_is_the_readme_example(sqlite_database: str) -> None:
    generate_demo(sqlite_database, people=20)
    with session_scope() as session:
        person = session.get(User, 1)
        assessment = session.get(Assessment, 1)
    assert person is not None and person.marketing_consent and VALID_EMAIL.match(person.email)
    assert assessment is not None and assessment.user_id == 1 and assessment.status == "completed"
