"""Remembering which vendor-side definitions (custom properties, merge fields) have been ensured.

A connector that must create definitions at the vendor before its first write computes a fingerprint of
the definitions it needs (`fingerprint`), and checks the vendor only when the fingerprint differs from the
one remembered for the integration: once per deployment change, not on every push and not in every process.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ennu.circuit import ensure_state_row
from ennu.db import session_scope
from ennu.models import IntegrationState


def fingerprint(definitions: Any) -> str:
    """A stable SHA-256 of JSON-serialisable definitions (key order does not matter)."""
    return hashlib.sha256(json.dumps(definitions, sort_keys=True, default=str).encode()).hexdigest()


def is_ensured(integration: str, wanted: str) -> bool:
    with session_scope() as session:
        row = session.get(IntegrationState, integration)
        return row is not None and row.schema_fingerprint == wanted


def remember_ensured(integration: str, wanted: str) -> None:
    ensure_state_row(integration)
    with session_scope() as session:
        row = session.get(IntegrationState, integration)
        assert row is not None
        row.schema_fingerprint = wanted
