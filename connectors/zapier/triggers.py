"""Which event types are Zapier triggers: every host event type with `mappings/<type>/zapier.yaml`.

The mapping files are the one list: `routing.yaml` routes Zapier to every event type that has one
(`every_mapped_event`), the subscribe route accepts exactly those types, and the sample is that mapping
applied to a synthetic person. A new host event type becomes a trigger with one mapping file, or is named
here with the reason it is not one (a test holds every host event type to one or the other).
"""

from __future__ import annotations

from pathlib import Path

from ennu.events import HOST_EVENT_TYPES
from mappings.routing import routing_table

CONNECTOR = "zapier"

# Host event types that are deliberately no trigger, and why (never given a zapier mapping).
NOT_TRIGGERS: dict[str, str] = {
    "user.deletion_requested": (
        "the erasure itself tells every hook, whatever it subscribed to, with a `user.erased` notice once "
        "the person is erased (ZapierConnector.erase); a trigger on the request would hand a Zap the "
        "person's id while the erasure is under way, to act on a person who is being forgotten"
    ),
    "user.consent_changed": (
        "a change of what the hub itself may send, applied at each vendor by the consent-changed flow "
        "(withdraw_consent), not an event about the person; announcing the new flags would copy a "
        "person's marketing and contact preferences to automations the hub cannot make honour them"
    ),
}


def triggers(mappings_dir: Path) -> list[str]:
    """The host event types a Zap may subscribe to: those the routing table routes to Zapier."""
    table = routing_table(mappings_dir)
    return sorted(
        event_type
        for event_type in HOST_EVENT_TYPES
        if event_type not in NOT_TRIGGERS
        and any(spec.connector == CONNECTOR for spec in table.routes.get(event_type, []))
    )
