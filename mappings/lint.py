"""Every mistake in a mappings directory (files, routing table, codes, the connectors' declarations), each
with file, line and reason. The command is `python -m deployments.lint [DIR]`, which hands in the registry.
"""

from __future__ import annotations

from collections.abc import Mapping as Catalogue
from pathlib import Path

from ennu.events import EVENT_TYPES
from mappings.against_connectors import DeclaredConnector, connector_problems
from mappings.ennu_codes import check_codes_file
from mappings.inbound import inbound_mappings
from mappings.loader import MappingError, lint_mappings, load_all_mappings, mapping_files
from mappings.routing import ROUTE_FILTER_NAMES, ROUTE_FILTER_RESOURCES, RoutingError, load_routing

SCORE_SOURCE = "assessment.scores."


def code_problems(root: Path) -> list[str]:
    """The ENNU code system is valid, and every score a mapping reads has a code in it."""
    path = root / "ennu_codes.yaml"
    if not path.exists():
        return []
    codes, errors = check_codes_file(path)
    if codes is None:
        return [str(e) for e in errors]
    return [
        f"{root / mapping.event_type / mapping.connector}.yaml: field {name!r}: score {source!r} has no code "
        f"in {path.name}"
        for (_, connector), mapping in load_all_mappings(root).items()
        if connector == "epic_fhir"
        for name, spec in mapping.fields.items()
        for source in spec.sources
        if source.startswith(SCORE_SOURCE) and source.removeprefix(SCORE_SOURCE) not in codes.scores
    ]


def problems(root: Path, connectors: Catalogue[str, DeclaredConnector]) -> list[str]:
    """Every problem of the mappings under `root`, checked against these connectors' declarations."""
    found = [str(e) for e in lint_mappings(root)]
    if not found:
        try:
            inbound_mappings(root)
        except MappingError as exc:
            found += str(exc).splitlines()
        found += code_problems(root)
        found += [str(e) for e in connector_problems(root, connectors)]
    return found + routing_problems(root, connectors)


def routing_problems(root: Path, connectors: Catalogue[str, DeclaredConnector]) -> list[str]:
    """The routing table parses, names registered connectors, known filters and existing mapping files."""
    problems: list[str] = []
    routing = root / "routing.yaml"
    if routing.exists():
        try:
            table = load_routing(routing)
        except RoutingError as exc:
            problems.append(str(exc))
        else:
            problems += [
                f"{routing}: routes.{event_type}: unknown filter where: {spec.where!r}; "
                f"known: {', '.join(sorted(ROUTE_FILTER_NAMES))}"
                for event_type, specs in table.routes.items()
                for spec in specs
                if spec.where is not None and spec.where not in ROUTE_FILTER_NAMES
            ]
            problems += [
                f"{routing}: routes.{event_type}: filter where: {spec.where!r} reads "
                f"{ROUTE_FILTER_RESOURCES[spec.where]} rows; {event_type} events carry "
                f"{EVENT_TYPES[event_type].resource_kind or 'no resource'}"
                for event_type, specs in table.routes.items()
                for spec in specs
                if spec.where in ROUTE_FILTER_RESOURCES
                and ROUTE_FILTER_RESOURCES[spec.where] != EVENT_TYPES[event_type].resource_kind
            ]
            present = {(p.parent.name, p.stem) for p in mapping_files(root)}
            problems += [
                f"{routing}: routes.{event_type}: no mapping file {event_type}/{spec.mapping_name}.yaml"
                for event_type, specs in table.routes.items()
                for spec in specs
                if (event_type, spec.mapping_name) not in present
            ]
            problems += [
                f"{routing}: integrations.{name}: no connector {name!r} is registered"
                for name in table.integrations
                if name not in connectors
            ]
    return problems
