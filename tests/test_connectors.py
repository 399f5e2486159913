"""HubSpot and Mailchimp connectors against their sandbox stand-ins: outcomes, connection test, erasure."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import Person, Record
from connectors.hubspot import HubSpotConnector
from connectors.mailchimp.connector import MailchimpConnector, nest, subscriber_hash, vendor_base_url
from ennu.models import SyncStatus
from ennu.settings import get_settings


def contact(n: int, email: str | None = None) -> Record:
    email = email or f"person{n}@example.com"
    return Record(f"user:{n}", f"evt-{n}", n, {"email": email, "firstname": "Ada", "ennu_overall_score": 7.5})


def member(n: int, email: str | None = None) -> Record:
    email = email or f"person{n}@example.com"
    return Record(
        f"user:{n}",
        f"evt-{n}",
        n,
        {
            "email_address": email,
            "status_if_new": "subscribed",
            "merge_fields.FNAME": "Ada",
            "tags": "assessment:sleep",
        },
    )


@pytest.fixture()
def hubspot(sandbox: Any) -> HubSpotConnector:
    return HubSpotConnector.from_settings(get_settings(), rate_limited=False)


@pytest.fixture()
def mailchimp(sandbox: Any) -> MailchimpConnector:
    return MailchimpConnector.from_settings(get_settings(), rate_limited=False)


def test_hubspot_batch_gives_one_outcome_per_record(hubspot: HubSpotConnector, sandbox: Any) -> None:
    first = hubspot.push("contacts", "email", [contact(1), contact(2), contact(3, "broken")])
    assert [o.status for o in first] == [SyncStatus.CREATED, SyncStatus.CREATED, SyncStatus.FAILED]
    assert first[0].remote_id and first[0].remote_id != first[1].remote_id
    assert first[2].error == "VALIDATION_ERROR"
    again = hubspot.push("contacts", "email", [contact(1)])
    assert again[0].status == SyncStatus.UPDATED and again[0].remote_id == first[0].remote_id
    stored = sandbox.objects("hubspot", "contacts")
    assert {c["properties"]["email"] for c in stored} == {"person1@example.com", "person2@example.com"}


def test_mailchimp_batch_subscribes_with_merge_fields(mailchimp: MailchimpConnector, sandbox: Any) -> None:
    outcomes = mailchimp.push("members", "email_address", [member(1), member(2, "not-an-email")])
    assert [o.status for o in outcomes] == [SyncStatus.CREATED, SyncStatus.FAILED]
    assert outcomes[0].remote_id == subscriber_hash("person1@example.com")
    stored = sandbox.objects("mailchimp", "members")
    assert len(stored) == 1
    assert stored[0]["merge_fields"] == {"FNAME": "Ada"}
    assert stored[0]["status"] == "subscribed"
    assert mailchimp.push("members", "email_address", [member(1)])[0].status == SyncStatus.UPDATED


def test_connection_tests_use_an_authenticated_read(
    hubspot: HubSpotConnector, mailchimp: MailchimpConnector, sandbox: Any
) -> None:
    assert hubspot.test_connection().ok
    assert mailchimp.test_connection().ok
    assert [r["path"] for r in sandbox.requests("hubspot")] == ["/hubspot/account-info/v3/details"]


def test_erase_removes_the_person_and_is_repeatable(
    hubspot: HubSpotConnector, mailchimp: MailchimpConnector, sandbox: Any
) -> None:
    hubspot.push("contacts", "email", [contact(1)])
    mailchimp.push("members", "email_address", [member(1)])
    person = Person(user_id=1, email="Person1@example.com")
    assert hubspot.erase(person).status == SyncStatus.ERASED
    assert mailchimp.erase(person).status == SyncStatus.ERASED
    assert sandbox.objects("hubspot", "contacts") == []
    assert sandbox.objects("mailchimp", "members") == []
    assert mailchimp.erase(person).status == SyncStatus.UNCHANGED


def test_mailchimp_wire_helpers() -> None:
    assert subscriber_hash(" Jane.Doe@Example.com ") == "0cba00ca3da1b283a57287bcceb17e35"
    assert vendor_base_url("0123456789abcdef-us21") == "https://us21.api.mailchimp.com/3.0"
    assert nest({"merge_fields.FNAME": "A", "merge_fields.LNAME": None, "tags": "t"}) == {
        "merge_fields": {"FNAME": "A"},
        "tags": "t",
    }
