"""HubSpot webhook events (`contact.propertyChange`, `deal.propertyChange`) applied to the host at once.

Each event is one stored receipt (HubSpot sends up to 100 a request; the intake stores each once by its
`eventId`). A change is applied through the inbound half of the HubSpot mappings, as the hourly poll applies
it (which stays the safety net): only the CRM-owned columns it names, a consent only ever withdrawn, and
never a change older (`occurredAt`) than the one a column last took. The contact is ours when we wrote it:
its HubSpot id is in the sync log. A withdrawn marketing consent raises `user.consent_changed` for the
person, so the other marketing destinations stop too. Deals have no inbound half: their changes are marked
`not mapped`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ennu.erasure import erased_among
from ennu.events import HostEvent
from ennu.models import SyncLog, User
from ennu.receipts import Handled
from ennu.settings import get_settings
from mappings.inbound import host_values, inbound_mappings
from tasks.inbound import apply_change, read_versions

INTEGRATION = "hubspot"
CHANGED_OBJECTS = {"contact.propertyChange": "contacts", "deal.propertyChange": "deals"}


def hubspot_user(session: Session, object_type: str, object_id: str) -> int | None:
    """Our user whose HubSpot record of this type has this id (the latest write of ours that named it)."""
    found = session.execute(
        select(SyncLog.user_id)
        .where(
            SyncLog.connector == INTEGRATION,
            SyncLog.object == object_type,
            SyncLog.remote_id == object_id,
            SyncLog.user_id.is_not(None),
        )
        .order_by(SyncLog.id.desc())
        .limit(1)
    ).scalar()
    return None if found is None else int(found)


def occurred_at(value: Any) -> datetime | None:
    """HubSpot's `occurredAt` (epoch milliseconds) as an aware time."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def hubspot_property_change(session: Session, payload: dict[str, Any]) -> Handled:
    """Apply one property change of a HubSpot record to its host user."""
    object_type = CHANGED_OBJECTS.get(str(payload.get("subscriptionType")))
    if object_type is None:
        return Handled("ignored")
    mapping = inbound_mappings(get_settings().mappings_dir).get(INTEGRATION)
    inbound = mapping.inbound if mapping is not None else None
    name = payload.get("propertyName")
    if inbound is None or inbound.object != object_type or name not in inbound.vendor_fields:
        return Handled("not mapped")
    when, object_id = occurred_at(payload.get("occurredAt")), payload.get("objectId")
    if when is None or not isinstance(object_id, int | str) or isinstance(object_id, bool):
        return Handled("malformed")
    user_id = hubspot_user(session, object_type, str(object_id))
    user = session.get(User, user_id) if user_id is not None else None
    if user is None or erased_among(session, [user.id]):
        return Handled("unmatched")  # not one we wrote (or erased): the hourly poll matches by ennu_user_id
    wanted = host_values(inbound, {str(name): payload.get("propertyValue")})
    if not wanted:
        return Handled("nothing to apply")  # e.g. an opt-out cleared: consent is never granted from a CRM
    versions = read_versions(session, INTEGRATION, [user.id])
    applied = apply_change(session, INTEGRATION, object_type, user, wanted, when, str(object_id), versions)
    if applied.stale:
        return Handled("stale change")
    if not applied.diff:
        return Handled("unchanged")
    if applied.diff.get("marketing_consent") is False:
        withdrawn = HostEvent(
            id=f"hubspot-{payload.get('eventId')}"[:64],
            type="user.consent_changed",
            occurred_at=when,
            subject=user.id,
        )
        return Handled("consent withdrawn", [withdrawn])
    return Handled("applied")
