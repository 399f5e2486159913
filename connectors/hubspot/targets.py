"""The HubSpot ids of association targets this process already upserted or read, so that a batch linking
contacts to their clinic's company does not upsert the same companies again every batch.

A target is known by (object, id property, key) with a fingerprint of the properties last sent for it
(none for a target that is only read): a target described differently is upserted again. What is kept is
HubSpot ids and digests: neither a key (a contact's e-mail) nor a property's value. Bounded: the least
recently used are forgotten first. A link that HubSpot refuses for a known target (it was deleted or
merged there) makes the connector forget that target and upsert or read it once more
(`HubSpotConnector._associate`); an erasure forgets the person's contact.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

KNOWN_TARGETS_LIMIT = 10_000

Target = tuple[str, str, str]  # (object, id property, key)


def fingerprint(properties: dict[str, Any] | None) -> str:
    """A digest of the properties sent for a target ("" for one only read)."""
    if properties is None:
        return ""
    return _digest(json.dumps(properties, sort_keys=True, default=str))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _slot(target: Target) -> Target:
    object_name, id_property, key = target
    return object_name, id_property, _digest(key)


class KnownTargets:
    """HubSpot id and fingerprint by target, shared by the push threads of one connector."""

    def __init__(self, limit: int = KNOWN_TARGETS_LIMIT) -> None:
        self.limit = limit
        self._known: OrderedDict[Target, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._known)

    def get(self, target: Target, digest: str) -> str | None:
        """The HubSpot id of the target if it was last sent (or read) with this fingerprint."""
        slot = _slot(target)
        with self._lock:
            known = self._known.get(slot)
            if known is None or known[1] != digest:
                return None
            self._known.move_to_end(slot)
            return known[0]

    def remember(self, target: Target, hubspot_id: str, digest: str) -> None:
        slot = _slot(target)
        with self._lock:
            self._known[slot] = (hubspot_id, digest)
            self._known.move_to_end(slot)
            while len(self._known) > self.limit:
                self._known.popitem(last=False)

    def forget(self, targets: Iterable[Target]) -> None:
        slots = [_slot(target) for target in targets]
        with self._lock:
            for slot in slots:
                self._known.pop(slot, None)
