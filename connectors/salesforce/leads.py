"""People who came in as Salesforce Leads: their later records go to the Lead until staff convert it, then
to the Contact it was converted to.

Registration creates a Lead where the routing says so (mappings/user.registered/salesforce_lead.yaml). The
person's later Contact records (scores, subscription, payments) say whether the hub last reached them as a
Lead: the mapping's `Lead.Unconverted` field (no Contact field; `user.salesforce_lead`, from the sync log).
Those records are upserted to the Lead by its external id, with the fields a Lead has, in the same
Composite request as the batch's Contacts: a Lead costs no request of its own.

Staff convert a Lead in Salesforce (convertLead is SOAP or Apex, never REST). A converted Lead refuses any
update (`CANNOT_UPDATE_CONVERTED_LEAD`); only then are the refused people looked up (one SOQL query:
IsConverted, ConvertedContactId) and their records written to that Contact by its Id, the external id
set on it, so the person is a Contact by external id from then on (Salesforce copies ENNU_User_Id__c on
conversion only where the org maps the Lead field to the Contact field: README, Salesforce).

A Lead cannot be an OpportunityContactRole: a goal's Opportunity of a person who is still a Lead is
skipped with that reason (`NOT_CONVERTED`), and the goal's next event after the conversion creates it,
with its contact role.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from connectors.base import Record
from connectors.salesforce.contact_roles import soql_text

# No Contact or Opportunity field: true while the hub last reached the person as a Lead.
LEAD_FLAG = "Lead.Unconverted"
CONVERTED_LEAD = "CANNOT_UPDATE_CONVERTED_LEAD"
NOT_CONVERTED = "person is a Salesforce Lead (not converted): no Opportunity until the Lead is converted"
# The standard fields a Lead has among those Contact mappings send; custom fields (`__c`) go as they are
# (the org creates them on Lead too and maps them to the Contact's for conversion).
LEAD_STANDARD_FIELDS = frozenset(
    {
        "FirstName",
        "LastName",
        "Company",
        "Email",
        "Phone",
        "MobilePhone",
        "LeadSource",
        "Status",
        "Title",
        "Description",
        "HasOptedOutOfEmail",
        "DoNotCall",
        "OwnerId",
    }
)


@dataclass(frozen=True)
class LeadState:
    """What Salesforce says of a person's Lead."""

    converted: bool
    contact_id: str | None


def is_lead(record: Record) -> bool:
    return bool(record.fields.get(LEAD_FLAG))


def without_flag(record: Record) -> Record:
    return replace(record, fields={k: v for k, v in record.fields.items() if k != LEAD_FLAG})


def split_leads(records: Sequence[Record]) -> tuple[list[int], list[int]]:
    """(positions of the people reached as Contacts, positions of those reached as Leads)."""
    leads = [i for i, r in enumerate(records) if is_lead(r)]
    chosen = set(leads)
    return [i for i in range(len(records)) if i not in chosen], leads


def lead_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A Contact record's fields as its Lead takes them: the Lead's standard fields and custom fields."""
    return {
        k: v
        for k, v in fields.items()
        if k != LEAD_FLAG and "." not in k and (k in LEAD_STANDARD_FIELDS or k.endswith("__c"))
    }


def contact_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A record's fields for a converted Contact written by Id: no Account (staff chose it on conversion)."""
    return {k: v for k, v in fields.items() if "." not in k}


def leads_query(external_id_field: str, user_ids: Sequence[str]) -> str:
    """The Leads of these people (by the external id), with whether and into which Contact each converted."""
    listed = ", ".join(soql_text(u) for u in user_ids)
    return (
        f"SELECT {external_id_field}, IsConverted, ConvertedContactId FROM Lead "  # noqa: S608 - an API name and escaped literals
        f"WHERE {external_id_field} IN ({listed})"
    )


def lead_states(rows: Sequence[Mapping[str, Any]], external_id_field: str) -> dict[str, LeadState]:
    """External id -> its Lead's state, from the query's rows."""
    return {
        str(row[external_id_field]): LeadState(
            bool(row.get("IsConverted")),
            None if row.get("ConvertedContactId") is None else str(row["ConvertedContactId"]),
        )
        for row in rows
        if row.get(external_id_field) is not None
    }


def contact_update(contact_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A converted Contact's sObject Collections update record: its Id and `body`'s fields (the record as
    `_sobject` built it, the external id among them)."""
    return {
        "attributes": {"type": "Contact"},
        "Id": contact_id,
        **{k: v for k, v in body.items() if k != "attributes"},
    }
