"""The validation stage: Great Expectations from the mapping's constraints, thread-safe, values never kept."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from mappings import Mapping, apply_mapping, load_all_mappings
from tasks.validate import Rejection, ValidationResult, expectations_for, validate_mapped

REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


def mapping(connector: str = "hubspot") -> Mapping:
    return load_all_mappings(REPO_MAPPINGS)[("assessment.completed", connector)]


def mapped(
    emails: list[str | None],
    scores: list[float | None],
    *,
    phones: list[str | None] | None = None,
    connector: str = "hubspot",
) -> pd.DataFrame:
    n = len(emails)
    source = pd.DataFrame(
        {
            "event.id": [f"e{i}" for i in range(n)],
            "user.id": list(range(1, n + 1)),
            "user.email": emails,
            "user.first_name": ["Ann"] * n,
            "user.last_name": [None] * n,
            "user.phone": phones or [None] * n,
            "user.date_of_birth": [None] * n,
            "assessment.id": list(range(100, 100 + n)),
            "assessment.type": ["sleep"] * n,
            "assessment.completed_at": [None] * n,
            "assessment.overall_score": scores,
        },
        index=[f"row-{i}" for i in range(n)],
    )
    return apply_mapping(mapping(connector), source)


def test_invalid_email_and_out_of_range_score_are_rejected_with_the_expectation_named() -> None:
    frame = mapped(
        ["ok@example.com", "not-an-email", "fine@example.org", "x@example.net"], [5.0, 5.0, 11.5, 0.0]
    )

    result = validate_mapped(mapping(), frame)

    assert list(result.valid["_record_key"]) == ["user:1", "user:4"]
    assert list(result.valid.index) == ["row-0", "row-3"]  # the valid rows as they were
    assert list(result.valid.columns) == list(frame.columns)
    assert result.rejected == [
        Rejection("user:2", "e1", 2, ("email: expect_column_values_to_match_regex",)),
        Rejection("user:3", "e2", 3, ("ennu_overall_score: expect_column_values_to_be_between",)),
    ]


def test_a_required_null_is_rejected_and_other_nulls_pass() -> None:
    frame = mapped(["a@example.com", None, "c@example.com"], [None, 5.0, 5.0])

    result = validate_mapped(mapping(), frame)

    assert {r.record_key: r.failed for r in result.rejected} == {
        "user:1": ("ennu_overall_score: expect_column_values_to_not_be_null",),
        "user:2": ("email: expect_column_values_to_not_be_null",),
    }
    assert list(result.valid["_record_key"]) == ["user:3"]  # null phone, name, dates: not required


def test_one_record_failing_several_expectations_is_one_rejection_naming_each() -> None:
    frame = mapped(["bad", "b@example.com"], [42.0, 1.0], phones=["12", "(555) 010-1234"])
    [rejection] = validate_mapped(mapping(), frame).rejected
    assert rejection.failed == (
        "email: expect_column_values_to_match_regex",
        "ennu_overall_score: expect_column_values_to_be_between",
        "phone: expect_column_values_to_match_regex",
    )


def test_email_and_phone_patterns_are_strict() -> None:
    emails = [
        "a@example.com",
        "a@example.com\n",
        "a@example",
        "a b@example.com",
        "@example.com",
        "ä@example.com",
    ]
    phones = ["+15550101234", "+15550101234\n", "+0123456789", "+1234567", "+١٢٣٤٥٦٧٨٩٠", "+1234567890123456"]
    frame = mapped(["ok@example.com"] * len(emails), [1.0] * len(emails))
    frame["email"] = emails
    frame["phone"] = phones
    result = validate_mapped(mapping(), frame)
    failed = {r.record_key: r.failed for r in result.rejected}
    assert list(result.valid["_record_key"]) == ["user:1"]
    assert failed["user:2"] == (
        "email: expect_column_values_to_match_regex",
        "phone: expect_column_values_to_match_regex",
    )
    assert set(failed) == {f"user:{i}" for i in range(2, 7)}


def test_enum_and_max_length_on_mailchimp() -> None:
    frame = mapped(["a@example.com", "b@example.com"], [1.0, 2.0], connector="mailchimp")
    frame.loc[frame.index[0], "properties.assessment_type"] = "unknown"
    frame.loc[frame.index[1], "merge_fields.FNAME"] = "x" * 101
    failed = {r.record_key: r.failed for r in validate_mapped(mapping("mailchimp"), frame).rejected}
    # Mailchimp's assessment records are the assessments (its follow-up event is one per assessment).
    assert failed == {
        "assessment:100": ("properties.assessment_type: expect_column_values_to_be_in_set",),
        "assessment:101": ("merge_fields.FNAME: expect_column_value_lengths_to_be_between",),
    }


def test_a_row_without_a_record_id_is_rejected() -> None:
    frame = mapped(["a@example.com", "b@example.com"], [1.0, 2.0])
    frame.loc[frame.index[0], "_record_key"] = None
    [rejection] = validate_mapped(mapping(), frame).rejected
    assert rejection == Rejection("", "e0", 1, ("_record_key: expect_column_values_to_not_be_null",))


def test_an_expectation_that_cannot_run_rejects_rather_than_passes() -> None:
    frame = mapped(["a@example.com", "b@example.com"], [1.0, 2.0])
    frame.loc[frame.index[0], "ennu_overall_score"] = "high"  # GX cannot compare a string with numbers
    result = validate_mapped(mapping(), frame)
    assert result.valid.empty
    assert {r.failed for r in result.rejected} == {
        ("ennu_overall_score: expect_column_values_to_be_between",)
    }


def test_an_empty_frame_is_valid_and_empty() -> None:
    frame = mapped([], [])
    result = validate_mapped(mapping(), frame)
    assert result.valid.empty and result.rejected == []


def test_the_suite_comes_from_the_constraints() -> None:
    assert ("email", "ExpectColumnValueLengthsToBeBetween", {"max_value": 254}) in expectations_for(mapping())
    assert expectations_for(mapping())[0] == ("_record_key", "ExpectColumnValuesToNotBeNull", {})
    assert not any(column == "date_of_birth" for column, _, _ in expectations_for(mapping()))


def test_rejections_and_results_carry_no_values(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    frame = mapped(["leaky.canary@example", "ok@example.com"], [5.0, 9.87], phones=["555 867 53099", None])
    frame.loc[frame.index[1], "ennu_overall_score"] = 98.7

    result = validate_mapped(mapping(), frame)

    assert isinstance(result, ValidationResult)
    assert len(result.rejected) == 2
    text = " ".join([repr(result), str(result), *map(repr, result.rejected), *map(str, result.rejected)])
    for value in ("leaky", "canary", "98.7", "867", "5309"):
        assert value not in text
        assert value not in caplog.text


def test_concurrent_validation_gives_each_batch_its_own_right_answer() -> None:
    """GX contexts are not thread-safe: 8 threads validate different batches at once, each exactly right."""
    rng = random.Random(42)
    batches = []
    for _ in range(8 * 8):
        n = rng.randint(5, 60)
        bad_email = set(rng.sample(range(n), rng.randint(0, n // 3)))
        bad_score = set(rng.sample(range(n), rng.randint(0, n // 3)))
        emails = [f"p{i}@example.com" if i not in bad_email else f"broken{i}" for i in range(n)]
        scores = [11.0 + i if i in bad_score else float(i % 10) for i in range(n)]
        expected = {f"user:{i + 1}" for i in bad_email | bad_score}
        batches.append((mapped(emails, scores), expected))
    start = threading.Barrier(8)
    threads_used: set[int] = set()

    def run(chunk: list[tuple[pd.DataFrame, set[str]]]) -> list[bool]:
        threads_used.add(threading.get_ident())
        start.wait()  # every thread validates at the same time
        outcomes = []
        for frame, expected in chunk:
            result = validate_mapped(mapping(), frame)
            rejected = {r.record_key for r in result.rejected}
            outcomes.append(
                rejected == expected
                and set(result.valid["_record_key"]) == set(frame["_record_key"]) - expected
                and len(result.valid) + len(result.rejected) == len(frame)
            )
        return outcomes

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = [ok for chunk in pool.map(run, [batches[i::8] for i in range(8)]) for ok in chunk]

    assert len(threads_used) == 8
    assert all(outcomes), f"{outcomes.count(False)} of {len(outcomes)} batches got a wrong invalid-row set"


def test_every_destination_of_a_batch_is_checked_in_one_run_and_failures_in_one_more() -> None:
    """All routes' frames go through one GX run; only when something failed, a second finds the rows."""
    from tasks.validate import _validator, validate_parts

    connectors = ("hubspot", "mailchimp", "ga4", "zapier")
    good = mapped([f"p{i}@example.com" for i in range(20)], [float(i % 10) for i in range(20)])
    parts = [
        (mapping(c), mapped([f"p{i}@example.com" for i in range(20)], [1.0] * 20, connector=c))
        for c in connectors[1:]
    ]
    before = _validator.runs
    results = validate_parts([(mapping(), good), *parts])
    assert _validator.runs - before == 1
    assert [len(r.valid) for r in results] == [len(good), *(len(frame) for _, frame in parts)]
    assert all(r.rejected == [] for r in results)

    bad = good.copy()
    bad.loc[bad.index[3], "email"] = "not-an-email"
    mailchimp = mapped(["a@example.com", "broken"], [1.0, 2.0], connector="mailchimp")
    before = _validator.runs
    hubspot_result, mailchimp_result = validate_parts([(mapping(), bad), (mapping("mailchimp"), mailchimp)])
    assert _validator.runs - before == 2
    assert [r.record_key for r in hubspot_result.rejected] == ["user:4"]
    assert [(r.record_key, r.failed) for r in mailchimp_result.rejected] == [
        ("assessment:101", ("email_address: expect_column_values_to_match_regex",))
    ]


def test_an_expectation_on_a_field_without_values_in_the_batch_is_not_handed_to_gx() -> None:
    """GX skips nulls, so an optional field nobody filled passes its expectations: they cost a GX run's
    per-expectation share for nothing; "not null" still runs, and still rejects."""
    from tasks.validate import _validator, validate_parts

    def checked(frame: pd.DataFrame) -> tuple[int, ValidationResult]:
        before = _validator.checked
        [result] = validate_parts([(mapping(), frame)])
        return _validator.checked - before, result

    with_phones = mapped(["a@example.com", "b@example.com"], [1.0, 2.0], phones=["+15550100", None])
    without = mapped(["a@example.com", "b@example.com"], [1.0, 2.0])
    assert without["phone"].isna().all() and with_phones["phone"].notna().any()
    all_of_them, _ = checked(with_phones)
    fewer, result = checked(without)
    assert 0 < fewer < all_of_them
    assert result.rejected == [] and len(result.valid) == 2
    no_email = mapped([None, "b@example.com"], [1.0, 2.0])
    _, refused = checked(no_email)  # a required field without a value is still refused
    assert [(r.record_key, r.failed) for r in refused.rejected] == [
        ("user:1", ("email: expect_column_values_to_not_be_null",))
    ]


def test_no_batch_of_health_data_is_hashed_by_gx(monkeypatch: pytest.MonkeyPatch) -> None:
    """GX would fingerprint each frame it validates (every cell hashed, only to mark its results)."""
    from great_expectations.execution_engine import pandas_execution_engine

    from tasks.validate import _validator, validate_parts

    hashed: list[int] = []
    real = pandas_execution_engine.hash_pandas_dataframe
    monkeypatch.setattr(
        pandas_execution_engine, "hash_pandas_dataframe", lambda df: hashed.append(len(df)) or real(df)
    )
    frame = mapped(["a@example.com", "broken", "c@example.com"], [1.0, 2.0, 3.0])
    before = _validator.runs
    [result] = validate_parts([(mapping(), frame)])
    assert _validator.runs - before == 2 and hashed == []  # both GX runs, neither hashing the rows
    assert [r.record_key for r in result.rejected] == ["user:2"] and len(result.valid) == 2


def test_an_expectation_that_cannot_run_in_one_destination_leaves_the_others_checked() -> None:
    from tasks.validate import validate_parts

    broken = mapped(["a@example.com", "b@example.com"], [1.0, 2.0])
    broken.loc[broken.index[0], "ennu_overall_score"] = "high"
    fine = mapped(["c@example.com", "d@example.com"], [3.0, 42.0])
    broken_result, fine_result = validate_parts([(mapping(), broken), (mapping(), fine)])
    assert broken_result.valid.empty
    assert [r.record_key for r in fine_result.rejected] == ["user:2"]  # 42 is out of range, nothing else
    assert list(fine_result.valid["_record_key"]) == ["user:1"]
