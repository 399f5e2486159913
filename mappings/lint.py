"""`python -m mappings.lint [DIR]`: check every mapping file and the routing table; file, line and reason."""

from __future__ import annotations

import sys
from pathlib import Path

from mappings.against_connectors import DeclaredConnector, connector_problems
from mappings.ennu_codes import check_codes_file
from mappings.inbound import inbound_mappings
from mappings.loader import MappingError, lint_mappings, load_all_mappings, mapping_files
from mappings.routing import ROUTE_FILTER_NAMES, RoutingError, load_routing

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


def registered_connectors() -> dict[str, DeclaredConnector]:
    """The registry's connectors: the one place the lint learns what each connector declares."""
    from connectors.registry import CONNECTORS

    return dict(CONNECTORS)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parent
    problems = [str(e) for e in lint_mappings(root)]
    if not problems:
        try:
            inbound_mappings(root)
        except MappingError as exc:
            problems += str(exc).splitlines()
        problems += code_problems(root)
        problems += [str(e) for e in connector_problems(root, registered_connectors())]
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
            present = {(p.parent.name, p.stem) for p in mapping_files(root)}
            problems += [
                f"{routing}: routes.{event_type}: no mapping file {event_type}/{spec.mapping_name}.yaml"
                for event_type, specs in table.routes.items()
                for spec in specs
                if (event_type, spec.mapping_name) not in present
            ]
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {root}", file=sys.stderr)
        return 1
    print(f"{len(mapping_files(root))} mapping files OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
