"""Mapping files: the schema, the lint (file, line, reason) and the vectorised apply."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from mappings import apply_mapping, lint_mappings, load_all_mappings
from mappings.lint import main as lint_main

REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"

GOOD = """\
connector: hubspot
object: contacts
record: user
upsert_key: email
fields:
  email:
    source: user.email
    transforms: [trim, lower]
    constraints: {required: true, email: true}
  score:
    source: assessment.overall_score
    transforms: [{round: {digits: 1}}]
"""


def write(tmp_path: Path, text: str, name: str = "hubspot.yaml", event: str = "assessment.completed") -> Path:
    folder = tmp_path / event
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_every_mapping_in_the_repo_passes_the_lint() -> None:
    assert lint_mappings(REPO_MAPPINGS) == []
    assert lint_main([str(REPO_MAPPINGS)]) == 0


@pytest.mark.parametrize(
    ("broken", "line", "reason"),
    [
        (GOOD.replace("[trim, lower]", "[trim, shout]"), 8, "unknown transform 'shout'"),
        (GOOD.replace("    source: assessment.overall_score\n", ""), 11, "exactly one of source or value"),
        (
            GOOD.replace("constraints: {required: true, email: true}", "constraints: {email: true}"),
            4,
            "must be declared required",
        ),
        (GOOD.replace("connector: hubspot", "connector: mailchimp"), 1, "does not match the file name"),
        (GOOD.replace("source: user.email", "source: wallet.email"), 7, "is not <kind>.<column>"),
        (GOOD.replace("fields:", "fields: [oops"), 6, "YAML syntax"),
        (
            GOOD.replace("object: contacts", "object: contacts\ncolour: blue"),
            3,
            "Extra inputs are not permitted",
        ),
        (GOOD.replace("{round: {digits: 1}}", "{round: {digits: one}}"), 12, "digits"),
    ],
)
def test_a_broken_mapping_is_reported_with_file_line_and_reason(
    tmp_path: Path, broken: str, line: int, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, broken)
    errors = lint_mappings(tmp_path)
    assert errors, "the mistake must be reported"
    assert errors[0].path == path
    assert reason in errors[0].reason
    assert errors[0].line == line
    assert lint_main([str(tmp_path)]) == 1
    assert f"{path}:{line}:" in capsys.readouterr().out


def test_unknown_event_directory_is_reported(tmp_path: Path) -> None:
    write(tmp_path, GOOD, event="assessment.deleted")
    assert "not a known event type" in lint_mappings(tmp_path)[0].reason


def source_frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event.id": [f"e{i}" for i in range(n)],
            "user.id": list(range(1, n + 1)),
            "user.email": [" Ann@Example.COM ", None, ""][:n] + ["x@example.com"] * max(0, n - 3),
            "user.first_name": ["Ann", "Bo", "  "][:n] + ["Cy"] * max(0, n - 3),
            "user.last_name": ["Lee", None, "Kim"][:n] + ["Ng"] * max(0, n - 3),
            "user.phone": ["(555) 010-1234", "555.010.9999", "12"][:n] + [None] * max(0, n - 3),
            "user.date_of_birth": [date(1980, 1, 2), None, date(2001, 12, 31)][:n] + [None] * max(0, n - 3),
            "user.ssn_never_mapped": ["000-00-0000"] * n,
            "assessment.id": list(range(10, 10 + n)),
            "assessment.type": ["sleep", "hormone", "skin"][:n] + ["sleep"] * max(0, n - 3),
            "assessment.completed_at": [datetime(2024, 1, 2, 15, tzinfo=UTC)] * n,
            "assessment.overall_score": [7.44, None, 9.96][:n] + [5.0] * max(0, n - 3),
        }
    )


def test_apply_keeps_only_mapped_fields_and_nulls_are_none() -> None:
    mapping = load_all_mappings(REPO_MAPPINGS)[("assessment.completed", "hubspot")]
    mapped = apply_mapping(mapping, source_frame())

    assert list(mapped.columns) == ["_record_key", "_event_id", "_user_id", *mapping.fields]
    first, second, third = mapped.to_dict("records")
    assert first["email"] == "ann@example.com"
    assert first["phone"] == "+15550101234"
    assert first["date_of_birth"] == "1980-01-02"
    assert first["ennu_last_assessment_date"] == 1704153600000
    assert first["ennu_overall_score"] == 7.4
    assert first["ennu_last_assessment_type"] == "Sleep"
    assert first["_record_key"] == "user:1"
    assert second["email"] is None and second["lastname"] is None and second["ennu_overall_score"] is None
    assert third["email"] is None and third["firstname"] is None  # empty after trim
    assert "000-00-0000" not in mapped.to_string()


def test_apply_names_missing_source_columns_without_values() -> None:
    mapping = load_all_mappings(REPO_MAPPINGS)[("assessment.completed", "hubspot")]
    with pytest.raises(KeyError, match=r"assessment\.overall_score"):
        apply_mapping(mapping, source_frame().drop(columns=["assessment.overall_score"]))


def test_apply_is_vectorised_over_a_large_frame() -> None:
    mapping = load_all_mappings(REPO_MAPPINGS)[("assessment.completed", "mailchimp")]
    big = pd.concat([source_frame()] * 20_000, ignore_index=True)
    big["user.id"] = range(1, len(big) + 1)
    mapped = apply_mapping(mapping, big)
    assert len(mapped) == 60_000
    assert mapped["email_address"].iloc[0] == "ann@example.com"
    assert mapped["tags"].iloc[1] == "assessment:hormone"
