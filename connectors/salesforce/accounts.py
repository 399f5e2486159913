"""The Account each Contact of a batch belongs to (SALESFORCE_ACCOUNT_MODEL): its clinic's, or its own.

A Contact mapping that names `Account.ENNU_Account_Id__c` links its Contacts: its `Account.<field>` fields
describe the clinic's Account (upserted by that external id before the Contacts, in the same Composite
request), and the Contact carries only the relationship reference `"Account": {"ENNU_Account_Id__c": …}`.
A person without a clinic (or every person, under `person`) gets an Account of their own, named like the
households of Salesforce's Nonprofit Success Pack ("<LastName> Household"): a business Account, not a
Person Account (those need the org feature switched on and have no separate Contact to link).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from connectors.base import Record
from connectors.salesforce.settings import AccountModel

ACCOUNT_PREFIX = "Account."
# The text external-id field (unique) of Account: "clinic-<host clinic id>" or "person-<host user id>".
ACCOUNT_ID_FIELD = "ENNU_Account_Id__c"
ACCOUNT_KEY = f"{ACCOUNT_PREFIX}{ACCOUNT_ID_FIELD}"
PERSON_ACCOUNT = "person-{}"


def person_account_id(user_id: object) -> str:
    """The external id of a person's own Account (what erasure deletes)."""
    return PERSON_ACCOUNT.format(user_id)


def links_account(records: Sequence[Record]) -> bool:
    """Whether the batch's mapping links its Contacts to an Account."""
    return any(ACCOUNT_KEY in r.fields for r in records)


def _account_of(fields: Mapping[str, Any], model: AccountModel, user_key: str) -> dict[str, Any] | None:
    if model == "none":
        return None
    if model == "clinic" and fields.get(ACCOUNT_KEY) is not None:
        own = {k.removeprefix(ACCOUNT_PREFIX): v for k, v in fields.items() if k.startswith(ACCOUNT_PREFIX)}
        return {**own, ACCOUNT_ID_FIELD: str(own[ACCOUNT_ID_FIELD])}
    if fields.get(user_key) is None:
        return None
    last_name = str(fields.get("LastName") or "").strip()
    return {
        ACCOUNT_ID_FIELD: person_account_id(fields[user_key]),
        "Name": f"{last_name} Household" if last_name else "ENNU Household",
    }


def split_accounts(
    records: Sequence[Record], model: AccountModel, user_key: str
) -> tuple[list[dict[str, Any]], list[Record]]:
    """(the batch's distinct Accounts, the Contact records with only the reference to theirs)."""
    accounts: dict[str, dict[str, Any]] = {}
    contacts: list[Record] = []
    for record in records:
        account = _account_of(record.fields, model, user_key)
        fields = {k: v for k, v in record.fields.items() if not k.startswith(ACCOUNT_PREFIX)}
        if account is not None:
            accounts.setdefault(account[ACCOUNT_ID_FIELD].lower(), account)
            fields[ACCOUNT_KEY] = account[ACCOUNT_ID_FIELD]
        contacts.append(replace(record, fields=fields))
    return list(accounts.values()), contacts
