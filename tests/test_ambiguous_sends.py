"""Every registered connector says what becomes of a send that may have reached the vendor unanswered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args

import pytest

from connectors.base import AmbiguousSends, Connector, Record
from connectors.registry import CONNECTORS, build_connector


@pytest.mark.parametrize("name", sorted(CONNECTORS))
def test_a_connector_reconciles_exactly_when_it_says_so(name: str) -> None:
    connector = CONNECTORS[name]
    assert connector.ambiguous_sends in get_args(AmbiguousSends)
    assert (connector.reconcile is not Connector.reconcile) == (connector.ambiguous_sends == "reconcile")


def test_only_vendors_without_idempotency_keys_reconcile_or_resend() -> None:
    assert {name: c.ambiguous_sends for name, c in CONNECTORS.items()} == {
        "hubspot": "idempotent",
        "mailchimp": "idempotent",
        "salesforce": "idempotent",
        "stripe": "idempotent",
        "epic_fhir": "idempotent",
        "twilio": "reconcile",
        "zapier": "resend",
        "slack": "resend_unless_orphaned",
        "teams": "resend_unless_orphaned",
        "ga4": "resend_unless_orphaned",
    }


def test_a_connector_that_does_not_reconcile_finds_nothing_and_asks_nobody(sandbox: Any) -> None:
    hubspot = build_connector("hubspot", rate_limited=False)
    record = Record("user:1", "evt-1", 1, {"email": "person1@example.com"})
    assert hubspot.reconcile("contacts", [record], datetime.now(UTC)) == {}
    assert sandbox.requests("hubspot") == []
    hubspot.close()
