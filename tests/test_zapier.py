"""Zapier REST hooks: subscribe through the intake routes, deliver to every hook, 410 unsubscribes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient

from connectors.base import Outcome, Person, Record, UnsupportedObject
from connectors.errors import Action
from connectors.http import RetryableError
from connectors.settings import SettingsError
from connectors.zapier import ZapierConnector
from connectors.zapier.connector import hook_payload
from connectors.zapier.errors import TABLE
from connectors.zapier.settings import ZapierSettings
from ennu.models import SyncStatus
from ennu.settings import get_settings
from ennu.zapier_subscriptions import ZapierSubscriptions
from intake.zapier import router

ZAPIER_TOKEN = {"X-Zapier-Token": "zap-secret-token"}


def assessment(n: int) -> Record:
    return Record(
        f"assessment:{n}",
        f"evt-{n}",
        n,
        {
            "id": f"evt-{n}",
            "event": "assessment.completed",
            "user_id": n,
            "assessment.id": 100 + n,
            "assessment.type": "sleep",
            "assessment.overall_score": 7.5,
        },
    )


@pytest.fixture()
def api(sqlite_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("ZAPIER_TOKEN", "zap-secret-token")
    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client:
        yield client


@pytest.fixture()
def zapier(sqlite_database: str, sandbox: Any) -> Iterator[ZapierConnector]:
    connector = ZapierConnector.from_settings(get_settings(), rate_limited=False)
    yield connector
    connector.close()


def subscribe(api: TestClient, target_url: str, event: str = "assessment.completed") -> str:
    response = api.post(
        "/zapier/subscribe", json={"target_url": target_url, "event": event}, headers=ZAPIER_TOKEN
    )
    assert response.status_code == 201, response.text
    subscription_id: str = response.json()["id"]
    return subscription_id


def payloads(sandbox: Any, hook: str) -> list[Any]:
    return [p["payload"] for p in sandbox.objects("zapier", "payloads") if p["hook_id"] == hook]


def test_subscribe_deliver_to_every_hook_and_410_removes_the_subscription(
    api: TestClient, zapier: ZapierConnector, sandbox: Any, sandbox_url: str
) -> None:
    first = subscribe(api, f"{sandbox_url}/zapier/hooks/hook-a")
    second = subscribe(api, f"{sandbox_url}/zapier/hooks/hook-b")
    subscribe(api, f"{sandbox_url}/zapier/hooks/hook-goals", event="health_goal.created")
    assert (
        subscribe(api, f"{sandbox_url}/zapier/hooks/hook-a") == first
    )  # subscribing twice is one subscription

    delivered = zapier.push("hooks", "id", [assessment(1)])

    assert (delivered[0].status, delivered[0].remote_id) == (SyncStatus.CREATED, "2 hooks")
    expected = {
        "id": "evt-1",
        "event": "assessment.completed",
        "user_id": 1,
        "assessment": {"id": 101, "type": "sleep", "overall_score": 7.5},
    }
    assert payloads(sandbox, "hook-a") == payloads(sandbox, "hook-b") == [expected]
    assert payloads(sandbox, "hook-goals") == []

    gone = requests.post(f"{sandbox_url}/zapier/_sandbox/hooks/hook-b/gone", timeout=5)  # its Zap turned off
    assert gone.status_code == 200

    again = zapier.push("hooks", "id", [assessment(2)])

    assert again[0].status == SyncStatus.CREATED and again[0].remote_id == "1 hooks"
    assert [s.id for s in ZapierSubscriptions().list("assessment.completed")] == [first]
    assert second not in {s.id for s in ZapierSubscriptions().list("assessment.completed")}
    assert len(payloads(sandbox, "hook-a")) == 2 and len(payloads(sandbox, "hook-b")) == 1


def test_without_subscriptions_nothing_is_sent(zapier: ZapierConnector, sandbox: Any) -> None:
    outcome = zapier.push("hooks", "id", [assessment(1)])[0]

    assert (outcome.status, outcome.error) == (SyncStatus.SKIPPED, "no zapier subscription")
    assert sandbox.requests("zapier") == []


def test_a_refusing_hook_fails_the_record_and_a_failing_one_is_posted_again(
    zapier: ZapierConnector, sandbox: Any, sandbox_url: str
) -> None:
    ZapierSubscriptions().add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-a")

    for status in (404, 401, 403):  # a hook's own refusals: never our credentials (we have none)
        sandbox.fail("zapier", "status", status=status, count=1)
        refused = zapier.push("hooks", "id", [assessment(1)])[0]
        assert (refused.status, refused.error) == (SyncStatus.FAILED, f"http {status}")

    sandbox.fail("zapier", "status", status=503, count=1)  # the client posts again at once
    assert zapier.push("hooks", "id", [assessment(2)])[0].status == SyncStatus.CREATED
    assert len(payloads(sandbox, "hook-a")) == 1


def test_trouble_outlasting_the_retries_raises_while_no_hook_took_anything(
    zapier: ZapierConnector, sandbox: Any, sandbox_url: str
) -> None:
    ZapierSubscriptions().add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-a")
    retries = get_settings().http_retries
    sandbox.fail("zapier", "status", status=503, count=retries + 1)
    with pytest.raises(RetryableError):
        zapier.push("hooks", "id", [assessment(1), assessment(2)])
    assert payloads(sandbox, "hook-a") == [] and len(sandbox.requests("zapier")) == retries + 1


def test_trouble_after_a_hook_took_a_record_defers_the_rest_instead_of_raising(
    zapier: ZapierConnector, sandbox: Any, sandbox_url: str
) -> None:
    # No memo of what went (the batch is never retried whole by Prefect any more): what a hook took is
    # an outcome, so that the delivery engine's next offer carries only the records not delivered.
    subscriptions = ZapierSubscriptions()
    subscriptions.add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-a")
    subscriptions.add("health_goal.created", f"{sandbox_url}/zapier/hooks/hook-goals")
    subscriptions.add("health_goal.created", "http://127.0.0.1:9/hooks/down")  # refuses connections
    goal = Record("health_goal:9", "evt-9", 9, {"id": "evt-9", "event": "health_goal.created"})

    taken, in_trouble, unsent = zapier.push("hooks", "id", [assessment(1), goal, assessment(3)])

    assert (taken.status, taken.remote_id) == (SyncStatus.CREATED, "1 hooks")
    assert in_trouble == Outcome("health_goal:9", SyncStatus.DEFERRED, error="connection error")
    assert unsent == Outcome("assessment:3", SyncStatus.DEFERRED, error="connection error")
    assert [p["id"] for p in payloads(sandbox, "hook-a")] == ["evt-1"]  # never assessment 3
    # The record in trouble goes again to each of its hooks next time: at least once, `id` de-duplicates.
    assert [p["id"] for p in payloads(sandbox, "hook-goals")] == ["evt-9"]


def test_the_error_table_keeps_every_hook_answer_to_that_hook() -> None:
    assert TABLE.expect("per hook") >= {400, 401, 403, 404, 410, 413, 422}
    assert not TABLE.expect("per hook") & {408, 425, 429}
    assert TABLE.action(401) is Action.BATCH and TABLE.action(403) is Action.BATCH
    assert TABLE.action(429) is Action.RATE_LIMITED and TABLE.action(502) is Action.RETRY


def test_settings_and_objects_are_declared(
    zapier: ZapierConnector, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ZapierConnector.batch_sizes == {"hooks": 50} and ZapierConnector.has_credentials()
    monkeypatch.setenv("ZAPIER_RATE_LIMIT", "600/1h")
    assert str(ZapierSettings.load().rate_limit) == "600/1h"
    monkeypatch.setenv("ZAPIER_RATE_LIMIT", "0")
    with pytest.raises(SettingsError, match="ZAPIER_RATE_LIMIT"):
        ZapierSettings.load()
    with pytest.raises(UnsupportedObject):
        zapier.push("zaps", "id", [assessment(1)])
    assert sandbox.requests("zapier") == []


def test_the_routes_need_the_zapier_token(api: TestClient) -> None:
    body = {"target_url": "https://hooks.zapier.com/hooks/catch/1/abc/", "event": "assessment.completed"}
    assert api.post("/zapier/subscribe", json=body).status_code == 401
    assert api.post("/zapier/subscribe", json=body, headers={"X-Zapier-Token": "nope"}).status_code == 401
    assert api.get("/zapier/sample/assessment.completed").status_code == 401
    assert api.post("/zapier/subscribe", json=body, headers=ZAPIER_TOKEN).status_code == 201


def test_subscribe_refuses_other_hosts_and_unknown_events(api: TestClient, sandbox_url: str) -> None:
    for target in (
        "http://hooks.zapier.com/hooks/catch/1/abc/",
        "https://169.254.169.254/latest/meta-data/",
        "https://user:pw@hooks.zapier.com/hooks/catch/1/abc/",
        f"{sandbox_url}/zapier/hooks/../../_sandbox/reset",
        f"{sandbox_url}/_sandbox/reset",
    ):
        answer = api.post(
            "/zapier/subscribe", json={"target_url": target, "event": "user.registered"}, headers=ZAPIER_TOKEN
        )
        assert answer.status_code == 422, target
        assert target not in answer.text
    unknown = {"target_url": "https://hooks.zapier.com/hooks/catch/1/abc/", "event": "user.exploded"}
    assert api.post("/zapier/subscribe", json=unknown, headers=ZAPIER_TOKEN).status_code == 422


def test_unsubscribe_removes_the_hook(api: TestClient) -> None:
    subscription = subscribe(api, "https://hooks.zapier.com/hooks/catch/1/abc/")

    assert api.delete(f"/zapier/subscribe/{subscription}", headers=ZAPIER_TOKEN).status_code == 204
    assert api.delete(f"/zapier/subscribe/{subscription}", headers=ZAPIER_TOKEN).status_code == 404
    assert ZapierSubscriptions().list("assessment.completed") == []


def test_the_sample_is_one_payload_mapped_like_deliveries(api: TestClient) -> None:
    from ennu.pseudonyms import person_pseudonym

    answer = api.get("/zapier/sample/assessment.completed", headers=ZAPIER_TOKEN)

    assert answer.status_code == 200
    [sample] = answer.json()
    assert sample == {
        "id": "evt-sample-0001",
        "event": "assessment.completed",
        "user_id": person_pseudonym(1),  # a keyed pseudonym, never the host id
        "assessment": {"id": 1, "type": "sleep", "completed_on": "2026-01-15", "overall_score": 7.4},
    }
    assert api.get("/zapier/sample/biomarker.updated", headers=ZAPIER_TOKEN).status_code == 404


def test_an_erasure_notice_with_the_pseudonymous_id_reaches_every_hook_once(
    api: TestClient, zapier: ZapierConnector, sandbox: Any, sandbox_url: str
) -> None:
    from ennu.pseudonyms import person_pseudonym

    subscribe(api, f"{sandbox_url}/zapier/hooks/hook-a")
    subscribe(api, f"{sandbox_url}/zapier/hooks/hook-a", event="health_goal.created")
    subscribe(api, f"{sandbox_url}/zapier/hooks/hook-goals", event="health_goal.created")

    outcome = zapier.erase(Person(user_id=1))

    assert (outcome.status, outcome.remote_id) == (SyncStatus.ERASED, "2 hooks notified")
    notice = {
        "id": f"user.erased:{person_pseudonym(1)}",
        "event": "user.erased",
        "user_id": person_pseudonym(1),
    }
    assert payloads(sandbox, "hook-a") == payloads(sandbox, "hook-goals") == [notice]
    check = zapier.test_connection()
    assert check.ok and check.detail == "3 hook subscriptions"


def test_hook_payload_nests_dotted_names() -> None:
    assert hook_payload({"a.b": 1, "a.c": None, "d": "x"}) == {"a": {"b": 1, "c": None}, "d": "x"}
