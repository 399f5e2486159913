"""Every registered connector says what becomes of a send that may have reached the vendor unanswered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args

import pytest

from connectors.base import AmbiguousSends, Connector, Record, sends_marked_by
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
        "zapier": "resend_unless_orphaned",
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


class CountedSlots:
    """A rate limit that grants every slot at once and notes when it was asked (the order is the point)."""

    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    def acquire(self) -> None:
        self.seen.append("slot")


@pytest.mark.parametrize("name", ["slack", "ga4"])
def test_a_send_is_marked_after_its_rate_limit_slot_and_once_across_retries(name: str, sandbox: Any) -> None:
    """A worker killed while its request waits for a slot has marked nothing (it is offered again, not
    orphaned); a retried request is marked once."""
    connector = build_connector(name, rate_limited=False)
    seen: list[Any] = []
    connector.http.rate_limit = CountedSlots(seen)  # type: ignore[attr-defined]
    fields = (
        {"title": "Notice", "text": "assessment", "band": "low"}
        if name == "slack"
        else {"client_id": "c-1", "name": "assessment_completed", "params.event_id": "evt-1"}
    )
    record = Record("notice:1", "evt-1", 1, fields)
    upsert_key = connector.objects[0].upsert_keys[0] if connector.objects[0].upsert_keys else "title"
    sandbox.fail(name, mode="status", status=503, count=1)
    with sends_marked_by(lambda records: seen.append(("mark", [r.record_key for r in records]))):
        outcomes = connector.push(connector.objects[0].name, upsert_key, [record])
    connector.close()
    assert [o.status.value for o in outcomes] == ["created"]
    assert seen == ["slot", ("mark", ["notice:1"]), "slot"]
    assert sandbox.request_count(name) == 2


def test_a_zapier_record_is_marked_once_after_its_first_slot_whatever_its_hooks(
    sqlite_database: str, sandbox: Any, sandbox_url: str
) -> None:
    """Each record's delivery is marked just before its first post leaves (a worker killed before that
    has marked nothing); its other hooks' posts mark nothing more, and each record is marked for itself."""
    from ennu.zapier_subscriptions import ZapierSubscriptions

    for hook in ("zap-a", "zap-b"):
        ZapierSubscriptions().add("assessment.completed", f"{sandbox_url}/zapier/hooks/{hook}")
    connector = build_connector("zapier", rate_limited=False)
    seen: list[Any] = []
    connector.http.rate_limit = CountedSlots(seen)  # type: ignore[attr-defined]
    records = [
        Record(f"assessment:{n}", f"evt-{n}", n, {"id": f"evt-{n}", "event": "assessment.completed"})
        for n in (1, 2)
    ]
    with sends_marked_by(lambda marked: seen.append(("mark", [r.record_key for r in marked]))):
        outcomes = connector.push("hooks", "id", records)
    connector.close()
    assert [(o.status.value, o.remote_id) for o in outcomes] == [("created", "2 hooks")] * 2
    assert seen == [
        "slot",
        ("mark", ["assessment:1"]),
        "slot",
        "slot",
        ("mark", ["assessment:2"]),
        "slot",
    ]
    assert sandbox.request_count("zapier") == 4
