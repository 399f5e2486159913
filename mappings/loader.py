"""Load mapping files, with every mistake reported as `path:line: reason`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ennu.events import EVENT_TYPES
from mappings.schema import Mapping


@dataclass(frozen=True)
class LintError:
    """One mistake in a mapping file: where it is and why it is wrong (never a data value)."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class MappingError(ValueError):
    """A mapping file that cannot be used; the message is `path:line: reason`, one line per mistake."""

    def __init__(self, errors: list[LintError] | str) -> None:
        super().__init__(errors if isinstance(errors, str) else "\n".join(str(e) for e in errors))
        self.errors = [] if isinstance(errors, str) else errors


@dataclass
class _Parsed:
    root: yaml.Node | None = None
    data: Any = None
    errors: list[LintError] = field(default_factory=list)


def _parse(path: Path) -> _Parsed:
    """One YAML parse that keeps both the node tree (for lines) and the plain data."""
    loader = yaml.SafeLoader(path.read_text())
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        return _Parsed(errors=[LintError(path, line, f"YAML syntax: {exc.problem or exc.context}")])
    except yaml.YAMLError as exc:
        return _Parsed(errors=[LintError(path, 1, f"YAML: {type(exc).__name__}")])
    finally:
        loader.dispose()
    return _Parsed(root, data)


def _mapping_nodes(node: yaml.Node) -> Iterator[yaml.MappingNode]:
    if isinstance(node, yaml.MappingNode):
        yield node
        for key, value in node.value:
            yield from _mapping_nodes(key)
            yield from _mapping_nodes(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _mapping_nodes(item)


def _duplicate_keys(path: Path, root: yaml.Node) -> list[LintError]:
    """YAML keeps the last of two equal keys without a word; in a mapping file that is always a mistake."""
    errors = []
    for node in _mapping_nodes(root):
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    errors.append(LintError(path, key.start_mark.line + 1, f"duplicate key {key.value!r}"))
                seen.add(key.value)
    return errors


def _line_of(root: yaml.Node, loc: tuple[Any, ...]) -> int:
    """The line of the deepest key (or list item) that a pydantic error location reaches."""
    node, line = root, root.start_mark.line
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if found is None:
                break  # a missing key, or a dict-key marker: the enclosing key is the place
            node, line = found[1], found[0].start_mark.line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line
        else:
            break
    return line + 1


def _top_key_line(root: yaml.Node, key: str) -> int:
    return _line_of(root, (key,)) if isinstance(root, yaml.MappingNode) else 1


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p != "[key]")


def check_file(path: Path) -> tuple[Mapping | None, list[LintError]]:
    """Parse and validate one mapping file: the mapping, or every reason it is unusable."""
    parsed = _parse(path)
    if parsed.errors:
        return None, parsed.errors
    root, data = parsed.root, parsed.data
    if root is None or not isinstance(data, dict):
        return None, [LintError(path, 1, "a mapping file is a YAML mapping of connector, object, ...")]
    errors = _duplicate_keys(path, root)
    event_type = path.parent.name
    if event_type not in EVENT_TYPES:
        known = ", ".join(EVENT_TYPES)
        errors.append(LintError(path, 1, f"directory {event_type!r} is not a known event type: {known}"))
    if "event_type" in data:
        errors.append(
            LintError(path, _top_key_line(root, "event_type"), "event_type comes from the directory name")
        )
    # `<connector>.yaml`, or `<connector>_<variant>.yaml` for a route that names it (routing.yaml `mapping:`)
    connector = data.get("connector")
    if isinstance(connector, str) and connector != path.stem and not path.stem.startswith(f"{connector}_"):
        errors.append(
            LintError(
                path,
                _top_key_line(root, "connector"),
                f"connector {data['connector']!r} does not match the file name {path.stem!r}",
            )
        )
    mapping: Mapping | None = None
    try:
        mapping = Mapping.model_validate({**data, "event_type": event_type})
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            loc = tuple(error["loc"])
            reason = str(error["msg"]).removeprefix("Value error, ")
            where = _where(loc)
            errors.append(LintError(path, _line_of(root, loc), f"{where}: {reason}" if where else reason))
    unique = list(dict.fromkeys(errors))
    unique.sort(key=lambda e: e.line)
    return (None if unique else mapping), unique


def mapping_files(root: Path) -> list[Path]:
    """Every `<event type>/<connector>.yaml` under `root` (files at the root, like routing.yaml, are not)."""
    return sorted(p for p in root.glob("*/*.yaml") if p.is_file() and p.parent.is_dir())


def lint_mappings(root: Path) -> list[LintError]:
    """Every mistake in every mapping file under `root`, in file and line order."""
    errors: list[LintError] = []
    for path in mapping_files(root):
        errors.extend(check_file(path)[1])
    errors.extend(
        LintError(path, 1, "mapping files end in .yaml")
        for path in sorted(root.glob("*/*.yml"))
        if path.is_file()
    )
    return errors


def load_mapping(path: Path) -> Mapping:
    """The mapping in one file; `MappingError` (`path:line: reason`) if it has any mistake."""
    mapping, errors = check_file(path)
    if mapping is None:
        raise MappingError(errors)
    return mapping


@lru_cache(maxsize=16)
def _load_all(root: Path, stamp: tuple[tuple[str, int], ...]) -> dict[tuple[str, str], Mapping]:
    return {(path.parent.name, path.stem): load_mapping(path) for path in mapping_files(root)}


def load_all_mappings(root: Path) -> dict[tuple[str, str], Mapping]:
    """Every mapping under `root` by (event type, file name: the connector's, or a route's `mapping`); read
    again when a file changes."""
    stamp = tuple((str(p), p.stat().st_mtime_ns) for p in mapping_files(root))
    return dict(_load_all(root, stamp))


# What every event carries outside its payload; a mapping's `event.<column>` source reads these.
EVENT_ENVELOPE = frozenset({"id", "type", "occurred_at", "subject", "resource"})


def event_payload_keys(root: Path) -> frozenset[str]:
    """The payload keys some mapping reads (`event.<key>` beyond the envelope): all the intake stores."""
    return frozenset(
        column.partition(".")[2]
        for mapping in load_all_mappings(root).values()
        for column in mapping.source_columns
        if column.startswith("event.") and column.partition(".")[2] not in EVENT_ENVELOPE
    )
