"""Mappings checked against the connectors' declarations: connector, object, upsert key, field names.

The connectors are handed in (the lint passes the registry's classes), so this module knows only what a
connector declares (`name`, `objects`), not any connector's code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as Catalogue
from pathlib import Path
from typing import Any, Protocol

from mappings.loader import LintError, load_mapping, mapping_files


class DeclaredObject(Protocol):
    name: str
    upsert_keys: tuple[str, ...]
    fields: frozenset[str] | None


class DeclaredConnector(Protocol):
    name: str
    objects: tuple[Any, ...]


def _line(path: Path, key: str, indent: str = "") -> int:
    """The line of a top-level (or `indent`ed) key in a mapping file; 1 when it is not found."""
    pattern = re.compile(rf"^{indent}{re.escape(key)}\s*:")
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if pattern.match(text):
            return number
    return 1


def _wire_name(field: str) -> str:
    """The vendor field a mapping field writes: `associations.contacts.email` and `params.x` are paths
    into the request, whose first part is the field the vendor object declares."""
    return field.split(".", 1)[0]


def connector_problems(root: Path, connectors: Catalogue[str, DeclaredConnector]) -> list[LintError]:
    """Every mapping whose connector, object, upsert key or a field name its connector does not declare."""
    problems: list[LintError] = []
    for path in mapping_files(root):
        try:
            mapping = load_mapping(path)
        except ValueError:
            continue  # reported by the mapping checks with its own line
        connector = connectors.get(mapping.connector)
        if connector is None:
            problems.append(
                LintError(
                    path,
                    _line(path, "connector"),
                    f"unknown connector {mapping.connector!r}; registered: {', '.join(sorted(connectors))}",
                )
            )
            continue
        spec = next((o for o in connector.objects if o.name == mapping.object), None)
        if spec is None:
            known = ", ".join(o.name for o in connector.objects)
            problems.append(
                LintError(
                    path,
                    _line(path, "object"),
                    f"{mapping.connector} has no object {mapping.object!r}; it has {known}",
                )
            )
            continue
        if spec.upsert_keys and mapping.upsert_key not in spec.upsert_keys:
            problems.append(
                LintError(
                    path,
                    _line(path, "upsert_key"),
                    f"{mapping.connector} {spec.name} is not upserted by {mapping.upsert_key!r}; "
                    f"it is by {', '.join(spec.upsert_keys)}",
                )
            )
        if spec.fields is not None:
            problems += [
                LintError(
                    path,
                    _line(path, field, indent=r"\s+"),
                    f"{mapping.connector} {spec.name} has no field {_wire_name(field)!r}",
                )
                for field in mapping.fields
                if _wire_name(field) not in spec.fields
            ]
    return problems
