"""A copy of the repository's mappings with some integrations switched on or off, for tests and the bench."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


def routing_copy(
    destination: Path,
    *,
    enable: Iterable[str] = (),
    disable: Iterable[str] = (),
    source: Path = REPO_MAPPINGS,
) -> Path:
    """Copy the mapping files to `destination` and set `enabled:` of the named integrations in routing.yaml.

    Point ENNU_MAPPINGS_DIR at the returned directory (and reload settings) to use it. A name that the
    routing table does not list raises, so that a renamed integration cannot silently leave a test
    counting the wrong requests.
    """
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    routing = destination / "routing.yaml"
    text = routing.read_text()
    for names, value in ((enable, "true"), (disable, "false")):
        for name in names:
            pattern = re.compile(rf"^(  {re.escape(name)}: \{{enabled: )(true|false|sandbox)", re.MULTILINE)
            text, found = pattern.subn(rf"\g<1>{value}", text)
            if found != 1:
                raise ValueError(f"routing.yaml has no integration {name!r}")
    routing.write_text(text)
    return destination
