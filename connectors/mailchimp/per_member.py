"""Mailchimp calls made one member at a time after the batch subscribe: member events and journey
triggers. The API takes one contact per call for each, so one request per person is its floor (tags that
no longer hold are taken off by tag, many members a request: `tag_removal`).

Only members written successfully in the same push are called (the others keep their outcome). A refusal
the call expects (400, 404) fails that person with the status and Mailchimp's fixed title, never the
contact's data. A retryable answer (429, 5xx) is sent again by the client; one that outlasts its retries
defers that person and everyone after, without sending more, so the engine re-delivers them (the batch
subscribe is idempotent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from connectors.base import Outcome
from connectors.http import RetryableError, VendorHttp
from connectors.mailchimp.errors import TABLE
from ennu.models import SyncStatus

WRITTEN = (SyncStatus.CREATED, SyncStatus.UPDATED)
MAX_TITLE = 60


@dataclass(frozen=True)
class MemberCall:
    """One POST about one member: its path under the API base and its JSON body."""

    path: str
    body: dict[str, Any]


def refusal_reason(label: str, status: int, body: Any) -> str:
    """`<label>: http 400 <Mailchimp title>`: the title is a fixed phrase, never the contact's data."""
    title = body.get("title") if isinstance(body, dict) else None
    return f"{label}: http {status}" + (
        f" {title}" if isinstance(title, str) and len(title) <= MAX_TITLE else ""
    )


def call_each(
    http: VendorHttp, label: str, calls: Sequence[tuple[Outcome, MemberCall | None]]
) -> list[Outcome]:
    """Each (outcome so far, call or None) in order → the outcome after the call. `label` names the
    call in reasons and is the error table's expected answers for it (`connectors.mailchimp.errors`)."""
    outcomes: list[Outcome] = []
    deferred_reason: str | None = None
    for outcome, call in calls:
        if call is None or outcome.status not in WRITTEN:
            outcomes.append(outcome)
            continue
        if deferred_reason is not None:
            outcomes.append(replace(outcome, status=SyncStatus.DEFERRED, error=deferred_reason))
            continue
        try:
            response = http.request("POST", call.path, json=call.body, allow_statuses=TABLE.expect(label))
        except RetryableError as exc:
            deferred_reason = f"{label}: {exc.reason}"
            outcomes.append(replace(outcome, status=SyncStatus.DEFERRED, error=deferred_reason))
            continue
        if response.status_code >= 400:  # one of the refusals the call expects
            try:
                body: Any = response.json()
            except ValueError:
                body = None
            reason = refusal_reason(label, response.status_code, body)
            outcomes.append(replace(outcome, status=SyncStatus.FAILED, error=reason))
            continue
        outcomes.append(outcome)
    return outcomes
