"""One benchmark line: what a connector cost for how many records, printed as JSON."""

from __future__ import annotations

import json
import re
import resource
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

VERSION_SEGMENT = re.compile(r"^v?\d+(\.\d+)+$")  # API versions in paths: 3.0, v62.0


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class BenchLine:
    """The figures of one connector run; `http_calls` are counted by the sandbox, not by the client."""

    connector: str
    event_type: str
    mode: str  # "batched" (the pipeline) or "one-request-each" (the same records without batching)
    records: int
    http_calls: int
    seconds: float
    failed: int = 0  # of `records`, refused by the vendor (a per-record outcome, not a lost request)
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        line: dict[str, object] = asdict(self)
        note = line.pop("note")
        line["seconds"] = round(self.seconds, 3)
        line["records_per_s"] = round(self.records / self.seconds, 1) if self.seconds else None
        line["requests_per_1000"] = round(1000 * self.http_calls / self.records, 1) if self.records else None
        line["peak_rss_mb"] = round(peak_rss_mb(), 1)
        if note:
            line["note"] = note
        return line


def emit(line: BenchLine) -> None:
    print(json.dumps(line.as_dict()), flush=True)


def path_shape(path: str) -> str:
    """A request path with its ids (two digits or more, an @, or over 20 characters) as `{id}`.

    Ids can be personal (a Mailchimp subscriber hash, a Salesforce external id): only shapes are printed.
    """
    shaped = []
    for segment in path.split("/"):
        if VERSION_SEGMENT.match(segment):
            shaped.append(segment)
        elif len(segment) > 20 or sum(c.isdigit() for c in segment) > 1 or "@" in segment or "%" in segment:
            shaped.append("{id}")
        else:
            shaped.append(segment)
    return "/".join(shaped)


def request_shapes(requests: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many requests went to each method and path shape, most first."""
    counts = Counter(f"{r['method']} {path_shape(str(r['path']))}" for r in requests)
    return dict(counts.most_common())
