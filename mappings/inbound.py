"""The inbound half of mapping files: vendor field values → the host columns the CRMs own.

A vendor record becomes a dict of host column → value through each field's per-value transforms. Nulls
leave the column alone, a consent can only be withdrawn (`False`), never granted, and every other target is
text. A connector has at most one inbound half per vendor object (HubSpot: contacts → users, deals →
health goals).

The loop guard is checked when the mappings load: every field flows one way only. No outbound field reads a
column the CRMs own (the schema refuses it), so an inbound change can never be pushed back out. An inbound
half reads a vendor field that an outbound mapping writes to the same object only where it declares the
host's `own_value` of it (a deal's stage): that value at the vendor is our own write coming back and is
never taken as the CRM's change; any other such field is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mappings.loader import MappingError, load_all_mappings
from mappings.schema import WITHDRAWABLE_CONSENTS, InboundMapping, Mapping
from mappings.transforms import TRANSFORMS, Transform


def inbound_mappings(root: Path) -> dict[tuple[str, str], Mapping]:
    """The mapping holding each inbound half, by connector name and vendor object."""
    found: dict[tuple[str, str], Mapping] = {}
    clashes: list[str] = []
    every = load_all_mappings(root)
    for mapping in every.values():
        if mapping.inbound is None:
            continue
        inbound = mapping.inbound
        written = {
            (other.name, name)
            for other in every.values()
            if other.connector == mapping.connector and other.object == inbound.object
            for name in other.fields
        }
        clashes += [
            f"{root / mapping.event_type / mapping.connector}.yaml:1: inbound.fields.{target}: "
            f"{spec.source!r} is written by {where}; reading it back would echo our own change"
            for target, spec in inbound.fields.items()
            for where, name in sorted(written)
            if name == spec.source and spec.own_value is None
        ]
        key = (mapping.connector, inbound.object)
        if key in found:
            clashes.append(
                f"{root / mapping.event_type / mapping.connector}.yaml:1: inbound: {mapping.connector} "
                f"already has an inbound half of {inbound.object} in {found[key].name}"
            )
            continue
        found[key] = mapping
    if clashes:
        raise MappingError("\n".join(clashes))
    return found


def host_values(inbound: InboundMapping, vendor: dict[str, Any]) -> dict[str, Any]:
    """Host column (no `user.` or `health_goal.` prefix) → value for one vendor record; nothing to apply is
    left out."""
    out: dict[str, Any] = {}
    for target, spec in inbound.fields.items():
        value = vendor.get(spec.source)
        for step in spec.transforms:
            transform = TRANSFORMS[step.name]
            assert isinstance(transform, Transform)  # the schema refuses multi-source steps here
            value = transform.per_value(value, step.params)
        column = target.split(".", 1)[1]
        if column in WITHDRAWABLE_CONSENTS:
            if value is False:
                out[column] = False
        elif value is not None and str(value).strip():
            out[column] = str(value).strip()
    return out


def host_record_id(inbound: InboundMapping, vendor: dict[str, Any]) -> int | None:
    """The host record id (a user's, a goal's) the vendor record carries in its match field, or None (not
    one of ours)."""
    raw = vendor.get(inbound.match)
    try:
        return int(str(raw).strip()) if raw is not None else None
    except ValueError:
        return None
