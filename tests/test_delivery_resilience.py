"""Vendor trouble: 5xx for a while, 429 with Retry-After, an open circuit; nothing lost, nothing twice."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from ennu import circuit
from ennu.db import session_scope
from ennu.models import Delivery, IntegrationState, OutboxEvent, SyncLog
from flows.assessment_completed import assessment_completed
from flows.drain import drain
from tests.factories import person_with_assessment

pytestmark = pytest.mark.usefixtures("prefect_server")


def statuses(connector: str) -> list[str]:
    with session_scope() as session:
        return list(
            session.execute(
                select(SyncLog.status).where(SyncLog.connector == connector).order_by(SyncLog.id)
            ).scalars()
        )


def test_503_for_a_while_then_recovery_delivers_every_record_once(database: str, sandbox: Any) -> None:
    event_ids = [person_with_assessment()[2] for _ in range(5)]
    sandbox.fail("hubspot", mode="status", status=503, count=2)

    assessment_completed(event_ids=event_ids)

    hubspot_answers = [r["status"] for r in sandbox.requests("hubspot")]
    assert hubspot_answers == [503, 503, 200]
    assert len(sandbox.objects("hubspot", "contacts")) == 5
    assert statuses("hubspot") == ["created"] * 5


def test_retry_after_of_a_429_is_honoured(sqlite_database: str, sandbox: Any) -> None:
    event_ids = [person_with_assessment()[2] for _ in range(150)]  # two HubSpot batches
    sandbox.set_rate("hubspot", per_second=0.2, retry_after=5)  # one request per 5 s, and it says so

    assessment_completed(event_ids=event_ids)

    log = sandbox.requests("hubspot")
    limited = [r for r in log if r["status"] == 429]
    assert limited, "the second concurrent batch should have met the rate limit"
    first_429 = datetime.fromisoformat(limited[0]["at"])
    later_successes = [
        datetime.fromisoformat(r["at"])
        for r in log
        if r["status"] == 200 and datetime.fromisoformat(r["at"]) > first_429
    ]
    # The refused batch was sent again after the vendor's wait (the other batch may have gone meanwhile).
    assert later_successes and (later_successes[-1] - first_429).total_seconds() >= 5
    assert len(sandbox.objects("hubspot", "contacts")) == 150


def test_outage_beyond_retries_defers_then_the_drain_delivers_once(
    database: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENNU_HTTP_RETRIES", "1")
    # One push (one batch) fails once its request's retries are spent: that failure opens the breaker.
    monkeypatch.setenv("ENNU_CIRCUIT_FAILURE_THRESHOLD", "1")
    from ennu.settings import reload_settings

    reload_settings()
    event_ids = [person_with_assessment()[2] for _ in range(3)]
    sandbox.fail("hubspot", mode="status", status=503)

    assessment_completed(event_ids=event_ids)

    assert statuses("hubspot") == ["deferred"] * 3
    assert statuses("mailchimp") == ["created"] * 3
    # The breaker opened (its first open period is short: it may have passed by now).
    assert circuit.circuit_state("hubspot").opened_until is not None
    with session_scope() as session:
        assert {e.status for e in session.execute(select(OutboxEvent)).scalars()} == {"pending"}
        states = session.execute(select(Delivery.integration, Delivery.status)).tuples().all()
        assert {s for i, s in states if i == "hubspot"} == {"deferred"}
        assert {s for i, s in states if i == "mailchimp"} == {"delivered"}

    sandbox.heal("hubspot")
    circuit.reset_circuit("hubspot")
    drain()

    assert len(sandbox.objects("hubspot", "contacts")) == 3
    assert statuses("hubspot") == ["deferred"] * 3 + ["created"] * 3
    assert statuses("mailchimp") == ["created"] * 3  # settled: the retry does not send it again
    with session_scope() as session:
        assert {e.status for e in session.execute(select(OutboxEvent)).scalars()} == {"done"}


def test_open_circuit_defers_without_calling_the_vendor(
    sqlite_database: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENNU_CIRCUIT_FAILURE_THRESHOLD", "1")
    from ennu.settings import reload_settings

    reload_settings()
    circuit.record_failure("hubspot", "http 503")
    event_id = person_with_assessment()[2]

    assessment_completed(event_ids=[event_id])

    assert sandbox.requests("hubspot") == []
    assert statuses("hubspot") == ["deferred"]


def test_failures_of_calls_under_way_when_the_circuit_opened_do_not_lengthen_it(
    sqlite_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight pushes failing together open the circuit once, for the first probe period; only a failed probe
    (a call after the period) doubles it."""
    monkeypatch.setenv("ENNU_CIRCUIT_FAILURE_THRESHOLD", "1")
    monkeypatch.setenv("ENNU_CIRCUIT_PROBE_SECONDS", "5")
    from ennu.settings import reload_settings

    reload_settings()
    opened = [circuit.record_failure("hubspot", "http 503") for _ in range(8)]
    first = circuit.circuit_state("hubspot")
    assert opened == [True] + [False] * 7
    assert first.consecutive_failures == 1 and first.open
    assert first.opened_until is not None and first.last_error_at is not None
    assert first.opened_until - first.last_error_at <= timedelta(seconds=5)

    with session_scope() as session:  # the probe period has passed: the next failure is the probe's
        session.execute(
            update(IntegrationState)
            .where(IntegrationState.integration == "hubspot")
            .values(opened_until=first.last_error_at)
        )
    circuit.forget_cached_states()
    assert circuit.record_failure("hubspot", "http 503")
    again = circuit.circuit_state("hubspot")
    assert again.consecutive_failures == 2 and again.open
    assert again.opened_until is not None and again.last_error_at is not None
    assert timedelta(seconds=9) < again.opened_until - again.last_error_at <= timedelta(seconds=10)


def test_a_push_of_several_batches_hands_each_back_and_one_that_fails_fails_alone(
    sqlite_database: str, sandbox: Any
) -> None:
    from prefect import flow

    from connectors.base import Outcome, Record
    from connectors.http import RetryableError
    from flows.pipeline import PUSH_RUNNER
    from tasks.push import push_batches

    batches = [
        [Record(f"user:{b}{n}", None, None, {"email": f"p{b}-{n}@example.com"}) for n in range(2)]
        for b in range(3)
    ]
    reports: dict[int, list[Outcome] | Exception] = {}

    def report(index: int, result: list[Outcome] | Exception) -> None:
        reports[index] = result
        if index == 0:  # the next batch meets an outage that outlasts the client's retries
            sandbox.fail("hubspot", mode="status", status=503, count=3)

    @flow(task_runner=PUSH_RUNNER)
    def pushing() -> bool:
        state = push_batches("hubspot", "contacts", "email", batches, report, return_state=True)
        return state.is_failed()

    assert pushing()  # the task shows the failed batch
    assert isinstance(reports[1], RetryableError)
    assert [[o.status.value for o in reports[i]] for i in (0, 2)] == [["created"] * 2] * 2  # type: ignore[union-attr]
    assert len(sandbox.objects("hubspot", "contacts")) == 4
