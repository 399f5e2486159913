"""HubSpot webhook events (`contact.propertyChange`, `deal.propertyChange`) applied to the host at once.

Each event is one stored receipt (HubSpot sends up to 100 a request; the intake stores each once by its
`eventId`). A change is applied through the inbound half of the HubSpot mappings for its object, as the
hourly poll applies it (which stays the safety net): only the CRM-owned columns it names, a consent only
ever withdrawn, and never a change older (`occurredAt`) than the one a column last took. The contact or
deal is ours when we wrote it: its HubSpot id is in the sync log. A withdrawn marketing consent raises
`user.consent_changed` for the person, so the other marketing destinations stop too.

A deal's changes reach its health goal's CRM view only (`crm_stage`, `crm_owner_id`): the goal's status
stays the host's, so a deal won, lost or deleted at HubSpot never completes or ends a goal. A stage equal to
the one the host sends is our own write coming back (`own value`): it clears the CRM view, nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ennu.erasure import erased_among
from ennu.events import HostEvent
from ennu.models import SyncLog
from ennu.receipts import Handled
from ennu.settings import get_settings
from mappings.inbound import inbound_mappings
from tasks.inbound import apply_change, owner_id, read_records, read_versions, wanted_values

INTEGRATION = "hubspot"
CHANGED_OBJECTS = {"contact.propertyChange": "contacts", "deal.propertyChange": "deals"}


def hubspot_record(session: Session, object_type: str, object_id: str, record: str) -> int | None:
    """Our host record (a user, a goal) whose HubSpot object of this type has this id: the latest write of
    ours that named it (its record key is `<record>:<id>`)."""
    found = session.execute(
        select(SyncLog.record_key)
        .where(
            SyncLog.connector == INTEGRATION,
            SyncLog.object == object_type,
            SyncLog.remote_id == object_id,
            SyncLog.record_key.startswith(f"{record}:", autoescape=True),
        )
        .order_by(SyncLog.id.desc())
        .limit(1)
    ).scalar()
    if found is None:
        return None
    digits = str(found).removeprefix(f"{record}:")
    return int(digits) if digits.isdigit() else None


def occurred_at(value: Any) -> datetime | None:
    """HubSpot's `occurredAt` (epoch milliseconds) as an aware time."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def hubspot_property_change(session: Session, payload: dict[str, Any]) -> Handled:
    """Apply one property change of a HubSpot contact to its host user, or of a deal to its health goal."""
    object_type = CHANGED_OBJECTS.get(str(payload.get("subscriptionType")))
    if object_type is None:
        return Handled("ignored")
    mapping = inbound_mappings(get_settings().mappings_dir).get((INTEGRATION, object_type))
    inbound = mapping.inbound if mapping is not None else None
    name = payload.get("propertyName")
    if inbound is None or name not in inbound.vendor_fields:
        return Handled("not mapped")
    when, object_id = occurred_at(payload.get("occurredAt")), payload.get("objectId")
    if when is None or not isinstance(object_id, int | str) or isinstance(object_id, bool):
        return Handled("malformed")
    record_id = hubspot_record(session, object_type, str(object_id), inbound.record)
    target = (
        read_records(session, inbound.record, [record_id]).get(record_id) if record_id is not None else None
    )
    if target is None or erased_among(session, [owner_id(target)]):
        return Handled("unmatched")  # not one we wrote (or erased): the hourly poll matches by our id
    wanted = wanted_values(inbound, target, {str(name): payload.get("propertyValue")})
    if not wanted:
        return Handled("nothing to apply")  # e.g. an opt-out cleared: consent is never granted from a CRM
    versions = read_versions(session, INTEGRATION, inbound.record, [target.id])
    applied = apply_change(session, INTEGRATION, object_type, target, wanted, when, str(object_id), versions)
    if applied.stale:
        return Handled("stale change")
    if all(value is None for value in wanted.values()):
        return Handled("own value")  # our write came back: a CRM view it had is cleared, nothing else
    if not applied.diff:
        return Handled("unchanged")
    if applied.diff.get("marketing_consent") is False:
        withdrawn = HostEvent(
            id=f"hubspot-{payload.get('eventId')}"[:64],
            type="user.consent_changed",
            occurred_at=when,
            subject=target.id,
        )
        return Handled("consent withdrawn", [withdrawn])
    return Handled("applied")
