"""Contract: our Slack webhook message matches slack_sdk's WebhookClient; Slack's answers are handled.

The SDK and our connector post the same Block Kit message to the capturing endpoint: method, path,
query, content type and JSON body agree. Slack's plain-text error codes, its 429 and its one message a
second per webhook are checked against the sandbox and the shared rate limit (counts, never timings).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import rate_limit
from slack_sdk.webhook import WebhookClient

from connectors.base import Record
from connectors.http import ConnectorError, PermanentError, RetryableError
from connectors.rate_limit import SLOTS_PER_REQUEST, RateLimit, limit_name
from connectors.slack import SlackConnector
from connectors.slack.connector import ONE_A_SECOND, blocks
from ennu.models import SyncStatus
from ennu.settings import get_settings, reload_settings
from tests.capture import CapturingEndpoint

HOOK_PATH = "/services/T0CONTRACT/B0CONTRACT/contractsecret"
FACTS = {"event": "assessment.completed", "integration": "hubspot"}


def notice(n: int = 1) -> Record:
    fields = {"id": f"user:{n}", "title": "Delivery failures", "text": "3 records failed.", **FACTS}
    return Record(f"user:{n}", f"evt-{n}", n, fields)


@pytest.fixture()
def hook(endpoint: CapturingEndpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"{endpoint.url}{HOOK_PATH}"
    monkeypatch.setenv("SLACK_WEBHOOK_URL", url)
    reload_settings()
    endpoint.answer("POST", HOOK_PATH, 200, {"ok": True})
    yield url
    monkeypatch.undo()
    reload_settings()


def test_block_kit_message_matches_slack_sdk_webhook_client(hook: str, endpoint: CapturingEndpoint) -> None:
    connector = SlackConnector.from_settings(get_settings(), rate_limited=False)
    assert [o.status for o in connector.push("messages", "id", [notice()])] == [SyncStatus.CREATED]
    [ours] = endpoint.take()
    message = blocks("Delivery failures", "3 records failed.", FACTS)
    WebhookClient(hook).send(text="Delivery failures: 3 records failed.", blocks=message)
    [theirs] = endpoint.take()
    assert (ours.method, ours.path, ours.query) == (theirs.method, theirs.path, theirs.query)
    assert ours.headers["content-type"] == theirs.headers["content-type"] == "application/json;charset=utf-8"
    assert json.loads(ours.body) == json.loads(theirs.body)
    assert "authorization" not in ours.headers  # the URL is the secret


@pytest.mark.parametrize(
    ("hook_suffix", "code"),
    [
        ("archived", "channel_is_archived"),
        ("prohibited", "action_prohibited"),
        ("general", "posting_to_general_channel_denied"),
        ("notfound", "channel_not_found"),
        ("revoked", "no_service"),
    ],
)
def test_refusing_hooks_fail_the_message_with_slacks_code(sandbox: Any, hook_suffix: str, code: str) -> None:
    connector = SlackConnector.from_settings(get_settings(), rate_limited=False)
    connector.http.base_url += hook_suffix
    [outcome] = connector.push("messages", "id", [notice()])
    assert (outcome.status, outcome.error) == (SyncStatus.FAILED, code)
    assert sandbox.objects("slack", "messages") == []


def test_payload_errors_are_permanent_with_slacks_code(sandbox: Any) -> None:
    http = SlackConnector.from_settings(get_settings(), rate_limited=False).http
    wrong: dict[str, dict[str, Any]] = {
        "invalid_payload": {"data": "not json", "headers": {"Content-Type": "application/json"}},
        "no_text": {"json": {}},
        "too_many_attachments": {"json": {"text": "x", "attachments": [{"text": "a"}] * 101}},
        "invalid_blocks": {"json": {"text": "x", "blocks": [{"type": "divider"}] * 51}},
    }
    for code, request in wrong.items():
        with pytest.raises(PermanentError) as refused:
            http.request("POST", "", **request)
        assert (refused.value.status, refused.value.code) == (400, code)
    assert sandbox.objects("slack", "messages") == []


def test_rate_limited_is_sent_again_after_slacks_retry_after(sandbox: Any) -> None:
    sandbox.set_rate("slack", per_second=1.0, retry_after=1)
    connector = SlackConnector.from_settings(get_settings(), rate_limited=False)
    connector.notify("First", "accepted")
    connector.notify("Second", "too soon after the first: sent again a second later")
    assert [r["status"] for r in sandbox.requests("slack")] == [200, 429, 200]
    assert len(sandbox.objects("slack", "messages")) == 2


def test_a_long_retry_after_is_left_to_the_delivery_engine(sandbox: Any) -> None:
    sandbox.set_rate("slack", per_second=0.001, retry_after=60)  # longer than the client waits
    connector = SlackConnector.from_settings(get_settings(), rate_limited=False)
    connector.notify("First", "accepted")
    with pytest.raises(RetryableError) as limited:
        connector.notify("Second", "too soon after the first")
    assert limited.value.reason.startswith("http 429") and limited.value.retry_after == 60.0
    assert len(sandbox.requests("slack")) == 2 and len(sandbox.objects("slack", "messages")) == 1


def test_a_hook_that_takes_an_empty_message_fails_the_connection_test(
    hook: str, endpoint: CapturingEndpoint
) -> None:
    connector = SlackConnector.from_settings(get_settings(), rate_limited=False)
    with pytest.raises(ConnectorError, match="unexpected answer"):
        connector.test_connection()  # a live Slack hook answers 400 no_text; this one said 200
    endpoint.answer("POST", HOOK_PATH, 400, {"error": {"code": "invalid_payload"}})
    with pytest.raises(PermanentError) as refused:
        connector.test_connection()  # another 400 is Slack's refusal, with its code
    assert refused.value.code == "invalid_payload"


@pytest.mark.usefixtures("prefect_server")
def test_one_message_per_second_per_webhook_without_burst(sandbox: Any) -> None:
    connector = SlackConnector.from_settings(get_settings(), rate_limited=True)
    connector.notify("Only", "one a second")
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(limit_name("slack"))
    # Slack's one a second as a bucket no second can exceed: no burst, a little under one a second.
    expected = RateLimit("slack", ONE_A_SECOND)
    assert (limit.limit, limit.slot_decay_per_second) == (
        SLOTS_PER_REQUEST,
        pytest.approx(expected.slots_per_second * SLOTS_PER_REQUEST),
    )
    assert expected.slots_per_second < 1.0
    with pytest.raises(TimeoutError):  # the slot is taken: a second message now would be held back
        rate_limit(limit_name("slack"), occupy=SLOTS_PER_REQUEST, timeout_seconds=0.2, strict=True)
    assert len(sandbox.objects("slack", "messages")) == 1
