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
from connectors.zapier.connector import MAX_HOOK_ATTEMPTS, hook_payload
from connectors.zapier.errors import TABLE
from connectors.zapier.settings import ZapierSettings
from ennu.models import SyncStatus
from ennu.settings import get_settings, reload_settings
from ennu.zapier_subscriptions import ZapierSubscriptions, delivery_key
from intake.zapier import router
from tests.capture import CapturingEndpoint

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


def posts(sandbox: Any, hook: str) -> int:
    """How many posts the stand-in's hook received (kept or not)."""
    return sum(1 for r in sandbox.requests("zapier") if r["path"].rstrip("/") == f"/zapier/hooks/{hook}")


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
    hook = ZapierSubscriptions().add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-a")

    for status in (404, 401, 403):  # a hook's own refusals: never our credentials (we have none)
        sandbox.fail("zapier", "status", status=status, count=1)
        refused = zapier.push("hooks", "id", [assessment(1)])[0]
        assert (refused.status, refused.error) == (SyncStatus.FAILED, f"hook {hook}: http {status}")

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


def answer(sandbox_url: str, hook: str, status: int, location: str | None = None) -> None:
    """Tell the stand-in's hook to answer `status` from now on (200: back to a catch hook's success)."""
    told = requests.post(
        f"{sandbox_url}/zapier/_sandbox/hooks/{hook}/answer",
        json={"status": status, "location": location},
        timeout=5,
    )
    assert told.status_code == 200


@pytest.mark.parametrize("status", [307, 308, 301, 302, 303])
def test_a_hook_that_redirects_is_not_followed_and_the_other_port_receives_nothing(
    zapier: ZapierConnector, sandbox: Any, sandbox_url: str, endpoint: CapturingEndpoint, status: int
) -> None:
    endpoint.answer("POST", "/internal", 200, {"status": "success"})  # what a follower would reach
    hooks = ZapierSubscriptions()
    redirecting = hooks.add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-redirect")
    hooks.add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-b")
    answer(sandbox_url, "hook-redirect", status, location=f"{endpoint.url}/internal")

    [outcome] = zapier.push("hooks", "id", [assessment(1)])

    assert endpoint.requests == []  # counted at the other port's listening socket: nothing arrived
    assert (outcome.status, outcome.error) == (
        SyncStatus.FAILED,
        f"hook {redirecting}: http {status} redirect not followed",
    )
    assert outcome.remote_id == "1 hooks" and [p["id"] for p in payloads(sandbox, "hook-b")] == ["evt-1"]
    assert posts(sandbox, "hook-redirect") == 1  # a redirect is a failure for good: not posted again, not followed


def test_the_shared_client_never_follows_a_redirect(endpoint: CapturingEndpoint, sandbox_url: str) -> None:
    from connectors.http import RedirectRefused, VendorHttp

    endpoint.answer("POST", "/internal", 200, {"ok": True})
    http = VendorHttp("any", sandbox_url)
    try:
        answer(sandbox_url, "hook-r", 307, location=f"{endpoint.url}/internal")
        with pytest.raises(RedirectRefused) as refused:
            http.request("POST", "/zapier/hooks/hook-r", json={"email": "someone@example.com"})
    finally:
        http.close()
    assert refused.value.reason == "http 307 redirect not followed" and "example" not in str(refused.value)
    assert endpoint.requests == []


@pytest.fixture()
def three_hooks(sandbox_url: str) -> list[str]:
    hooks = ZapierSubscriptions()
    return [
        hooks.add("assessment.completed", f"{sandbox_url}/zapier/hooks/{name}")
        for name in ("hook-a", "hook-middle", "hook-c")
    ]


def test_a_failing_middle_hook_never_stops_the_others_and_is_retried_alone(
    zapier: ZapierConnector, sandbox: Any, sandbox_url: str, three_hooks: list[str]
) -> None:
    _, middle, _ = three_hooks
    answer(sandbox_url, "hook-middle", 500)

    first = zapier.push("hooks", "id", [assessment(1), assessment(2)])

    for outcome in first:  # a wait for that hook, not vendor trouble: the circuit and the others go on
        assert (outcome.status, outcome.error) == (SyncStatus.DEFERRED, f"hook {middle}: http 500")
        assert outcome.remote_id == "2 hooks" and outcome.not_before is not None
    assert [p["id"] for p in payloads(sandbox, "hook-a")] == ["evt-1", "evt-2"]
    assert [p["id"] for p in payloads(sandbox, "hook-c")] == ["evt-1", "evt-2"]
    retries = get_settings().http_retries
    assert posts(sandbox, "hook-middle") == 1 + retries  # in trouble: not posted to again for the batch's second record

    answer(sandbox_url, "hook-middle", 200)  # back to a catch hook's success
    again = zapier.push("hooks", "id", [assessment(1), assessment(2)])

    assert [(o.status, o.remote_id) for o in again] == [(SyncStatus.CREATED, "3 hooks")] * 2
    assert [p["id"] for p in payloads(sandbox, "hook-middle")] == ["evt-1", "evt-2"]
    assert len(payloads(sandbox, "hook-a")) == len(payloads(sandbox, "hook-c")) == 2  # never twice
    assert ZapierSubscriptions().attempts(
        [delivery_key("assessment:1", "evt-1"), delivery_key("assessment:2", "evt-2")]
    ) == {}  # settled: nothing kept


def test_a_hook_in_trouble_fails_its_part_after_three_attempts(
    zapier: ZapierConnector, sandbox: Any, sandbox_url: str, three_hooks: list[str]
) -> None:
    _, middle, _ = three_hooks
    answer(sandbox_url, "hook-middle", 503)

    statuses = [zapier.push("hooks", "id", [assessment(1)])[0] for _ in range(MAX_HOOK_ATTEMPTS)]

    assert [o.status for o in statuses] == [SyncStatus.DEFERRED] * (MAX_HOOK_ATTEMPTS - 1) + [
        SyncStatus.FAILED
    ]
    assert statuses[-1].error == f"hook {middle}: http 503 ({MAX_HOOK_ATTEMPTS} attempts)"
    assert len(payloads(sandbox, "hook-a")) == len(payloads(sandbox, "hook-c")) == 1
    assert posts(sandbox, "hook-middle") == MAX_HOOK_ATTEMPTS * (1 + get_settings().http_retries)


def test_a_refused_connection_at_the_middle_hook_never_stops_the_others(
    zapier: ZapierConnector, sandbox: Any, sandbox_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An allow-listed https host where nothing listens (loopback, port 443): the connection is refused.
    monkeypatch.setenv("ZAPIER_HOOK_HOSTS", "hooks.zapier.com,127.0.0.1")
    reload_settings()
    hooks = ZapierSubscriptions()
    hooks.add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-a")
    down = hooks.add("assessment.completed", "https://127.0.0.1/hooks/catch/1/down/")
    hooks.add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-c")

    [outcome] = zapier.push("hooks", "id", [assessment(1)])

    assert (outcome.status, outcome.error) == (SyncStatus.DEFERRED, f"hook {down}: connection error")
    assert len(payloads(sandbox, "hook-a")) == len(payloads(sandbox, "hook-c")) == 1
    monkeypatch.delenv("ZAPIER_HOOK_HOSTS")
    reload_settings()


@pytest.mark.parametrize(
    "stored",
    [
        "http://169.254.169.254/latest/meta-data/",  # never allowed: stored before the check, or by hand
        "https://hooks.zapier.com:8443/hooks/catch/1/abc/",
        "https://hooks.zapier.com/hooks/catch/1/a b/",
        "http://[::1/x",
    ],
)
def test_a_bad_stored_target_is_refused_at_delivery_and_the_others_still_get_the_record(
    zapier: ZapierConnector, sandbox: Any, sandbox_url: str, stored: str
) -> None:
    hooks = ZapierSubscriptions()
    hooks.add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-a")
    bad = hooks.add("assessment.completed", stored)
    hooks.add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-c")

    [outcome] = zapier.push("hooks", "id", [assessment(1)])

    assert outcome.status == SyncStatus.FAILED and outcome.remote_id == "2 hooks"
    assert outcome.error is not None and outcome.error.startswith(f"hook {bad}: stored target refused (")
    assert stored not in outcome.error and "hooks.zapier" not in outcome.error
    assert len(payloads(sandbox, "hook-a")) == len(payloads(sandbox, "hook-c")) == 1


def test_trouble_in_a_batch_where_a_hook_took_something_never_raises(
    zapier: ZapierConnector, sandbox: Any, sandbox_url: str
) -> None:
    subscriptions = ZapierSubscriptions()
    subscriptions.add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-a")
    goals = subscriptions.add("health_goal.created", f"{sandbox_url}/zapier/hooks/hook-goals")
    answer(sandbox_url, "hook-goals", 502)
    goal = Record("health_goal:9", "evt-9", 9, {"id": "evt-9", "event": "health_goal.created"})

    taken, in_trouble, after = zapier.push("hooks", "id", [assessment(1), goal, assessment(3)])

    assert (taken.status, taken.remote_id) == (SyncStatus.CREATED, "1 hooks")
    assert (in_trouble.status, in_trouble.error) == (SyncStatus.DEFERRED, f"hook {goals}: http 502")
    assert (after.status, after.remote_id) == (SyncStatus.CREATED, "1 hooks")  # another hook: not withheld
    assert [p["id"] for p in payloads(sandbox, "hook-a")] == ["evt-1", "evt-3"]


def test_the_error_table_keeps_every_hook_answer_to_that_hook() -> None:
    assert TABLE.expect("per hook") >= {400, 401, 403, 404, 410, 413, 422}
    assert not TABLE.expect("per hook") & {408, 425, 429}
    assert TABLE.action(401) is Action.BATCH and TABLE.action(403) is Action.BATCH
    assert TABLE.action(429) is Action.RATE_LIMITED and TABLE.action(502) is Action.RETRY


def test_settings_and_objects_are_declared(
    zapier: ZapierConnector, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ZapierConnector.batch_sizes == {"hooks": 50} and ZapierConnector.has_credentials()
    monkeypatch.setenv("ZAPIER_REQUESTS_PER_HOUR", "600")
    assert ZapierSettings.load().requests_per_hour == 600
    monkeypatch.setenv("ZAPIER_REQUESTS_PER_HOUR", "0")
    with pytest.raises(SettingsError, match="ZAPIER_REQUESTS_PER_HOUR"):
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
