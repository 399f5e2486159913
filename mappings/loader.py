"""Load mapping files, with every mistake reported as `path:line: reason`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ennu.events import EVENT_TYPES
from mappings.schema import Mapping


class MappingError(ValueError):
    """A mapping file that cannot be used; the message is `path:line: reason`."""


@dataclass(frozen=True)
class LintError:
    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def _node_at(root: yaml.Node, loc: tuple[Any, ...]) -> yaml.Node:
    """The deepest YAML node that a pydantic error location reaches (a key's node for mapping keys)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    node = value_node if not isinstance(value_node, yaml.ScalarNode) else key_node
                    if isinstance(value_node, yaml.ScalarNode):
                        return key_node
                    break
            else:
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _top_key_line(root: yaml.Node, key: str) -> int | None:
    if isinstance(root, yaml.MappingNode):
        for key_node, _ in root.value:
            if key_node.value == key:
                return int(key_node.start_mark.line) + 1
    return None


def check_file(path: Path) -> tuple[Mapping | None, list[LintError]]:
    """Parse and validate one mapping file; the mapping, or the reasons it is unusable."""
    text = path.read_text()
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = int(mark.line) + 1 if mark is not None else 1
        return None, [LintError(path, line, f"YAML syntax: {getattr(exc, 'problem', None) or exc}")]
    if root is None or not isinstance(data, dict):
        return None, [LintError(path, 1, "a mapping file is a YAML mapping")]
    errors: list[LintError] = []
    event_type = path.parent.name
    if event_type not in EVENT_TYPES:
        errors.append(LintError(path, 1, f"directory {event_type!r} is not a known event type"))
    try:
        mapping = Mapping.model_validate({**data, "event_type": event_type})
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            loc = tuple(error["loc"])
            line = int(_node_at(root, loc).start_mark.line) + 1
            reason = str(error["msg"]).removeprefix("Value error, ")
            if not loc and "upsert_key" in reason:
                line = _top_key_line(root, "upsert_key") or line
            where = ".".join(str(p) for p in loc)
            errors.append(LintError(path, line, f"{where}: {reason}" if where else reason))
        return None, errors
    if mapping.connector != path.stem:
        errors.append(
            LintError(
                path,
                _top_key_line(root, "connector") or 1,
                f"connector {mapping.connector!r} does not match the file name {path.stem!r}",
            )
        )
    return (None if errors else mapping), errors


def mapping_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*.yaml") if p.is_file())


def lint_mappings(root: Path) -> list[LintError]:
    """Every mistake in every mapping file under `root`."""
    errors: list[LintError] = []
    for path in mapping_files(root):
        errors.extend(check_file(path)[1])
    return errors


def load_mapping(path: Path) -> Mapping:
    mapping, errors = check_file(path)
    if mapping is None:
        raise MappingError("; ".join(str(e) for e in errors))
    return mapping


@lru_cache(maxsize=16)
def _load_all(root: Path, stamp: tuple[tuple[str, int], ...]) -> dict[tuple[str, str], Mapping]:
    mappings: dict[tuple[str, str], Mapping] = {}
    for path in mapping_files(root):
        mapping = load_mapping(path)
        mappings[(mapping.event_type, mapping.connector)] = mapping
    return mappings


def load_all_mappings(root: Path) -> dict[tuple[str, str], Mapping]:
    """Every mapping under `root` by (event type, connector); reloaded when a file changes."""
    stamp = tuple((str(p), p.stat().st_mtime_ns) for p in mapping_files(root))
    return _load_all(root, stamp)
