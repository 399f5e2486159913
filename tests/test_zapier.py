"""Zapier REST hooks: subscribe through the intake routes, deliver to every hook, 410 unsubscribes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient

from connectors.base import Person, Record
from connectors.http import RetryableError
from connectors.zapier import ZapierConnector, hook_payload
from connectors.zapier_store import ZapierSubscriptions
from ennu.models import SyncStatus
from ennu.settings import get_settings
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


def test_a_refusing_hook_fails_the_record_and_a_failing_one_is_retried(
    zapier: ZapierConnector, sandbox: Any, sandbox_url: str
) -> None:
    ZapierSubscriptions().add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-a")

    sandbox.fail("zapier", "status", status=404, count=1)
    refused = zapier.push("hooks", "id", [assessment(1)])[0]
    assert (refused.status, refused.error) == (SyncStatus.FAILED, "http 404")

    sandbox.fail("zapier", "status", status=503, count=1)
    with pytest.raises(RetryableError):
        zapier.push("hooks", "id", [assessment(2)])
    assert zapier.push("hooks", "id", [assessment(2)])[0].status == SyncStatus.CREATED


def test_a_retried_record_skips_the_hooks_that_already_took_it(
    zapier: ZapierConnector, sandbox: Any, sandbox_url: str
) -> None:
    subscriptions = ZapierSubscriptions()
    subscriptions.add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-a")
    unreachable = subscriptions.add("assessment.completed", "http://127.0.0.1:9/hooks/down")

    with pytest.raises(RetryableError):
        zapier.push("hooks", "id", [assessment(1)])  # hook-a took it, the other hook could not be reached
    subscriptions.remove(unreachable)
    retried = zapier.push(
        "hooks", "id", [assessment(1)]
    )  # the same record again, as Prefect's retry sends it

    assert retried[0].status == SyncStatus.CREATED
    assert len(payloads(sandbox, "hook-a")) == 1


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
