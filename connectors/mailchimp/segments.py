"""Mailchimp saved segments for goal kinds and assessment types, created once per audience.

A segment is a saved tag condition (`options.conditions`: `StaticSegment` / `static_is` the tag's id), so
it follows the tags with no per-member write: Mailchimp re-evaluates it whenever it is used. A tag is a
static segment at Mailchimp: one not applied to anybody yet is created empty (`static_segment: []`) so that
the condition has its id.

The vendor is the memory: segments and tags are looked up by name (`GET /lists/{id}/segments`, which lists
both), once per connector instance, and only the missing ones are created: never twice, across processes
and restarts. The first check of an audience costs one GET and up to two POSTs a segment; every later
instance one GET. A segment refused (two workers creating the same one at once) is logged by name and
asked for again by the next instance; it never fails a person's push.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from connectors.http import VendorHttp
from connectors.mailchimp.errors import TABLE
from connectors.mailchimp.tag_state import (
    ASSESSMENT_TYPES,
    GOAL_KINDS,
    assessment_tag,
    goal_completed_tag,
    goal_tag,
    slug,
)

logger = logging.getLogger(__name__)

PAGE = 1000  # the most segments one GET returns
SAVED = "saved"
STATIC = "static"


@dataclass(frozen=True)
class SegmentSpec:
    """A saved segment: its name in the audience and the tag its members carry."""

    name: str
    tag: str


def wanted_segments() -> tuple[SegmentSpec, ...]:
    """One segment per goal kind (open, completed) and per assessment type."""
    goals = [SegmentSpec(f"ENNU goal: {slug(k)}", goal_tag(k)) for k in GOAL_KINDS]
    completed = [SegmentSpec(f"ENNU goal completed: {slug(k)}", goal_completed_tag(k)) for k in GOAL_KINDS]
    assessed = [SegmentSpec(f"ENNU assessment: {slug(t)}", assessment_tag(t)) for t in ASSESSMENT_TYPES]
    return (*goals, *completed, *assessed)


def tag_condition(tag_id: int) -> dict[str, Any]:
    """Mailchimp's segment options for "members tagged with this tag"."""
    return {
        "match": "any",
        "conditions": [
            {"condition_type": "StaticSegment", "field": "static_segment", "op": "static_is", "value": tag_id}
        ],
    }


class SegmentEnsurer:
    """Creates the audience's missing segments (and the tags they name), at most once per instance."""

    def __init__(self, http: VendorHttp, list_id: str, wanted: tuple[SegmentSpec, ...]) -> None:
        self.http = http
        self.list_id = list_id
        self.wanted = wanted
        self.done = not wanted
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        return f"/lists/{self.list_id}/segments"

    def existing(self) -> dict[tuple[str, str], int]:
        """(type, name) → id of every segment and tag of the audience, page by page."""
        found: dict[tuple[str, str], int] = {}
        offset = 0
        while True:
            params = {"count": PAGE, "offset": offset}
            body: dict[str, Any] = self.http.request("GET", self.path, params=params).json()
            page = body.get("segments", [])
            found.update({(str(s.get("type")), str(s.get("name"))): int(s["id"]) for s in page})
            offset += len(page)
            if not page or offset >= int(body.get("total_items", 0)):
                return found

    def ensure(self) -> list[str]:
        """The names of the segments created now; concurrent pushes wait for the first check."""
        with self._lock:
            if self.done:
                return []
            created = self._ensure()
            self.done = True
            return created

    def _ensure(self) -> list[str]:
        present = self.existing()
        created: list[str] = []
        refused: list[str] = []
        for spec in self.wanted:
            if (SAVED, spec.name) in present:
                continue
            tag_id = present.get((STATIC, spec.tag))
            if tag_id is None:
                tag_id = self._create({"name": spec.tag, "static_segment": []})
                if tag_id is None:
                    refused.append(spec.name)
                    continue
                present[(STATIC, spec.tag)] = tag_id
            if self._create({"name": spec.name, "options": tag_condition(tag_id)}) is None:
                refused.append(spec.name)
            else:
                created.append(spec.name)
        if created:
            logger.info("%s: created %d segments", self.http.integration, len(created))
        if refused:  # segment names are ours (no person's data)
            logger.warning("%s: segments not created: %s", self.http.integration, ", ".join(refused))
        return created

    def _create(self, body: dict[str, Any]) -> int | None:
        response = self.http.request("POST", self.path, json=body, allow_statuses=TABLE.expect("segment"))
        return None if response.status_code >= 400 else int(response.json()["id"])
