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

The same listing gives the ids of the tags (`tag_ids`) that removing a tag from many members needs
(`tag_removal`). A name the last listing lacks is looked for in a new one only when it may exist since: a
tag this instance applied after that listing (`applied`), or a listing older than RELIST_AFTER seconds
(another worker may have applied it); otherwise it is taken as never created, carried by nobody.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterable
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
RELIST_AFTER = 60.0  # seconds a listing answers for the tags it lacks


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
        self._tags: dict[str, int] = {}  # tag name -> its static segment's id, from the last listing
        self._listed_at: float | None = None
        self._maybe_new: set[str] = set()  # applied by this instance since, unknown to that listing

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

    def tag_ids(self, names: Collection[str], *, refresh: bool = False) -> dict[str, int]:
        """The ids of those of `names` that are tags of the audience: from the last listing, listed again
        when one of them may have been created since (or with `refresh`)."""
        with self._lock:
            unknown = {n for n in names if n not in self._tags}
            if refresh or (unknown and self._may_exist_now(unknown)):
                self._remember(self.existing())
            return {n: self._tags[n] for n in names if n in self._tags}

    def applied(self, names: Iterable[str]) -> None:
        """Tags just applied to members: one the last listing lacks may exist now (created by that)."""
        with self._lock:
            self._maybe_new.update(n for n in names if n not in self._tags)

    def _may_exist_now(self, unknown: set[str]) -> bool:
        if self._listed_at is None or unknown & self._maybe_new:
            return True
        return time.monotonic() - self._listed_at > RELIST_AFTER

    def _remember(self, found: dict[tuple[str, str], int]) -> None:
        self._tags = {name: segment_id for (kind, name), segment_id in found.items() if kind == STATIC}
        self._listed_at = time.monotonic()
        self._maybe_new.clear()

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
        self._remember(present)
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
                present[(STATIC, spec.tag)] = self._tags[spec.tag] = tag_id
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
