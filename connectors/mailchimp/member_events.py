"""Mailchimp member events: `POST /lists/{id}/members/{hash}/events` `{"name", "properties"}` → 204.

An event starts the Customer Journeys (and automations) whose starting point is that event, so follow-ups
after an assessment or a completed goal are set up in Mailchimp, not here. Names are 2 to 30 characters of
letters, digits, `_` and `-`; properties are string keys and string values (about 1,000 characters in
all). What we send carries no health value: the assessment type and its score band, or the goal kind, and
the host event's opaque id. There is no idempotency key: a send whose answer was lost is sent again with
the same id (at least once), so a repeat is recognisable in Mailchimp's event list.
"""

from __future__ import annotations

from typing import Any

from connectors.mailchimp.per_member import MemberCall

EVENT_NAME_PATTERN = r"^[A-Za-z0-9_-]{2,30}$"
PROPERTIES = "properties."


def event_call(list_id: str, member_hash: str, name: str, properties: dict[str, Any]) -> MemberCall:
    """The event with its properties as strings (nulls left out)."""
    given = {str(k): str(v) for k, v in properties.items() if v is not None}
    body: dict[str, Any] = {"name": name}
    if given:
        body["properties"] = given
    return MemberCall(f"/lists/{list_id}/members/{member_hash}/events", body)


def properties_of(fields: dict[str, Any]) -> dict[str, Any]:
    """The mapping's `properties.<name>` fields of a record."""
    return {k.removeprefix(PROPERTIES): v for k, v in fields.items() if k.startswith(PROPERTIES)}
