"""`python -m deployments.lint [DIR]`: check a mappings directory before it is deployed.

Every mapping file against the schema, the routing table, the ENNU codes and what each registered
connector declares (connector, object, upsert key, field names); one line per problem with file, line
and reason. DIR defaults to the checkout's `mappings/`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from connectors.registry import CONNECTORS
from mappings.lint import problems
from mappings.loader import mapping_files

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else MAPPINGS
    found = problems(root, CONNECTORS)
    for problem in found:
        print(problem)
    if found:
        print(f"{len(found)} problem(s) in {root}", file=sys.stderr)
        return 1
    print(f"{len(mapping_files(root))} mapping files OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
