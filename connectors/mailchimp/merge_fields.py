"""Mailchimp merge fields our mappings write, created at the audience when missing.

Mailchimp keeps member data only in merge fields the audience defines. New audiences have FNAME, LNAME,
ADDRESS, PHONE and BIRTHDAY; anything else (SCORE) must be created first, and a clinic may have deleted
a default one. The definitions are derived from the mailchimp mapping files (`merge_fields.<TAG>`), so a
mapping that starts writing a new merge field gets it created without a code change.

Checking costs one `GET /lists/{id}/merge-fields?count=1000` plus one `POST` per missing field. It runs
once per connector instance, and not at all when the integration's remembered fingerprint
(`integration_state.schema_fingerprint`, through `ennu.vendor_schema`) equals the current definitions:
once per deployment change, never on every push.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from connectors.http import PermanentError, VendorHttp
from connectors.mailchimp.errors import TABLE
from ennu import vendor_schema
from mappings.loader import load_all_mappings
from mappings.schema import FieldSpec

logger = logging.getLogger(__name__)

PREFIX = "merge_fields."
MAX_TAG_LENGTH = 10  # Mailchimp's limit on a merge tag
MAX_COUNT = 1000  # the most merge fields one GET returns


@dataclass(frozen=True)
class MergeField:
    """One merge field definition as `POST /lists/{id}/merge-fields` takes it."""

    tag: str
    name: str
    type: str  # Mailchimp's merge field type: text, number, phone, ...


def field_type(spec: FieldSpec) -> str:
    """The merge field type a mapping field needs, from its constraints (E.164 phone, numeric range)."""
    if spec.constraints.phone:
        return "phone"
    if spec.constraints.range is not None:
        return "number"
    return "text"


def merge_fields_from_mappings(mappings_dir: Path) -> tuple[MergeField, ...]:
    """Every merge field any mailchimp mapping writes, once, sorted by tag."""
    found: dict[str, MergeField] = {}
    for (_, connector), mapping in sorted(load_all_mappings(mappings_dir).items()):
        if connector != "mailchimp":
            continue
        for name, spec in mapping.fields.items():
            if not name.startswith(PREFIX):
                continue
            tag = name.removeprefix(PREFIX)
            if len(tag) > MAX_TAG_LENGTH or not tag.isupper():
                raise ValueError(f"{mapping.name}: merge tag {tag!r} is not upper case of at most 10 chars")
            found.setdefault(tag, MergeField(tag, spec.description or tag, field_type(spec)))
    return tuple(found[tag] for tag in sorted(found))


class EnsuredMemory(Protocol):
    """Where the fingerprint of the last ensured definitions is kept between processes."""

    def is_ensured(self, wanted: str) -> bool: ...

    def remember(self, wanted: str) -> None: ...


class DatabaseMemory:
    """The integration's row in `integration_state`. Without a usable database the vendor is asked again
    (one GET per connector instance): the memory only saves requests, it never decides correctness."""

    def __init__(self, integration: str) -> None:
        self.integration = integration

    def is_ensured(self, wanted: str) -> bool:
        try:
            return vendor_schema.is_ensured(self.integration, wanted)
        except SQLAlchemyError as exc:
            logger.warning("%s: ensured definitions not readable (%s)", self.integration, type(exc).__name__)
            return False

    def remember(self, wanted: str) -> None:
        try:
            vendor_schema.remember_ensured(self.integration, wanted)
        except SQLAlchemyError as exc:
            logger.warning("%s: ensured definitions not stored (%s)", self.integration, type(exc).__name__)


class MergeFieldEnsurer:
    """Creates the missing merge fields of one audience, at most once per instance."""

    def __init__(
        self, http: VendorHttp, list_id: str, wanted: tuple[MergeField, ...], memory: EnsuredMemory
    ) -> None:
        self.http = http
        self.list_id = list_id
        self.wanted = wanted
        self.memory = memory
        self.fingerprint = vendor_schema.fingerprint(
            {"list_id": list_id, "merge_fields": [asdict(f) for f in wanted]}
        )
        self.done = not wanted
        self._lock = threading.Lock()

    @property
    def tags(self) -> frozenset[str]:
        return frozenset(f.tag for f in self.wanted)

    def existing_tags(self) -> set[str]:
        response = self.http.request(
            "GET",
            f"/lists/{self.list_id}/merge-fields",
            params={"count": MAX_COUNT},
        )
        body: dict[str, Any] = response.json()
        return {str(f.get("tag")) for f in body.get("merge_fields", [])}

    def ensure(self, *, force: bool = False) -> list[str]:
        """The tags created now; `force` checks the vendor even when remembered as ensured.

        Concurrent pushes of one connector wait for the first check instead of each asking the vendor.
        """
        with self._lock:
            return self._ensure(force=force)

    def _ensure(self, *, force: bool) -> list[str]:
        if self.done and not force:
            return []
        if not force and self.memory.is_ensured(self.fingerprint):
            self.done = True
            return []
        present = self.existing_tags()
        created: list[str] = []
        refused: list[str] = []
        for field in self.wanted:
            if field.tag in present:
                continue
            response = self.http.request(
                "POST",
                f"/lists/{self.list_id}/merge-fields",
                json=asdict(field),
                allow_statuses=TABLE.expect("merge field"),
            )
            # A 400 is most often another worker having created the same tag a moment ago.
            (refused if response.status_code == 400 else created).append(field.tag)
        if refused and not set(refused) <= self.existing_tags():
            raise PermanentError(self.http.integration, 400, "merge field not created")
        self.memory.remember(self.fingerprint)
        self.done = True
        if created:
            logger.info("%s: created %d merge fields", self.http.integration, len(created))
        return created
