"""Zapier REST hooks: subscribe through the intake routes, deliver to every hook, 410 unsubscribes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet, InvalidToken
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from connectors.base import Person, Record, UnsupportedObject
from connectors.errors import Action
from connectors.http import RetryableError
from connectors.settings import SettingsError
from connectors.zapier import ZapierConnector
from connectors.zapier.connector import MAX_HOOK_ATTEMPTS, hook_payload
from connectors.zapier.errors import TABLE
from connectors.zapier.settings import ZapierSettings
from ennu import crypto
from ennu.db import get_engine
from ennu.models import SyncStatus
from ennu.settings import get_settings, reload_settings
from ennu.zapier_subscriptions import ZapierSubscriptions, delivery_key, target_hash
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
    assert posts(sandbox, "hook-redirect") == 1  # a failure for good: not posted again, not followed


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
    # In trouble: not posted to again for the batch's second record.
    assert posts(sandbox, "hook-middle") == 1 + retries

    answer(sandbox_url, "hook-middle", 200)  # back to a catch hook's success
    again = zapier.push("hooks", "id", [assessment(1), assessment(2)])

    assert [(o.status, o.remote_id) for o in again] == [(SyncStatus.CREATED, "3 hooks")] * 2
    assert [p["id"] for p in payloads(sandbox, "hook-middle")] == ["evt-1", "evt-2"]
    assert len(payloads(sandbox, "hook-a")) == len(payloads(sandbox, "hook-c")) == 2  # never twice
    assert (
        ZapierSubscriptions().attempts(
            [delivery_key("assessment:1", "evt-1"), delivery_key("assessment:2", "evt-2")]
        )
        == {}
    )  # settled: nothing kept


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


def test_a_target_stored_with_a_leading_space_is_posted_normalised_and_the_later_hooks_still_get_it(
    zapier: ZapierConnector, sandbox: Any, sandbox_url: str
) -> None:
    hooks = ZapierSubscriptions()  # stored before subscribe normalised targets
    hooks.add("assessment.completed", f" {sandbox_url}/zapier/hooks/hook-a")
    hooks.add("assessment.completed", f"{sandbox_url}/zapier/hooks/hook-c")

    [outcome] = zapier.push("hooks", "id", [assessment(1)])

    assert (outcome.status, outcome.remote_id) == (SyncStatus.CREATED, "2 hooks")
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


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://hooks.zapier.com/hooks/catch/1/abc/", "not https"),
        ("https://169.254.169.254/latest/meta-data/", "not on a Zapier hook host"),
        ("https://hooks.zapier.com.evil.example/hooks/catch/1/abc/", "not on a Zapier hook host"),
        ("https://hooks.zapier.com./hooks/catch/1/abc/", "not on a Zapier hook host"),
        ("https://user:pw@hooks.zapier.com/hooks/catch/1/abc/", "user info"),
        ("https://hooks.zapier.com@169.254.169.254/hooks/", "user info"),
        ("https://hooks.zapier.com:8443/hooks/catch/1/abc/", "default https port"),
        ("https://hooks.zapier.com:99999/hooks/catch/1/abc/", "not a URL"),
        ("https://hooks.zapier.com/hooks/catch/1/abc/#frag", "fragment"),
        ("https://hooks.zapier.com/hooks/catch/1/a b/", "whitespace"),
        ("https://hooks.zapier.com/hooks/catch/1/abc\n/", "whitespace"),
        ("https://hooks.zapier.com/hooks/catch/1/abc\x00/", "control character"),
        ("https://hooks.zapier.com/hooks/catch/1/\tabc/", "whitespace"),
        ("https://hooks.zapier.com\\@evil.example/", "backslash"),
        ("https://hooks.zapiér.com/hooks/catch/1/abc/", "ASCII"),
        ("SANDBOX/zapier/hooks/../../_sandbox/reset", "not one of the sandbox's hooks"),
        ("SANDBOX/_sandbox/reset", "not one of the sandbox's hooks"),
        ("SANDBOX/zapier/hooks/a?next=x", "not one of the sandbox's hooks"),
    ],
)
def test_subscribe_refuses_what_is_not_a_zapier_hook_without_repeating_it(
    api: TestClient, sandbox_url: str, target: str, reason: str
) -> None:
    target = target.replace("SANDBOX", sandbox_url)
    answer = api.post(
        "/zapier/subscribe", json={"target_url": target, "event": "user.registered"}, headers=ZAPIER_TOKEN
    )
    assert answer.status_code == 422, target
    assert reason in answer.json()["detail"]
    assert target not in answer.text and "hooks/catch" not in answer.text
    assert "sandbox/reset" not in answer.text
    assert ZapierSubscriptions().count() == 0


def test_subscribe_normalises_the_target(api: TestClient) -> None:
    first = subscribe(api, "  https://HOOKS.zapier.com:443/hooks/catch/1/abc/\n")
    again = subscribe(api, "https://hooks.zapier.com/hooks/catch/1/abc/")

    assert first == again
    [stored] = ZapierSubscriptions().list("assessment.completed")
    assert stored.target_url == "https://hooks.zapier.com/hooks/catch/1/abc/"


def test_subscribe_refuses_unknown_events(api: TestClient) -> None:
    unknown = {"target_url": "https://hooks.zapier.com/hooks/catch/1/abc/", "event": "user.exploded"}
    assert api.post("/zapier/subscribe", json=unknown, headers=ZAPIER_TOKEN).status_code == 422


def test_outside_local_mode_the_sandbox_is_no_hook(
    api: TestClient, sandbox_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENNU_ENV", "production")
    reload_settings()
    try:
        answer = api.post(
            "/zapier/subscribe",
            json={"target_url": f"{sandbox_url}/zapier/hooks/hook-a", "event": "user.registered"},
            headers=ZAPIER_TOKEN,
        )
    finally:
        monkeypatch.setenv("ENNU_ENV", "local")
        reload_settings()
    assert answer.status_code == 422 and "not https" in answer.json()["detail"]


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
    assert api.get("/zapier/sample/user.deletion_requested", headers=ZAPIER_TOKEN).status_code == 404


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


# --------------------------------------------------------------------------- hook URLs at rest

HOOK_URL = "https://hooks.zapier.com/hooks/catch/12345/s3cr3tpart/"


def raw_rows(database_url: str) -> list[Any]:
    with get_engine(database_url).connect() as conn:
        return list(conn.exec_driver_sql("SELECT id, target_url, target_hash FROM zapier_subscriptions"))


def test_hook_urls_are_kept_encrypted_and_found_by_their_keyed_hash(database: str) -> None:
    hooks = ZapierSubscriptions()
    first = hooks.add("assessment.completed", HOOK_URL)
    other = hooks.add("health_goal.created", HOOK_URL)

    [*raw] = raw_rows(database)
    assert len(raw) == 2
    for row in raw:
        assert [w for w in ("zapier", "s3cr3t", "http") if w in row.target_url] == []
        assert row.target_hash == target_hash(HOOK_URL) and len(row.target_hash) == 64
    assert raw[0].target_url != raw[1].target_url  # Fernet: no two ciphertexts alike
    assert [s.target_url for s in hooks.list(None)] == [HOOK_URL, HOOK_URL]
    assert hooks.add("assessment.completed", HOOK_URL) == first  # unique per event, found by the hash
    assert hooks.find("health_goal.created", HOOK_URL) == other

    assert hooks.remove_target(HOOK_URL, "assessment.completed") == 1  # unsubscribe by URL
    assert [s.id for s in hooks.list(None)] == [other]
    assert hooks.remove(other) and hooks.count() == 0  # unsubscribe by id


def test_a_data_key_rotation_keeps_every_hook_working(
    database: str, sandbox: Any, sandbox_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = f"{sandbox_url}/zapier/hooks/hook-a"
    hooks = ZapierSubscriptions()
    first = hooks.add("assessment.completed", target)
    [before] = raw_rows(database)

    old = crypto.cipher()  # local mode: the development key
    new = Fernet.generate_key().decode()
    monkeypatch.setenv("ENNU_DATA_KEY", new)
    monkeypatch.setenv("ENNU_DATA_KEYS_PREVIOUS", crypto.DEVELOPMENT_KEY.decode())
    reload_settings()
    assert crypto.rotate(database) == 1
    monkeypatch.delenv("ENNU_DATA_KEYS_PREVIOUS")  # the old key retired
    reload_settings()
    try:
        [after] = raw_rows(database)
        assert after.target_url != before.target_url and after.target_hash == before.target_hash
        assert Fernet(new.encode()).decrypt(after.target_url.encode()).decode() == target
        with pytest.raises(InvalidToken):
            old.decrypt(after.target_url.encode())
        assert hooks.add("assessment.completed", target) == first
        connector = ZapierConnector.from_settings(get_settings(), rate_limited=False)
        try:
            [outcome] = connector.push("hooks", "id", [assessment(1)])
        finally:
            connector.close()
        assert (outcome.status, outcome.remote_id) == (SyncStatus.CREATED, "1 hooks")
        assert [p["id"] for p in payloads(sandbox, "hook-a")] == ["evt-1"]
    finally:
        monkeypatch.delenv("ENNU_DATA_KEY")
        reload_settings()


def alembic(url: str, *, to: str, down: bool = False) -> None:
    from alembic import command
    from alembic.config import Config

    from ennu.db import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = get_engine(url)
    (command.downgrade if down else command.upgrade)(config, to)


def test_migration_0007_encrypts_the_hooks_already_stored_and_its_downgrade_decrypts_them(
    blank_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alembic(blank_database, to="0005")
    with get_engine(blank_database).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO zapier_subscriptions (id, event_type, target_url, created_at) "
                "VALUES ('s-1', 'assessment.completed', :url, CURRENT_TIMESTAMP)"
            ),
            {"url": HOOK_URL},
        )

    alembic(blank_database, to="0007_zapier_hooks")

    [row] = raw_rows(blank_database)
    assert "zapier" not in row.target_url and crypto.decrypt(row.target_url) == HOOK_URL
    assert row.target_hash == target_hash(HOOK_URL)
    monkeypatch.setenv("DATABASE_URL", blank_database)
    reload_settings()
    try:
        hooks = ZapierSubscriptions()
        assert [(s.id, s.target_url) for s in hooks.list("assessment.completed")] == [("s-1", HOOK_URL)]
        assert hooks.add("assessment.completed", HOOK_URL) == "s-1"
    finally:
        monkeypatch.delenv("DATABASE_URL")
        reload_settings()

    alembic(blank_database, to="0005", down=True)

    with get_engine(blank_database).connect() as conn:
        plain = conn.exec_driver_sql("SELECT id, target_url FROM zapier_subscriptions").all()
    assert [tuple(r) for r in plain] == [("s-1", HOOK_URL)]
