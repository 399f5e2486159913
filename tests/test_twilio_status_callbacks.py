"""Twilio status callbacks, from the stand-in's signed POST to the delivery state (both databases).

The stand-in reports a status the way Twilio does (a form POST to the message's StatusCallback, signed with
the account's auth token); the intake verifies and stores it; `webhook-received` applies it: never
backwards, a message that did not arrive a dead letter with Twilio's code, a critical result's an alert.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from fastapi.testclient import TestClient
from sqlalchemy import select

from connectors.twilio.connector import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN
from ennu.db import session_scope
from ennu.models import Delivery, SyncLog, User, WebhookReceipt
from flows.biomarker_updated import biomarker_updated
from flows.health_goal_completed import health_goal_completed
from flows.webhook_received import webhook_received
from sandbox.twilio import twilio_signature
from tasks.status import integration_status
from tests.factories import add_critical_glucose, add_event, add_goal, add_person, zone_at_local_hour
from tests.webhook_signing import BASE, FORM, intake_with

pytestmark = pytest.mark.usefixtures("prefect_server")
CALLBACK = f"{BASE}/webhooks/twilio"


@pytest.fixture()
def api(database: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    # The intake verifies with the token the stand-in signs with, as a site does with its own account's.
    variables = {"TWILIO_AUTH_TOKENS": SANDBOX_AUTH_TOKEN, "TWILIO_STATUS_CALLBACK_URL": CALLBACK}
    with intake_with(monkeypatch, variables) as client:
        yield client


def report(sandbox_url: str, sid: str, status: str, error_code: str | None = None) -> dict[str, Any]:
    """What Twilio would POST for this status (built and signed by the stand-in, delivered by the test)."""
    answer = requests.post(
        f"{sandbox_url}/twilio/_sandbox/status",
        json={"sid": sid, "status": status, "error_code": error_code, "post": False},
        auth=(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN),
        timeout=10,
    )
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def deliver(api: TestClient, callback: dict[str, Any]) -> None:
    response = api.post(
        callback["callback"].removeprefix(BASE),
        content=urlencode(callback["params"]),
        headers={"Content-Type": FORM, "X-Twilio-Signature": callback["signature"]},
    )
    assert response.status_code == 200, response.text


def apply_all() -> dict[str, int]:
    with session_scope() as session:
        ids = list(
            session.execute(select(WebhookReceipt.id).where(WebhookReceipt.processed_at.is_(None))).scalars()
        )
    return webhook_received(receipt_ids=ids)


def twilio_delivery(event_id: str) -> tuple[str, str | None, str | None, str | None]:
    with session_scope() as session:
        row = session.execute(
            select(Delivery).where(Delivery.event_id == event_id, Delivery.integration == "twilio")
        ).scalar_one()
        return row.status, row.vendor_status, row.vendor_error, row.last_error


def daytime_person(**kwargs: Any) -> int:
    user_id = add_person(**kwargs)
    with session_scope() as session:
        session.get(User, user_id).timezone = zone_at_local_hour(13)  # type: ignore[union-attr]
    return user_id


def test_an_undelivered_critical_result_sms_is_a_dead_letter_with_its_code_and_alerts_the_operators(
    api: TestClient, sandbox: Any, sandbox_url: str
) -> None:
    user_id = daytime_person(first_name="Quilla")
    event_id = add_event("biomarker.updated", user_id, add_critical_glucose(user_id))
    biomarker_updated(event_ids=[event_id])
    [message] = sandbox.objects("twilio", "messages")
    assert message["received_form"]["StatusCallback"].startswith(f"{CALLBACK}?event_id={event_id}&")
    notices_before = len(sandbox.bodies("slack"))

    deliver(api, report(sandbox_url, message["sid"], "sent"))
    deliver(api, report(sandbox_url, message["sid"], "undelivered", "30003"))
    assert apply_all() == {"status applied": 1, "not delivered": 1}

    assert twilio_delivery(event_id) == ("failed", "undelivered", "30003", "twilio undelivered (30003)")
    with session_scope() as session:
        failed = session.execute(
            select(SyncLog.status, SyncLog.remote_id, SyncLog.error).where(
                SyncLog.connector == "twilio", SyncLog.status == "failed"
            )
        ).all()
    assert [tuple(r) for r in failed] == [("failed", message["sid"], "twilio undelivered (30003)")]
    status = integration_status("twilio", True)
    assert status.last_error_reason == "twilio undelivered (30003)" and status.deliveries.get("failed") == 1
    alerts = sandbox.bodies("slack")[notices_before:]
    assert len(alerts) == 1
    text = json.dumps(alerts[0]["body"])
    assert "not delivered" in text and "30003" in text
    assert "Quilla" not in text and "452" not in text and "555" not in text  # no name, value or number


def test_statuses_never_go_backwards_and_a_later_final_status_changes_nothing(
    api: TestClient, sandbox: Any, sandbox_url: str
) -> None:
    user_id = daytime_person()
    event_id = add_event("health_goal.completed", user_id, add_goal(user_id, status="completed"))
    health_goal_completed(event_ids=[event_id])
    [message] = sandbox.objects("twilio", "messages")
    slack_before = len(sandbox.bodies("slack"))

    deliver(api, report(sandbox_url, message["sid"], "delivered"))
    deliver(api, report(sandbox_url, message["sid"], "sent"))  # late and out of order
    deliver(api, report(sandbox_url, message["sid"], "undelivered", "30005"))
    deliver(api, report(sandbox_url, message["sid"], "delivered"))  # a redelivery: stored once
    assert apply_all() == {"status applied": 1, "stale status": 2}

    assert twilio_delivery(event_id) == ("delivered", "delivered", None, None)
    assert len(sandbox.bodies("slack")) == slack_before  # not a critical result: no alert


def test_a_failed_goal_sms_fails_its_delivery_without_an_alert_and_a_stray_callback_is_unmatched(
    api: TestClient, sandbox: Any, sandbox_url: str
) -> None:
    user_id = daytime_person()
    event_id = add_event("health_goal.completed", user_id, add_goal(user_id, status="completed"))
    health_goal_completed(event_ids=[event_id])
    [message] = sandbox.objects("twilio", "messages")
    slack_before = len(sandbox.bodies("slack"))

    deliver(api, report(sandbox_url, message["sid"], "failed", "30008"))
    stranger = report(sandbox_url, message["sid"], "read")
    stranger["params"] = {**stranger["params"], "MessageSid": "SMnotours"}
    stranger["callback"] = CALLBACK
    stranger["signature"] = twilio_signature(SANDBOX_AUTH_TOKEN, CALLBACK, stranger["params"])
    deliver(api, stranger)
    assert apply_all() == {"not delivered": 1, "unmatched": 1}

    assert twilio_delivery(event_id)[:3] == ("failed", "failed", "30008")
    assert len(sandbox.bodies("slack")) == slack_before
    with session_scope() as session:
        kept = [r.payload for r in session.execute(select(WebhookReceipt)).scalars()]
    # What is kept of a status callback: ids, status and code, never the numbers.
    assert all("To" not in p and "From" not in p for p in kept)
