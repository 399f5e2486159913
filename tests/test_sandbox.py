"""The sandbox speaks like the vendors (auth, batch limits, error shapes, member hashes); faults on cue."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from sandbox.__main__ import main
from sandbox.client import SandboxClient
from sandbox.faults import FaultMode
from sandbox.server import RunningSandbox, start_sandbox
from tests.engine_support import wait_for

HUBSPOT = {"Authorization": "Bearer sandbox-hubspot-token"}
MAILCHIMP = ("anystring", "sandbox-key-us1")
JANE_HASH = "0cba00ca3da1b283a57287bcceb17e35"  # md5("jane.doe@example.com")


@pytest.fixture(scope="module")
def running() -> Iterator[RunningSandbox]:
    with start_sandbox() as sandbox:
        yield sandbox


@pytest.fixture()
def control(running: RunningSandbox) -> Iterator[SandboxClient]:
    with SandboxClient(running.url) as client:
        client.reset()
        yield client


@pytest.fixture()
def hubspot(running: RunningSandbox, control: SandboxClient) -> str:
    return f"{running.url}/hubspot"


@pytest.fixture()
def mailchimp(running: RunningSandbox, control: SandboxClient) -> str:
    return f"{running.url}/mailchimp/3.0"


def upsert(hubspot: str, inputs: list[dict[str, Any]], timeout: float = 5) -> requests.Response:
    return requests.post(
        f"{hubspot}/crm/v3/objects/contacts/batch/upsert",
        json={"inputs": inputs},
        headers=HUBSPOT,
        timeout=timeout,
    )


def contact(email: str, **properties: Any) -> dict[str, Any]:
    return {"id": email, "idProperty": "email", "properties": {"email": email, **properties}}


def subscribe(
    mailchimp: str, members: list[dict[str, Any]], update_existing: bool = True
) -> requests.Response:
    body = {"members": members, "update_existing": update_existing}
    return requests.post(f"{mailchimp}/lists/sandbox-list", json=body, auth=MAILCHIMP, timeout=5)


# --- auth ---------------------------------------------------------------------------------------------------


def test_hubspot_refuses_missing_or_wrong_tokens(hubspot: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic c2FuZGJveA=="}):
        response = requests.get(f"{hubspot}/account-info/v3/details", headers=headers, timeout=5)
        assert response.status_code == 401
        body = response.json()
        assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
        assert body["correlationId"] and body["message"]
    details = requests.get(f"{hubspot}/account-info/v3/details", headers=HUBSPOT, timeout=5).json()
    assert details["accountType"] == "STANDARD" and isinstance(details["portalId"], int)


def test_mailchimp_refuses_a_wrong_key_with_problem_json(mailchimp: str) -> None:
    for auth in (None, ("anystring", "wrong-us1")):
        response = requests.get(f"{mailchimp}/ping", auth=auth, timeout=5)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["title"] == "API Key Invalid" and problem["status"] == 401
        assert {"type", "detail", "instance"} <= set(problem)
    ping = requests.get(f"{mailchimp}/ping", auth=MAILCHIMP, timeout=5)
    assert ping.json() == {"health_status": "Everything's Chimpy!"}


# --- HubSpot ------------------------------------------------------------------------------------------------


def test_hubspot_batch_upsert_creates_then_updates_the_same_contact(
    hubspot: str, control: SandboxClient
) -> None:
    first = upsert(hubspot, [contact("Ada@Example.com", firstname="Ada", score=7.4)])
    assert first.status_code == 200
    created = first.json()
    assert created["status"] == "COMPLETE" and {"startedAt", "completedAt"} <= set(created)
    [result] = created["results"]
    assert result["new"] is True and result["id"].isdigit() and result["archived"] is False
    assert result["properties"]["email"] == "ada@example.com"
    assert result["properties"]["score"] == "7.4"  # HubSpot keeps property values as strings

    second = upsert(hubspot, [contact("ada@example.com", lastname="Lovelace")]).json()["results"][0]
    assert second["new"] is False and second["id"] == result["id"]
    assert second["properties"]["firstname"] == "Ada" and second["properties"]["lastname"] == "Lovelace"

    [stored] = control.objects("hubspot", "contacts")
    assert stored["id"] == result["id"]
    by_email = requests.get(
        f"{hubspot}/crm/v3/objects/contacts/ada@example.com",
        params={"idProperty": "email", "properties": "lastname"},
        headers=HUBSPOT,
        timeout=5,
    ).json()
    assert by_email["properties"]["lastname"] == "Lovelace" and by_email["id"] == result["id"]
    by_id = requests.get(f"{hubspot}/crm/v3/objects/contacts/{result['id']}", headers=HUBSPOT, timeout=5)
    assert by_id.json()["properties"]["firstname"] == "Ada"


def test_hubspot_batch_limit_and_duplicate_ids_are_refused(hubspot: str, control: SandboxClient) -> None:
    too_many = upsert(hubspot, [contact(f"p{i}@example.com") for i in range(101)])
    assert too_many.status_code == 400 and too_many.json()["category"] == "VALIDATION_ERROR"
    twice = upsert(hubspot, [contact("p1@example.com"), contact("P1@example.com")])
    assert twice.status_code == 400
    assert upsert(hubspot, [contact(f"p{i}@example.com") for i in range(100)]).status_code == 200
    assert len(control.objects("hubspot", "contacts")) == 100


def test_hubspot_invalid_inputs_give_207_while_the_others_succeed(
    hubspot: str, control: SandboxClient
) -> None:
    response = upsert(
        hubspot,
        [
            contact("good@example.com"),
            contact("not-an-email"),
            {"id": "x@example.com", "idProperty": "firstname", "properties": {}},
        ],
    )
    assert response.status_code == 207
    body = response.json()
    assert [r["properties"]["email"] for r in body["results"]] == ["good@example.com"]
    assert body["numErrors"] == 2
    assert all(e["category"] == "VALIDATION_ERROR" and e["status"] == "error" for e in body["errors"])
    assert body["errors"][0]["context"] == {"ids": ["not-an-email"]}
    assert "not-an-email" not in body["errors"][0]["message"]
    assert [c["properties"]["email"] for c in control.objects("hubspot", "contacts")] == ["good@example.com"]


def test_hubspot_gdpr_delete_removes_the_contact(hubspot: str, control: SandboxClient) -> None:
    upsert(hubspot, [contact("gone@example.com")])
    url = f"{hubspot}/crm/v3/objects/contacts/gdpr-delete"
    body = {"objectId": "gone@example.com", "idProperty": "email"}
    assert requests.post(url, json=body, headers=HUBSPOT, timeout=5).status_code == 204
    assert control.objects("hubspot", "contacts") == []
    assert requests.post(url, json=body, headers=HUBSPOT, timeout=5).status_code == 404


def test_hubspot_unique_values_and_id_lookups_follow_every_write(hubspot: str) -> None:
    """The stand-in's indexes (a bulk upsert reads no other object) agree with the objects after each
    kind of write: a batch upsert, a PATCH, an archive."""
    created = requests.post(
        f"{hubspot}/crm/v3/properties/contacts/batch/create",
        json={
            "inputs": [
                {
                    "name": "ennu_user_id",
                    "label": "Id",
                    "type": "string",
                    "fieldType": "text",
                    "groupName": "contactinformation",
                    "hasUniqueValue": True,
                }
            ]
        },
        headers=HUBSPOT,
        timeout=5,
    )
    assert created.status_code == 201
    first = upsert(hubspot, [contact("a@example.com", ennu_user_id="7")]).json()["results"][0]
    clash = upsert(hubspot, [contact("b@example.com", ennu_user_id="7")]).json()
    assert [e["category"] for e in clash["errors"]] == ["CONFLICT"]
    moved = requests.patch(
        f"{hubspot}/crm/v3/objects/contacts/{first['id']}",
        json={"properties": {"ennu_user_id": "8"}},
        headers=HUBSPOT,
        timeout=5,
    )
    assert moved.status_code == 200
    assert "errors" not in upsert(hubspot, [contact("b@example.com", ennu_user_id="7")]).json()
    again = upsert(hubspot, [contact("c@example.com", ennu_user_id="8")]).json()
    assert [e["category"] for e in again["errors"]] == ["CONFLICT"]
    by_id = f"{hubspot}/crm/v3/objects/contacts/8?idProperty=ennu_user_id"
    assert requests.get(by_id, headers=HUBSPOT, timeout=5).json()["id"] == first["id"]
    archived = requests.post(
        f"{hubspot}/crm/v3/objects/contacts/batch/archive",
        json={"inputs": [{"id": first["id"]}]},
        headers=HUBSPOT,
        timeout=5,
    )
    assert archived.status_code == 204
    assert requests.get(by_id, headers=HUBSPOT, timeout=5).status_code == 404
    assert "errors" not in upsert(hubspot, [contact("c@example.com", ennu_user_id="8")]).json()


def test_vendor_errors_keep_the_vendor_shape_for_bad_json_and_unknown_paths(
    hubspot: str, mailchimp: str
) -> None:
    bad = requests.post(
        f"{hubspot}/crm/v3/objects/contacts/batch/upsert", data="{", headers=HUBSPOT, timeout=5
    )
    assert bad.status_code == 400 and bad.json()["category"] == "VALIDATION_ERROR"
    unknown = requests.get(f"{hubspot}/crm/v9/nothing/here/at/all", headers=HUBSPOT, timeout=5)
    assert unknown.status_code == 404 and unknown.json()["status"] == "error"
    missing = requests.get(f"{mailchimp}/no-such-thing", auth=MAILCHIMP, timeout=5)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(
        "application/problem+json"
    )


# --- Mailchimp ----------------------------------------------------------------------------------------------


def test_mailchimp_batch_subscribe_creates_updates_and_reports_errors(
    mailchimp: str, control: SandboxClient
) -> None:
    jane = {
        "email_address": "Jane.Doe@example.com",
        "status": "subscribed",
        "merge_fields": {"FNAME": "Jane"},
    }
    created = subscribe(
        mailchimp, [{**jane, "tags": ["ennu:registered"]}, {"email_address": "nope", "status": "subscribed"}]
    )
    assert created.status_code == 200
    body = created.json()
    assert (body["total_created"], body["total_updated"], body["error_count"]) == (1, 0, 1)
    [member] = body["new_members"]
    assert member["id"] == JANE_HASH and member["status"] == "subscribed"
    assert member["merge_fields"] == {"FNAME": "Jane"} and [t["name"] for t in member["tags"]] == [
        "ennu:registered"
    ]
    assert body["errors"][0]["email_address"] == "nope" and body["errors"][0]["error_code"] == "ERROR_GENERIC"

    updated = subscribe(mailchimp, [{**jane, "merge_fields": {"LNAME": "Doe"}}]).json()
    assert updated["total_updated"] == 1 and updated["updated_members"][0]["id"] == JANE_HASH
    refused = subscribe(mailchimp, [jane], update_existing=False).json()
    assert refused["error_count"] == 1 and refused["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS"

    [stored] = control.objects("mailchimp", "members")
    assert stored["merge_fields"] == {"FNAME": "Jane", "LNAME": "Doe"} and stored["tags"] == [
        "ennu:registered"
    ]


def test_mailchimp_batch_limit_and_unknown_list(mailchimp: str) -> None:
    members = [{"email_address": f"p{i}@example.com", "status": "subscribed"} for i in range(501)]
    too_many = subscribe(mailchimp, members)
    assert too_many.status_code == 400
    assert too_many.headers["content-type"].startswith("application/problem+json")
    assert subscribe(mailchimp, members[:500]).json()["total_created"] == 500
    other = requests.post(f"{mailchimp}/lists/other", json={"members": []}, auth=MAILCHIMP, timeout=5)
    assert other.status_code == 404 and other.json()["title"] == "Resource Not Found"


def test_mailchimp_member_by_md5_hash_tags_archive_and_permanent_delete(mailchimp: str) -> None:
    member_url = f"{mailchimp}/lists/sandbox-list/members/{JANE_HASH}"
    without_status = requests.put(
        member_url, json={"email_address": "jane.doe@example.com"}, auth=MAILCHIMP, timeout=5
    )
    assert without_status.status_code == 400  # status_if_new is required for a new member
    wrong_hash = requests.put(
        f"{mailchimp}/lists/sandbox-list/members/{'0' * 32}",
        json={"email_address": "jane.doe@example.com", "status_if_new": "subscribed"},
        auth=MAILCHIMP,
        timeout=5,
    )
    assert wrong_hash.status_code == 400
    put = requests.put(
        member_url,
        json={"email_address": "Jane.Doe@example.com", "status_if_new": "pending"},
        auth=MAILCHIMP,
        timeout=5,
    )
    assert put.status_code == 200 and put.json()["id"] == JANE_HASH and put.json()["status"] == "pending"

    tags = {"tags": [{"name": "vip", "status": "active"}, {"name": "old", "status": "inactive"}]}
    assert requests.post(f"{member_url}/tags", json=tags, auth=MAILCHIMP, timeout=5).status_code == 204
    got = requests.get(member_url, auth=MAILCHIMP, timeout=5).json()
    assert [t["name"] for t in got["tags"]] == ["vip"]
    assert requests.delete(member_url, auth=MAILCHIMP, timeout=5).status_code == 204
    assert requests.get(member_url, auth=MAILCHIMP, timeout=5).json()["status"] == "archived"

    erase = requests.post(f"{member_url}/actions/delete-permanent", auth=MAILCHIMP, timeout=5)
    assert erase.status_code == 204
    absent = requests.get(member_url, auth=MAILCHIMP, timeout=5)
    assert absent.status_code == 404 and absent.json()["title"] == "Resource Not Found"
    again = requests.put(
        member_url,
        json={"email_address": "jane.doe@example.com", "status_if_new": "subscribed"},
        auth=MAILCHIMP,
        timeout=5,
    )
    assert again.status_code == 400 and again.json()["title"] == "Forgotten Email Not Subscribed"


# --- faults and limits --------------------------------------------------------------------------------------


def test_status_fault_for_n_requests_then_healthy(
    hubspot: str, mailchimp: str, control: SandboxClient
) -> None:
    control.fail("hubspot", "status", status=503, count=2)
    answers = [
        requests.get(f"{hubspot}/account-info/v3/details", headers=HUBSPOT, timeout=5) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].json()["status"] == "error" and answers[0].json()["correlationId"]

    asked = time.monotonic()
    control.fail("mailchimp", "status", status=500, seconds=0.8)
    failing = requests.get(f"{mailchimp}/ping", auth=MAILCHIMP, timeout=5)
    assert failing.status_code == 500 and failing.headers["content-type"].startswith(
        "application/problem+json"
    )
    answers: list[int] = []

    def healed() -> bool:
        answers.append(requests.get(f"{mailchimp}/ping", auth=MAILCHIMP, timeout=5).status_code)
        return answers[-1] == 200

    wait_for(healed, "the fault's 0.8 s to pass", every=0.05)
    assert set(answers[:-1]) <= {500} and time.monotonic() - asked >= 0.8  # failing until then, not after

    control.fail("mailchimp", "status", status=502)
    assert requests.get(f"{mailchimp}/ping", auth=MAILCHIMP, timeout=5).status_code == 502
    control.heal("mailchimp")
    assert requests.get(f"{mailchimp}/ping", auth=MAILCHIMP, timeout=5).status_code == 200
    assert [r["fault"] for r in control.requests("hubspot")] == ["status", "status", None]


def test_rate_limit_answers_429_with_retry_after_in_each_vendors_shape(
    hubspot: str, mailchimp: str, control: SandboxClient
) -> None:
    control.set_rate("hubspot", per_second=0.5, retry_after=3)  # one now, the next in 2 s
    allowed, limited = [
        requests.get(f"{hubspot}/account-info/v3/details", headers=HUBSPOT, timeout=5) for _ in range(2)
    ]
    assert allowed.status_code == 200 and limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert limited.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    body = limited.json()
    assert (body["status"], body["errorType"], body["policyName"]) == ("error", "RATE_LIMIT", "SECONDLY")
    assert body["message"] == "You have reached your secondly limit." and body["correlationId"]

    control.set_rate("mailchimp", per_second=0.2)
    requests.get(f"{mailchimp}/ping", auth=MAILCHIMP, timeout=5)
    too_fast = requests.get(f"{mailchimp}/ping", auth=MAILCHIMP, timeout=5)
    assert too_fast.status_code == 429 and too_fast.headers["Retry-After"] == "1"
    assert too_fast.headers["content-type"].startswith("application/problem+json")
    assert too_fast.json()["title"] == "Too Many Requests" and too_fast.json()["status"] == 429

    control.set_rate("hubspot", None)
    assert requests.get(f"{hubspot}/account-info/v3/details", headers=HUBSPOT, timeout=5).status_code == 200


def test_a_vendors_stated_window_admits_that_many_and_no_more_in_any_window(
    hubspot: str, control: SandboxClient
) -> None:
    """HubSpot's "190 per 10 s" as the stand-in enforces it: a sliding window, not a token bucket."""
    control.set_rate("hubspot", None, window=(3, 30.0))
    answers = [
        requests.get(f"{hubspot}/account-info/v3/details", headers=HUBSPOT, timeout=5).status_code
        for _ in range(5)
    ]
    assert answers == [200, 200, 200, 429, 429]
    assert [r["fault"] for r in control.requests("hubspot")][-2:] == ["rate", "rate"]
    control.set_rate("hubspot", None)


def test_reset_fault_drops_the_connection_without_any_http_answer(
    running: RunningSandbox, hubspot: str, control: SandboxClient
) -> None:
    control.fail("hubspot", "reset", count=2)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{hubspot}/account-info/v3/details", headers=HUBSPOT, timeout=5)

    address = urlsplit(running.url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as raw:
        raw.sendall(b"GET /hubspot/account-info/v3/details HTTP/1.1\r\nHost: sandbox\r\n\r\n")
        try:
            received = raw.recv(1024)
        except ConnectionResetError:
            received = b""
    assert received == b""  # no status line at all: not a 500, not anything

    assert requests.get(f"{hubspot}/account-info/v3/details", headers=HUBSPOT, timeout=5).status_code == 200
    assert [(r["status"], r["fault"]) for r in control.requests("hubspot")] == [
        (0, "reset"),
        (0, "reset"),
        (200, None),
    ]


def test_slow_and_timeout_faults_make_the_client_time_out(hubspot: str, control: SandboxClient) -> None:
    control.fail("hubspot", "slow", delay=0.5, count=1)
    with pytest.raises(requests.ReadTimeout):
        upsert(hubspot, [contact("slow@example.com")], timeout=0.2)
    # Slow is not deaf: the request is still carried out after the client gave up.
    wait_for(lambda: control.objects("hubspot", "contacts"), "the slow request carried out", every=0.05)
    assert [c["properties"]["email"] for c in control.objects("hubspot", "contacts")] == ["slow@example.com"]

    control.fail("hubspot", "timeout", count=1)  # waits 30 s, or until the client leaves, then drops it
    with pytest.raises(requests.ReadTimeout):
        upsert(hubspot, [contact("never@example.com")], timeout=0.3)
    assert upsert(hubspot, [contact("after@example.com")]).status_code == 200
    stored = {c["properties"]["email"] for c in control.objects("hubspot", "contacts")}
    assert stored == {"slow@example.com", "after@example.com"}


def test_a_heal_lets_the_request_a_slow_fault_holds_go_on(hubspot: str, control: SandboxClient) -> None:
    """Tests hold a request (a push under way) for as long as they need and let it go when they have seen
    what they wait for, instead of guessing a delay."""
    control.fail("hubspot", "slow", delay=600, count=1)  # far past the client's wait: only the heal ends it
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(upsert, hubspot, [contact("held@example.com")], 120)
        # Its body is kept just before it meets the fault, with no wait between: it is held now.
        wait_for(lambda: control.bodies("hubspot"), "the request held", every=0.05)
        assert not held.done()
        control.heal("hubspot")
        assert held.result().status_code == 200
    assert [r["fault"] for r in control.requests("hubspot")] == ["slow"]


TWILIO_AUTH = ("AC00000000000000000000000000000000", "sandbox-twilio-token")
COMMIT_FAULTS = [
    pytest.param("commit_then_reset", requests.ConnectionError, id="commit_then_reset"),
    pytest.param("commit_then_late", requests.ReadTimeout, id="commit_then_late"),
]


def send_sms(running: RunningSandbox, to: str, timeout: float = 5) -> requests.Response:
    return requests.post(
        f"{running.url}/twilio/2010-04-01/Accounts/{TWILIO_AUTH[0]}/Messages.json",
        data={"To": to, "From": "+15005550006", "Body": "ENNU reminder"},
        auth=TWILIO_AUTH,
        timeout=timeout,
    )


@pytest.mark.parametrize(("mode", "raised"), COMMIT_FAULTS)
def test_commit_faults_store_the_hubspot_contact_and_lose_the_answer(
    hubspot: str, control: SandboxClient, mode: FaultMode, raised: type[Exception]
) -> None:
    control.fail("hubspot", mode, count=1)
    with pytest.raises(raised):
        upsert(hubspot, [contact("lost@example.com")], timeout=0.5)
    assert [c["properties"]["email"] for c in control.objects("hubspot", "contacts")] == ["lost@example.com"]
    [entry] = control.requests("hubspot")
    assert (entry["status"], entry["fault"]) == (200, mode)  # stored with a 200 the client never had
    assert control.stored_but_unanswered("hubspot") == [entry]

    assert upsert(hubspot, [contact("next@example.com")]).status_code == 200  # one request only
    assert [r["fault"] for r in control.requests("hubspot")] == [mode, None]


@pytest.mark.parametrize(("mode", "raised"), COMMIT_FAULTS)
def test_commit_faults_store_the_twilio_message_and_lose_the_answer(
    running: RunningSandbox, control: SandboxClient, mode: FaultMode, raised: type[Exception]
) -> None:
    control.fail("twilio", mode, count=1)
    with pytest.raises(raised):
        send_sms(running, "+14155550101", timeout=0.5)
    [message] = control.objects("twilio", "messages")
    assert message["to"] == "+14155550101" and message["sid"].startswith("SM")
    [entry] = control.stored_but_unanswered("twilio")
    assert (entry["method"], entry["status"], entry["fault"]) == ("POST", 201, mode)
    assert send_sms(running, "+14155550102").status_code == 201


def test_a_late_answer_reaches_a_client_that_waits_for_it(
    running: RunningSandbox, control: SandboxClient
) -> None:
    control.fail("twilio", "commit_then_late", delay=0.3, count=1)
    started = time.monotonic()
    late = send_sms(running, "+14155550101", timeout=10)
    assert late.status_code == 201 and time.monotonic() - started >= 0.3
    assert late.json()["sid"] == control.objects("twilio", "messages")[0]["sid"]


def test_a_commit_reset_sends_no_http_answer_at_all(running: RunningSandbox, control: SandboxClient) -> None:
    control.fail("hubspot", "commit_then_reset", count=1)
    body = b'{"inputs": [{"id": "raw@example.com", "idProperty": "email", "properties": {}}]}'
    address = urlsplit(running.url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as raw:
        raw.sendall(
            b"POST /hubspot/crm/v3/objects/contacts/batch/upsert HTTP/1.1\r\nHost: sandbox\r\n"
            b"Authorization: Bearer sandbox-hubspot-token\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        try:
            received = raw.recv(1024)
        except ConnectionResetError:
            received = b""
    assert received == b""
    assert len(control.objects("hubspot", "contacts")) == 1
    assert [r["status"] for r in control.stored_but_unanswered("hubspot")] == [200]


def test_concurrency_limit_answers_429(
    running: RunningSandbox, mailchimp: str, control: SandboxClient
) -> None:
    control.set_rate("mailchimp", None, concurrent=1)
    control.fail("mailchimp", "slow", delay=1.0, count=1)
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{mailchimp}/ping", auth=MAILCHIMP, timeout=0.1)  # still in flight at the sandbox
    assert requests.get(f"{mailchimp}/ping", auth=MAILCHIMP, timeout=5).status_code == 429


# --- what the sandbox keeps ---------------------------------------------------------------------------------


def test_only_vendor_requests_are_counted_and_logged_without_bodies(
    hubspot: str, mailchimp: str, control: SandboxClient
) -> None:
    upsert(hubspot, [contact("counted@example.com", firstname="Secret")])
    requests.get(f"{mailchimp}/ping", auth=MAILCHIMP, timeout=5)
    requests.get(f"{mailchimp}/ping", auth=("x", "wrong"), timeout=5)
    control.objects("hubspot", "contacts")  # control calls are not counted
    control.requests("mailchimp")

    assert control.request_count("hubspot") == 1
    assert control.request_count("mailchimp") == 2
    assert control.request_count("mailchimp", path_contains="/ping") == 2
    assert control.request_count("hubspot", path_contains="/ping") == 0
    [entry] = control.requests("hubspot")
    assert set(entry) == {"method", "path", "query", "status", "at", "fault"}
    assert (entry["method"], entry["path"], entry["status"]) == (
        "POST",
        "/hubspot/crm/v3/objects/contacts/batch/upsert",
        200,
    )
    assert "Secret" not in str(control.requests("hubspot"))
    [kept] = control.bodies("hubspot")
    assert kept["body"]["inputs"][0]["properties"]["firstname"] == "Secret"


def test_reset_forgets_everything(hubspot: str, control: SandboxClient) -> None:
    upsert(hubspot, [contact("a@example.com")])
    control.fail("hubspot", "status", status=500)
    control.set_rate("hubspot", per_second=0.01)
    control.reset()
    assert control.objects("hubspot", "contacts") == [] and control.requests("hubspot") == []
    assert requests.get(f"{hubspot}/account-info/v3/details", headers=HUBSPOT, timeout=5).status_code == 200
    assert requests.get(f"{hubspot}/account-info/v3/details", headers=HUBSPOT, timeout=5).status_code == 200
    with pytest.raises(requests.HTTPError):
        control.requests("nosuchvendor")


def test_the_sandbox_serves_on_loopback_only() -> None:
    with pytest.raises(ValueError):
        start_sandbox(host="192.0.2.1")
    with pytest.raises(SystemExit):
        main(["--host", "192.0.2.1"])
