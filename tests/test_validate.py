"""The validation stage: Great Expectations from the mapping's constraints, thread-safe, values never kept."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from mappings import Mapping, apply_mapping, load_all_mappings
from tasks.validate import validate_mapped

REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


def hubspot() -> Mapping:
    return load_all_mappings(REPO_MAPPINGS)[("assessment.completed", "hubspot")]


def frame(emails: list[str | None], scores: list[float | None]) -> pd.DataFrame:
    n = len(emails)
    source = pd.DataFrame(
        {
            "event.id": [f"e{i}" for i in range(n)],
            "user.id": list(range(1, n + 1)),
            "user.email": emails,
            "user.first_name": ["Ann"] * n,
            "user.last_name": ["Lee"] * n,
            "user.phone": ["(555) 010-1234"] * n,
            "user.date_of_birth": [None] * n,
            "assessment.id": list(range(100, 100 + n)),
            "assessment.type": ["sleep"] * n,
            "assessment.completed_at": [None] * n,
            "assessment.overall_score": scores,
        }
    )
    return apply_mapping(hubspot(), source)


def test_invalid_email_and_out_of_range_score_are_rejected_with_the_expectation_named() -> None:
    mapped = frame(
        ["ok@example.com", "not-an-email", "fine@example.org", "x@example.net"], [5.0, 5.0, 11.5, None]
    )

    result = validate_mapped(hubspot(), mapped)

    assert list(result.valid["_record_key"]) == ["user:1"]
    rejected = {r.record_key: r.failed for r in result.rejected}
    assert rejected["user:2"] == ("email: expect_column_values_to_match_regex",)
    assert rejected["user:3"] == ("ennu_overall_score: expect_column_values_to_be_between",)
    assert rejected["user:4"] == ("ennu_overall_score: expect_column_values_to_not_be_null",)
    assert {r.event_id for r in result.rejected} == {"e1", "e2", "e3"}


def test_rejections_carry_no_values() -> None:
    mapped = frame(["leaky.canary@example", "ok@example.com"], [5.0, 99.0])
    result = validate_mapped(hubspot(), mapped)
    text = repr(result) + repr(result.rejected)
    assert "leaky.canary" not in text
    assert "99" not in text


def test_concurrent_validation_gives_each_batch_its_own_right_answer() -> None:
    """GX contexts are not thread-safe: 8 threads validate different batches at once, each exactly right."""
    rng = random.Random(42)
    batches = []
    for _ in range(48):
        n = rng.randint(5, 60)
        bad = set(rng.sample(range(n), rng.randint(0, n // 2)))
        emails = [f"p{i}@example.com" if i not in bad else f"broken{i}" for i in range(n)]
        batches.append((frame(emails, [5.0] * n), {f"user:{i + 1}" for i in bad}))

    def run(item: tuple[pd.DataFrame, set[str]]) -> bool:
        mapped, expected = item
        result = validate_mapped(hubspot(), mapped)
        return {r.record_key for r in result.rejected} == expected and len(result.valid) == len(mapped) - len(
            expected
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(run, batches))
    assert all(outcomes), f"{outcomes.count(False)} of {len(outcomes)} batches got a wrong invalid-row set"
