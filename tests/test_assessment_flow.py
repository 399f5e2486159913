"""`assessment-completed` end to end: outbox → flow (Prefect harness) → sandbox over HTTP → sync log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from ennu.db import session_scope
from ennu.models import OutboxEvent, SyncLog
from flows.assessment_completed import assessment_completed
from tests.factories import person_with_assessment, refuse

pytestmark = pytest.mark.usefixtures("prefect_server")

# Only what the mapping names may arrive (its fields: the contact's, the last assessment, the scores).
REPO_ROOT = Path(__file__).resolve().parent.parent
HUBSPOT_FIELDS = set(
    yaml.safe_load((REPO_ROOT / "mappings" / "assessment.completed" / "hubspot.yaml").read_text())["fields"]
)


def sync_rows(**where: Any) -> list[SyncLog]:
    with session_scope() as session:
        query = select(SyncLog).order_by(SyncLog.id)
        for column, value in where.items():
            query = query.where(getattr(SyncLog, column) == value)
        return list(session.execute(query).scalars())


def outbox_status(event_id: str) -> str:
    with session_scope() as session:
        event = session.get(OutboxEvent, event_id)
        assert event is not None
        return event.status


def test_events_reach_hubspot_and_mailchimp_with_mapped_fields_only(database: str, sandbox: Any) -> None:
    people = [person_with_assessment() for _ in range(3)]
    event_ids = [event_id for _, _, event_id in people]

    summary = assessment_completed(event_ids=event_ids)

    contacts = sandbox.objects("hubspot", "contacts")
    assert len(contacts) == 3
    for contact in contacts:
        assert set(contact["properties"]) <= HUBSPOT_FIELDS | {
            "hs_object_id",
            "createdate",
            "lastmodifieddate",
        }
        assert contact["properties"]["ennu_overall_score"] in (7.4, "7.4")
    members = sandbox.objects("mailchimp", "members")
    assert len(members) == 3
    assert {m["merge_fields"]["FNAME"] for m in members} == {"Ada"}
    crm_and_marketing = [r for r in sync_rows() if r.connector in ("hubspot", "mailchimp")]
    assert {(r.connector, r.status) for r in crm_and_marketing} == {
        ("hubspot", "created"),
        ("mailchimp", "created"),
    }
    assert len(crm_and_marketing) == 6
    assert all(r.flow_run_id for r in sync_rows())
    assert all(outbox_status(e) == "done" for e in event_ids)
    by_destination = {row["destination"]: row for row in summary}
    assert by_destination["hubspot/contacts"]["created"] == 3
    assert by_destination["mailchimp/assessment_followups"]["created"] == 3


def test_same_events_twice_create_one_contact_and_one_member(database: str, sandbox: Any) -> None:
    _, _, event_id = person_with_assessment()

    assessment_completed(event_ids=[event_id])
    requests_after_first = len(sandbox.requests("hubspot")) + len(sandbox.requests("mailchimp"))
    assessment_completed(event_ids=[event_id])

    assert len(sandbox.objects("hubspot", "contacts")) == 1
    assert len(sandbox.objects("mailchimp", "members")) == 1
    # The second run finds both deliveries settled: no request, no second outcome.
    assert [r.status for r in sync_rows(connector="hubspot")] == ["created"]
    assert [r.status for r in sync_rows(connector="mailchimp")] == ["created"]
    assert len(sandbox.requests("hubspot")) + len(sandbox.requests("mailchimp")) == requests_after_first


def test_forced_rerun_updates_and_never_creates_twice(sqlite_database: str, sandbox: Any) -> None:
    _, _, event_id = person_with_assessment()
    assessment_completed(event_ids=[event_id])
    assessment_completed(event_ids=[event_id], force=True)
    assert [r.status for r in sync_rows(connector="hubspot")] == ["created", "updated"]
    assert [r.status for r in sync_rows(connector="mailchimp")] == ["created", "updated"]
    assert len(sandbox.objects("hubspot", "contacts")) == 1


def test_invalid_email_and_out_of_range_score_are_rejected_and_the_rest_delivered(
    database: str, sandbox: Any
) -> None:
    _, _, bad_email = person_with_assessment(email="not-an-email")
    _, _, bad_score = person_with_assessment(overall=11.5)
    good = [person_with_assessment()[2] for _ in range(2)]

    assessment_completed(event_ids=[bad_email, bad_score, *good])

    hubspot = {r.event_id: r for r in sync_rows(connector="hubspot")}
    assert hubspot[bad_email].status == "rejected"
    assert "email" in (hubspot[bad_email].error or "")
    assert "expect_column_values_to_match_regex" in (hubspot[bad_email].error or "")
    assert hubspot[bad_score].status == "rejected"
    assert "ennu_overall_score" in (hubspot[bad_score].error or "")
    assert "expect_column_values_to_be_between" in (hubspot[bad_score].error or "")
    assert all(hubspot[e].status == "created" for e in good)
    assert len(sandbox.objects("hubspot", "contacts")) == 2
    assert "not-an-email" not in str([r.error for r in sync_rows()])
    assert all(outbox_status(e) == "done" for e in [bad_email, bad_score, *good])


def test_person_without_marketing_consent_is_not_sent_to_mailchimp(database: str, sandbox: Any) -> None:
    no_marketing = person_with_assessment(marketing=False)
    refused_explicitly = person_with_assessment()
    refuse(refused_explicitly[0], "mailchimp")
    consenting = person_with_assessment()

    assessment_completed(event_ids=[no_marketing[2], refused_explicitly[2], consenting[2]])

    assert len(sandbox.objects("mailchimp", "members")) == 1
    mailchimp = {r.event_id: r.status for r in sync_rows(connector="mailchimp")}
    assert mailchimp == {
        no_marketing[2]: "skipped",
        refused_explicitly[2]: "skipped",
        consenting[2]: "created",
    }
    # The CRM needs no marketing consent.
    assert len(sandbox.objects("hubspot", "contacts")) == 3
