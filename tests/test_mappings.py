"""Mapping files: the schema, the lint (file, line, reason) and the vectorised apply."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from deployments.lint import main as lint_main
from mappings import Mapping, MappingError, apply_mapping, lint_mappings, load_all_mappings, load_mapping
from mappings.frame import MissingSourceColumns
from mappings.routing import load_routing

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
  full_name:
    source: [user.first_name, user.last_name]
    transforms:
      - concat: {separator: " "}
      - trim
  status_if_new: {value: subscribed}
"""


def write(tmp_path: Path, text: str, name: str = "hubspot.yaml", event: str = "assessment.completed") -> Path:
    folder = tmp_path / event
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_every_mapping_in_the_repo_passes_the_lint(capsys: pytest.CaptureFixture[str]) -> None:
    assert lint_mappings(REPO_MAPPINGS) == []
    assert lint_main([str(REPO_MAPPINGS)]) == 0
    assert capsys.readouterr().out.strip().endswith("mapping files OK")


def test_the_good_example_loads(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, GOOD))
    assert mapping.event_type == "assessment.completed"
    assert list(mapping.fields) == ["email", "score", "full_name", "status_if_new"]
    assert mapping.source_columns == {
        "user.email",
        "assessment.overall_score",
        "user.first_name",
        "user.last_name",
    }


@pytest.mark.parametrize(
    ("broken", "line", "reason"),
    [
        pytest.param(
            GOOD.replace("[trim, lower]", "[trim, shout]"), 8, "unknown transform 'shout'", id="transform"
        ),
        pytest.param(
            GOOD.replace("      - trim\n", "      - shout\n"), 17, "unknown transform", id="block-item"
        ),
        pytest.param(
            GOOD.replace("    source: assessment.overall_score\n", ""),
            10,
            "exactly one of source or value",
            id="no-source",
        ),
        pytest.param(
            GOOD.replace("constraints: {required: true, email: true}", "constraints: {email: true}"),
            4,
            "upsert_key 'email' must be declared required",
            id="upsert-not-required",
        ),
        pytest.param(
            GOOD.replace("upsert_key: email", "upsert_key: mail"), 4, "not one of the fields", id="upsert"
        ),
        pytest.param(
            GOOD.replace("connector: hubspot", "connector: mailchimp"),
            1,
            "does not match the file name",
            id="stem",
        ),
        pytest.param(
            GOOD.replace("source: user.email", "source: wallet.email"),
            7,
            "kind 'wallet' is not one of event, user, clinic, assessment",
            id="source-kind",
        ),
        pytest.param(
            GOOD.replace("source: user.email", "source: user.email.x"),
            7,
            "is not user.<column>",
            id="source-depth",
        ),
        pytest.param(GOOD.replace("fields:", "fields: [oops"), 6, "YAML syntax", id="yaml"),
        pytest.param(
            GOOD.replace("object: contacts", "object: contacts\ncolour: blue"),
            3,
            "colour: Extra inputs are not permitted",
            id="extra-key",
        ),
        pytest.param(
            GOOD.replace("{required: true, email: true}", "{required: true, email: true, shouty: true}"),
            9,
            "Extra inputs are not permitted",
            id="extra-constraint",
        ),
        pytest.param(
            GOOD.replace("{digits: 1}", "{digits: one}"), 12, "digits: Input should be", id="params"
        ),
        pytest.param(GOOD.replace("{digits: 1}", "{places: 1}"), 12, "places: Extra inputs", id="params-key"),
        pytest.param(
            GOOD.replace('      - concat: {separator: " "}\n', ""),
            13,
            "several sources need concat",
            id="several-sources",
        ),
        pytest.param(
            GOOD.replace("{value: subscribed}", "{value: subscribed, transforms: [lower]}"),
            18,
            "a literal value takes no transforms",
            id="literal-transforms",
        ),
        pytest.param(
            GOOD.replace("    transforms: [{round: {digits: 1}}]\n", "    constraints: {range: [10, 0]}\n"),
            12,
            "min is greater than max",
            id="range",
        ),
        pytest.param(
            GOOD.replace("    transforms: [{round: {digits: 1}}]\n", "    constraints: {enum: []}\n"),
            12,
            "enum needs at least one value",
            id="enum",
        ),
        pytest.param(
            GOOD.replace("record: user", "record: wallet"), 3, "record: Input should be", id="record"
        ),
        pytest.param(GOOD.replace("object: contacts\n", ""), 1, "object: Field required", id="missing-key"),
        pytest.param(GOOD + "  score:\n    value: 1\n", 19, "duplicate key 'score'", id="duplicate"),
        pytest.param(GOOD.replace("  score:", "  _score:"), 10, "field name '_score'", id="field-name"),
    ],
)
def test_a_broken_mapping_is_reported_with_file_line_and_reason(
    tmp_path: Path, broken: str, line: int, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, broken)

    errors = lint_mappings(tmp_path)

    assert errors, "the mistake must be reported"
    assert any(e.path == path and e.line == line and reason in e.reason for e in errors), errors
    assert all("\n" not in e.reason for e in errors)
    assert lint_main([str(tmp_path)]) == 1
    assert f"{path}:{line}: " in capsys.readouterr().out
    with pytest.raises(MappingError, match=re.escape(f"{path}:{line}: ")):
        load_mapping(path)


def test_unknown_event_directory_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, event="assessment.deleted")
    [error] = lint_mappings(tmp_path)
    assert (error.path, error.line) == (path, 1)
    assert "'assessment.deleted' is not a known event type" in error.reason


def test_files_at_the_root_are_not_mapping_files(tmp_path: Path) -> None:
    (tmp_path / "routing.yaml").write_text("routes: {}\n")
    write(tmp_path, GOOD)
    assert lint_mappings(tmp_path) == []


def test_a_variant_file_of_a_connector_loads_under_its_own_name(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    write(tmp_path, GOOD.replace("object: contacts", "object: leads"), name="hubspot_leads.yaml")
    write(tmp_path, GOOD, name="hubspotter.yaml")  # not `hubspot_<variant>`: another connector's name

    [misnamed] = lint_mappings(tmp_path)
    (tmp_path / "assessment.completed" / "hubspotter.yaml").unlink()
    mappings = load_all_mappings(tmp_path)

    assert misnamed.path.name == "hubspotter.yaml" and "does not match the file name" in misnamed.reason
    assert mappings[("assessment.completed", "hubspot")].object == "contacts"
    assert mappings[("assessment.completed", "hubspot_leads")].object == "leads"
    assert mappings[("assessment.completed", "hubspot_leads")].connector == "hubspot"


def test_load_all_mappings_reads_again_only_when_a_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    first = load_all_mappings(tmp_path)
    assert (
        load_all_mappings(tmp_path)[("assessment.completed", "hubspot")]
        is first[("assessment.completed", "hubspot")]
    )

    path.write_text(GOOD.replace("object: contacts", "object: people"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    assert load_all_mappings(tmp_path)[("assessment.completed", "hubspot")].object == "people"


def source_frame(n: int = 3) -> pd.DataFrame:
    extra = max(0, n - 3)
    return pd.DataFrame(
        {
            "event.id": [f"e{i}" for i in range(n)],
            "event.type": ["assessment.completed"] * n,
            "user.id": list(range(1, n + 1)),
            "user.email": [" Ann@Example.COM ", None, ""][:n] + ["x@example.com"] * extra,
            "user.first_name": ["Ann", "Bo", "  "][:n] + ["Cy"] * extra,
            "user.last_name": ["Lee", None, "Kim"][:n] + ["Ng"] * extra,
            "user.phone": ["(555) 010-1234", "555.010.9999", "12"][:n] + [None] * extra,
            "user.date_of_birth": [date(1980, 1, 2), None, date(2001, 12, 31)][:n] + [None] * extra,
            "user.ssn_never_mapped": ["000-00-0000"] * n,
            "assessment.id": list(range(10, 10 + n)),
            "assessment.type": ["sleep", "hormone", "skin"][:n] + ["sleep"] * extra,
            "assessment.completed_at": [datetime(2024, 1, 2, 15, tzinfo=UTC)] * n,
            "assessment.overall_score": [7.44, None, 9.96][:n] + [5.0] * extra,
            "assessment.scores.sleep_quality": [6.0] * n,
        },
        index=pd.Index([100 + 7 * i for i in range(n)], name="row"),
    )


def test_apply_keeps_only_mapped_fields_and_nulls_are_none() -> None:
    mapping = load_all_mappings(REPO_MAPPINGS)[("assessment.completed", "hubspot")]
    source = source_frame()

    mapped = apply_mapping(mapping, source)

    assert list(mapped.columns) == ["_record_key", "_event_id", "_user_id", *mapping.fields]
    assert mapped.index.equals(source.index)
    assert all(dtype.kind == "O" for dtype in mapped.dtypes)
    first, second, third = mapped.to_dict("records")
    scores = {name: first.pop(name) for name in list(first) if name.startswith("ennu_score_")}
    # One property per category: the frame's one category is sent, every other is left out (None).
    assert len(scores) == 26 and {k: v for k, v in scores.items() if v is not None} == {
        "ennu_score_sleep_quality": 6.0
    }
    assert first == {
        "_record_key": "user:1",
        "_event_id": "e0",
        "_user_id": 1,
        "email": "ann@example.com",
        "firstname": "Ann",
        "lastname": "Lee",
        "phone": "+15550101234",
        "date_of_birth": "1980-01-02",
        "ennu_last_assessment_type": "Sleep",
        "ennu_last_assessment_date": 1704153600000,
        "ennu_overall_score": 7.4,
    }
    assert second["email"] is None and second["lastname"] is None and second["ennu_overall_score"] is None
    assert second["date_of_birth"] is None
    assert third["email"] is None and third["firstname"] is None  # empty, and empty after trim
    assert third["phone"] == "12"  # kept, cleaned but invalid, for the phone constraint to reject
    assert "000-00-0000" not in mapped.to_string()


def test_apply_mailchimp_literal_dotted_names_and_event_properties() -> None:
    mapping = load_all_mappings(REPO_MAPPINGS)[("assessment.completed", "mailchimp")]
    mapped = apply_mapping(mapping, source_frame())
    assert mapped["status_if_new"].tolist() == ["subscribed"] * 3
    assert mapped["merge_fields.SCORE"].tolist() == [7.4, None, 10.0]
    # The tags come from the host's state at push time (connectors/mailchimp/tag_state.py), not the mapping.
    assert "tags" not in mapped.columns
    assert mapped["properties.assessment_type"].tolist() == ["sleep", "hormone", "skin"]
    assert mapped["_record_key"].tolist() == ["assessment:10", "assessment:11", "assessment:12"]
    assert mapped["merge_fields.FNAME"].tolist() == ["Ann", "Bo", None]


def test_apply_concat_and_record_kind(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, GOOD.replace("record: user", "record: assessment")))
    mapped = apply_mapping(mapping, source_frame())
    assert mapped["full_name"].tolist() == ["Ann Lee", "Bo", "Kim"]
    assert mapped["_record_key"].tolist() == ["assessment:10", "assessment:11", "assessment:12"]


def test_apply_reads_pandas_inferred_dtypes_and_float_ids() -> None:
    """pandas 3 infers `str` columns; a join with misses turns integer ids into floats."""
    mapping = load_all_mappings(REPO_MAPPINGS)[("assessment.completed", "hubspot")]
    source = source_frame().convert_dtypes(dtype_backend="numpy_nullable")
    source["user.id"] = source["user.id"].astype(float)
    source["user.email"] = pd.Series(["a@example.com", None, ""], index=source.index, dtype="str")
    mapped = apply_mapping(mapping, source)
    assert mapped["_record_key"].tolist() == ["user:1", "user:2", "user:3"]
    assert mapped["_user_id"].tolist() == [1, 2, 3]
    assert all(type(v) is int for v in mapped["_user_id"])
    assert mapped["email"].tolist() == ["a@example.com", None, None]


def test_apply_names_missing_source_columns_without_values() -> None:
    mapping = load_all_mappings(REPO_MAPPINGS)[("assessment.completed", "hubspot")]
    with pytest.raises(MissingSourceColumns) as caught:
        apply_mapping(mapping, source_frame().drop(columns=["assessment.overall_score", "user.email"]))
    message = str(caught.value)
    assert message == (
        "mapping assessment.completed/hubspot: source columns missing: assessment.overall_score, user.email"
    )
    assert isinstance(caught.value, KeyError)


def test_apply_is_vectorised_over_a_large_frame() -> None:
    mappings = load_all_mappings(REPO_MAPPINGS)
    big = pd.concat([source_frame()] * 34_000, ignore_index=True)
    big["user.id"] = range(1, len(big) + 1)
    for key in [("assessment.completed", "hubspot"), ("assessment.completed", "mailchimp")]:
        mapped = apply_mapping(mappings[key], big)
        assert len(mapped) == 102_000
    assert mapped["email_address"].iloc[3] == "ann@example.com"
    assert mapped["properties.assessment_type"].iloc[4] == "hormone"
    assert mapped["_user_id"].iloc[-1] == 102_000


def test_mapping_is_frozen_and_typed() -> None:
    mapping = load_all_mappings(REPO_MAPPINGS)[("assessment.completed", "hubspot")]
    assert isinstance(mapping, Mapping)
    with pytest.raises(ValueError, match="frozen"):
        mapping.object = "deals"  # type: ignore[misc]
    assert mapping.fields["ennu_overall_score"].constraints.expectations() == [
        ("ExpectColumnValuesToNotBeNull", {}),
        ("ExpectColumnValuesToBeBetween", {"min_value": 0.0, "max_value": 10.0}),
    ]


def test_a_route_filter_must_be_known_and_outbound_fields_never_read_crm_owned_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from devtools.routing import routing_copy

    root = routing_copy(tmp_path / "mappings")
    routing = root / "routing.yaml"
    routing.write_text(routing.read_text().replace("where: critical_biomarker", "where: everything_urgent"))
    login = root / "user.login" / "hubspot.yaml"
    login.write_text(
        login.read_text().replace("fields:\n", "fields:\n  owner:\n    source: user.hubspot_owner_id\n", 1)
    )
    assert lint_main([str(root)]) == 1
    out = capsys.readouterr().out
    assert "unknown filter where: 'everything_urgent'; known: critical_biomarker" in out
    assert "user.login/hubspot.yaml" in out and "which the CRMs own through the inbound sync" in out


def test_a_score_without_an_ennu_code_is_a_lint_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "mappings"
    shutil.copytree(REPO_MAPPINGS, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    survey = copy / "assessment.completed" / "epic_fhir.yaml"
    survey.write_text(survey.read_text().replace("assessment.scores.tone", "assessment.scores.tonus"))
    assert lint_main([str(copy)]) == 1
    assert (
        "field 'score.tone': score 'assessment.scores.tonus' has no code in ennu_codes.yaml"
        in capsys.readouterr().out
    )


def test_a_sparse_score_column_is_null_and_other_missing_columns_still_fail() -> None:
    mapping = load_all_mappings(REPO_MAPPINGS)[("assessment.completed", "epic_fhir")]
    frame = pd.DataFrame(
        {
            "event.id": ["e1"],
            "user.id": [1],
            "user.mrn": [None],
            "user.first_name": ["Ada"],
            "user.last_name": ["Doe"],
            "user.date_of_birth": [date(1980, 1, 1)],
            "user.sex": ["female"],
            "assessment.id": [9],
            "assessment.type": ["sleep"],
            "assessment.completed_at": [datetime(2026, 11, 1, tzinfo=UTC)],
            "assessment.overall_score": [7.4],
            "assessment.scores.energy": [8.0],  # the batch's only category: the others are not columns
        }
    )
    mapped = apply_mapping(mapping, frame)
    assert mapped.loc[0, "score.energy"] == 8.0 and mapped.loc[0, "score.tone"] is None
    with pytest.raises(MissingSourceColumns):
        apply_mapping(mapping, frame.drop(columns=["assessment.type"]))


def test_enabled_sandbox_is_on_only_against_a_local_sandbox() -> None:
    routing = REPO_MAPPINGS / "routing.yaml"
    local, remote = load_routing(routing, local=True), load_routing(routing, local=False)
    assert local.integrations["slack"].enabled and local.integrations["teams"].enabled
    assert not remote.integrations["slack"].enabled and not remote.integrations["teams"].enabled
    assert remote.integrations["slack"].declared == "sandbox" and remote.integrations["hubspot"].enabled
    assert [s.connector for s in local.routes_for("biomarker.updated")] == [
        "epic_fhir",
        "slack",
        "teams",
        "twilio",
        "ga4",
        "zapier",  # every_mapped_event: biomarker.updated/zapier.yaml
    ]
    assert [s.connector for s in remote.routes_for("biomarker.updated")] == [
        "epic_fhir",
        "twilio",
        "ga4",
        "zapier",
    ]
