"""ENNU's custom HubSpot property definitions, derived from the HubSpot mapping files, and ensured once.

HubSpot refuses a write that names a property the portal does not define (400 PROPERTY_DOESNT_EXIST), so
the properties our mappings write must exist before the first push. Which ones are ours is read from the
mapping files, not kept by hand: every field named `ennu_*` of a `connector: hubspot` mapping. Its type
follows from what the mapping does to it (a date transform makes a date, a range or a rounding a number,
an enum an enumeration); a field that identifies a record (an upsert key, the inbound match key or an
association key) is a unique-value text property, as HubSpot requires of an `idProperty`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from connectors.http import VendorHttp
from connectors.hubspot.errors import TABLE
from mappings import Mapping, load_all_mappings

GROUP = {"name": "ennu", "label": "ENNU", "displayOrder": -1}
OWN_PREFIX = "ennu_"
ASSOCIATION_PREFIX = "associations."  # `associations.<to object>.<id property>`: not a property of the record
DATE_TRANSFORMS = frozenset({"epoch_ms_date", "iso_date"})
NUMBER_TRANSFORMS = frozenset({"round"})

Definitions = dict[str, list[dict[str, Any]]]  # object type -> property definitions (PropertyCreate bodies)


def associated_properties(fields: Iterable[str], to_object: str) -> dict[str, str]:
    """Field name -> property of the associated `to_object` record the fields describe (`companies.name`).

    A record that names such properties has its associated records upserted (by the association key)
    before it is linked to them; one without them is linked to records that must exist already.
    """
    prefix = f"{to_object}."
    return {name: name.removeprefix(prefix) for name in fields if name.startswith(prefix)}


def exclusive(id_property: str) -> bool:
    """An association keyed by one of our own ids is the record's only one to that object type: when the
    host names another target (a person moved clinic), the link to the earlier one goes."""
    return id_property.startswith(OWN_PREFIX)


def association_keys(fields: Iterable[str]) -> list[tuple[str, str, str]]:
    """(field name, to object type, id property) of each association field among `fields`."""
    found = []
    for name in fields:
        if name.startswith(ASSOCIATION_PREFIX):
            to_object, _, id_property = name.removeprefix(ASSOCIATION_PREFIX).partition(".")
            if to_object and id_property:
                found.append((name, to_object, id_property))
    return found


def _label(name: str) -> str:
    return "ENNU " + name.removeprefix(OWN_PREFIX).replace("_", " ")


def _definition(mapping: Mapping, name: str, unique: bool) -> dict[str, Any]:
    spec = mapping.fields[name]
    transforms = {step.name for step in spec.transforms}
    definition: dict[str, Any] = {
        "name": name,
        "label": _label(name),
        "groupName": GROUP["name"],
        "type": "string",
        "fieldType": "text",
    }
    if unique:
        definition["hasUniqueValue"] = True
    elif transforms & DATE_TRANSFORMS:
        definition.update(type="date", fieldType="date")
    elif transforms & NUMBER_TRANSFORMS or spec.constraints.range is not None:
        definition.update(type="number", fieldType="number")
    elif spec.constraints.enum is not None:
        options = [
            {"label": str(v), "value": str(v), "displayOrder": i, "hidden": False}
            for i, v in enumerate(spec.constraints.enum)
        ]
        definition.update(type="enumeration", fieldType="select", options=options)
    if spec.description:
        definition["description"] = spec.description
    return definition


def _unique_names(mappings: Iterable[Mapping]) -> set[tuple[str, str]]:
    """(object type, property) pairs that identify records: upsert, inbound match and association keys."""
    unique: set[tuple[str, str]] = set()
    for mapping in mappings:
        unique.add((mapping.object, mapping.upsert_key))
        if mapping.inbound is not None:
            unique.add((mapping.inbound.object, mapping.inbound.match))
        unique.update((to_object, prop) for _, to_object, prop in association_keys(mapping.fields))
    return unique


def property_definitions(mappings_dir: Path, connector: str = "hubspot") -> Definitions:
    """ENNU's properties by object type, from every mapping of `connector`; the first mapping naming one wins.

    Raises ValueError when two mappings give one property different types (the lint should catch that).
    """
    mappings = [m for m in load_all_mappings(mappings_dir).values() if m.connector == connector]
    mappings.sort(key=lambda m: m.name)
    unique = _unique_names(mappings)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for mapping in mappings:
        for name in mapping.fields:
            if not name.startswith(OWN_PREFIX):
                continue
            definition = _definition(mapping, name, (mapping.object, name) in unique)
            earlier = found.setdefault((mapping.object, name), definition)
            if earlier["type"] != definition["type"]:
                raise ValueError(
                    f"{mapping.name}: {name} is {definition['type']}, elsewhere {earlier['type']}"
                )
    # An association key names a property of the other object that no mapping of that object may write.
    for object_type, name in sorted(unique):
        if name.startswith(OWN_PREFIX) and (object_type, name) not in found:
            found[(object_type, name)] = {
                "name": name,
                "label": _label(name),
                "groupName": GROUP["name"],
                "type": "string",
                "fieldType": "text",
                "hasUniqueValue": True,
            }
    definitions: Definitions = {}
    for (object_type, _), definition in sorted(found.items()):
        definitions.setdefault(object_type, []).append(definition)
    return definitions


def ensure_definitions(http: VendorHttp, definitions: Definitions) -> dict[str, list[str]]:
    """Create the properties (and the `ennu` group) the portal lacks; the names created, by object type.

    One read per object type when nothing is missing; otherwise also the group (a 409 means it exists)
    and one batch create.
    """
    created: dict[str, list[str]] = {}
    for object_type, wanted in sorted(definitions.items()):
        existing = http.request("GET", f"/crm/v3/properties/{object_type}").json().get("results", [])
        names = {p.get("name") for p in existing}
        missing = [d for d in wanted if d["name"] not in names]
        if not missing:
            continue
        if not any(p.get("groupName") == GROUP["name"] for p in existing):
            http.request(
                "POST",
                f"/crm/v3/properties/{object_type}/groups",
                json=GROUP,
                allow_statuses=TABLE.expect("property exists"),
            )
        http.request("POST", f"/crm/v3/properties/{object_type}/batch/create", json={"inputs": missing})
        created[object_type] = [d["name"] for d in missing]
    return created


def missing_property_names(body: Any) -> list[str]:
    """The property names of a 400 PROPERTY_DOESNT_EXIST answer (`errors[].context.propertyName`)."""
    if not isinstance(body, dict):
        return []
    names: list[str] = []
    for error in body.get("errors") or []:
        if isinstance(error, dict) and error.get("code") == "PROPERTY_DOESNT_EXIST":
            names += [str(n) for n in (error.get("context") or {}).get("propertyName", [])]
    if not names and "PROPERTY_DOESNT_EXIST" in str(body.get("message", "")):
        names.append("?")  # the older shape: the details only inside the message text
    return names
