"""The person of each goal Opportunity, as an OpportunityContactRole (primary) that is created only once.

`Opportunity.ContactId` is accepted on create only, and an upsert may be an update, so the Opportunity is
upserted without it; the roles the Opportunities already have are read in the same Composite request, and
only the missing ones are created (one sObject Collections create). A re-sent batch (the engine retries an
ambiguous send: Salesforce is "idempotent" here) finds its roles and creates none twice. A role that cannot
be created (most often: the person's Contact is not there yet) leaves its Opportunity upserted, with the
reason in the outcome, like an unassociated HubSpot deal; the goal's next event (completed) looks again.

An Opportunity mapping names `ContactRole.Contact.ENNU_User_Id__c` (the person's Contact by its external id)
and `ContactRole.Role` (a value of the org's Contact Role picklist); neither is an Opportunity field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from connectors.base import Record

ROLE_PREFIX = "ContactRole."
CONTACT_KEY = f"{ROLE_PREFIX}Contact.ENNU_User_Id__c"
ROLE_KEY = f"{ROLE_PREFIX}Role"


@dataclass(frozen=True)
class WantedRole:
    """The person (Contact external id) a record's Opportunity should have as a contact role."""

    contact_key: str
    role: str | None


def wants_roles(records: Sequence[Record]) -> bool:
    return any(CONTACT_KEY in r.fields for r in records)


def split_roles(records: Sequence[Record]) -> tuple[list[Record], list[WantedRole | None]]:
    """(the Opportunity records without the role fields, the role each wants, in order)."""
    opportunities: list[Record] = []
    wanted: list[WantedRole | None] = []
    for record in records:
        fields = {k: v for k, v in record.fields.items() if not k.startswith(ROLE_PREFIX)}
        contact = record.fields.get(CONTACT_KEY)
        role = record.fields.get(ROLE_KEY)
        wanted.append(
            None if contact is None else WantedRole(str(contact), None if role is None else str(role))
        )
        opportunities.append(replace(record, fields=fields))
    return opportunities, wanted


def soql_text(value: object) -> str:
    """A SOQL string literal: backslashes and quotes escaped."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def roles_query(goal_field: str, contact_field: str, goal_ids: Sequence[str]) -> str:
    """The contact roles of these Opportunities (by their external id), with each role's Contact's id."""
    listed = ", ".join(soql_text(g) for g in goal_ids)
    return (
        f"SELECT OpportunityId, Contact.{contact_field} FROM OpportunityContactRole "  # noqa: S608 - API names and escaped literals
        f"WHERE Opportunity.{goal_field} IN ({listed})"
    )


def existing_roles(rows: Sequence[Mapping[str, Any]], contact_field: str) -> set[tuple[str, str]]:
    """(OpportunityId, Contact external id) of each role read."""
    pairs = set()
    for row in rows:
        contact = row.get("Contact") or {}
        if row.get("OpportunityId") and contact.get(contact_field) is not None:
            pairs.add((str(row["OpportunityId"]), str(contact[contact_field])))
    return pairs


def role_record(opportunity_id: str, contact_field: str, wanted: WantedRole) -> dict[str, Any]:
    """The OpportunityContactRole to create: the Contact by its external id, primary."""
    body: dict[str, Any] = {
        "attributes": {"type": "OpportunityContactRole"},
        "OpportunityId": opportunity_id,
        "Contact": {contact_field: wanted.contact_key},
        "IsPrimary": True,
    }
    if wanted.role is not None:
        body["Role"] = wanted.role
    return body
