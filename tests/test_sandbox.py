"""The sandbox speaks like the vendors: auth, batch limits, error shapes, Mailchimp's member hash."""

from __future__ import annotations

from typing import Any

import requests

TOKEN = {"Authorization": "Bearer sandbox-hubspot-token"}
MAILCHIMP_AUTH = ("anystring", "sandbox-key-us1")


def upsert_body(n: int) -> dict[str, Any]:
    return {
        "inputs": [
            {"id": f"p{i}@example.com", "idProperty": "email", "properties": {"email": f"p{i}@example.com"}}
            for i in range(n)
        ]
    }


def test_hubspot_refuses_missing_or_wrong_tokens(sandbox: Any, sandbox_url: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = requests.get(f"{sandbox_url}/hubspot/account-info/v3/details", headers=headers, timeout=5)
        assert response.status_code == 401
        assert response.json()["category"] == "INVALID_AUTHENTICATION"


def test_hubspot_batch_limit_and_duplicates(sandbox: Any, sandbox_url: str) -> None:
    url = f"{sandbox_url}/hubspot/crm/v3/objects/contacts/batch/upsert"
    assert requests.post(url, json=upsert_body(101), headers=TOKEN, timeout=5).status_code == 400
    body = upsert_body(2)
    body["inputs"].append(body["inputs"][0])
    assert requests.post(url, json=body, headers=TOKEN, timeout=5).status_code == 400
    first = requests.post(url, json=upsert_body(100), headers=TOKEN, timeout=5).json()
    second = requests.post(url, json=upsert_body(1), headers=TOKEN, timeout=5).json()
    assert all(r["new"] for r in first["results"])
    assert second["results"][0]["new"] is False
    assert second["results"][0]["id"] == next(
        r["id"] for r in first["results"] if r["properties"]["email"] == "p0@example.com"
    )


def test_mailchimp_auth_hash_batch_limit_and_permanent_delete(sandbox: Any, sandbox_url: str) -> None:
    base = f"{sandbox_url}/mailchimp/3.0"
    assert requests.get(f"{base}/ping", auth=("x", "wrong"), timeout=5).status_code == 401
    assert requests.get(f"{base}/ping", auth=MAILCHIMP_AUTH, timeout=5).json()["health_status"]
    too_many = {
        "members": [{"email_address": f"p{i}@example.com", "status": "subscribed"} for i in range(501)]
    }
    response = requests.post(f"{base}/lists/sandbox-list", json=too_many, auth=MAILCHIMP_AUTH, timeout=5)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (
        requests.post(f"{base}/lists/other", json={"members": []}, auth=MAILCHIMP_AUTH, timeout=5).status_code
        == 404
    )

    member = "0cba00ca3da1b283a57287bcceb17e35"  # md5("jane.doe@example.com")
    put = requests.put(
        f"{base}/lists/sandbox-list/members/{member}",
        auth=MAILCHIMP_AUTH,
        timeout=5,
        json={"email_address": "Jane.Doe@example.com", "status_if_new": "subscribed"},
    )
    assert put.status_code == 200 and put.json()["id"] == member
    wrong_hash = requests.put(
        f"{base}/lists/sandbox-list/members/{'0' * 32}",
        auth=MAILCHIMP_AUTH,
        timeout=5,
        json={"email_address": "jane.doe@example.com", "status_if_new": "subscribed"},
    )
    assert wrong_hash.status_code == 400
    delete = requests.post(
        f"{base}/lists/sandbox-list/members/{member}/actions/delete-permanent", auth=MAILCHIMP_AUTH, timeout=5
    )
    assert delete.status_code == 204
    assert (
        requests.get(
            f"{base}/lists/sandbox-list/members/{member}", auth=MAILCHIMP_AUTH, timeout=5
        ).status_code
        == 404
    )


def test_fault_for_n_requests_then_healthy_and_only_vendor_calls_are_counted(
    sandbox: Any, sandbox_url: str
) -> None:
    sandbox.fail("mailchimp", mode="status", status=500, count=2)
    answers = [
        requests.get(f"{sandbox_url}/mailchimp/3.0/ping", auth=MAILCHIMP_AUTH, timeout=5).status_code
        for _ in range(3)
    ]
    assert answers == [500, 500, 200]
    assert sandbox.request_count("mailchimp") == 3
    assert sandbox.request_count("hubspot") == 0
