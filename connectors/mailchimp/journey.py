"""Mailchimp Customer Journey API-trigger steps: the follow-up campaign after a health goal.

`POST /customer-journeys/journeys/{journey_id}/steps/{step_id}/actions/trigger` `{"email_address"}`
answers 204. The API takes one contact a call, so one request per person is the vendor's floor; the
contact must already be in the journey's audience (400 otherwise), which is why only members subscribed
successfully in the same push are triggered. A 404 means the journey or its step does not exist (a
configuration mistake): every person gets a FAILED outcome with that reason and no one is lost silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from connectors.base import Outcome
from connectors.http import RetryableError, VendorHttp
from connectors.mailchimp.errors import TABLE
from ennu.models import SyncStatus

TRIGGERABLE = (SyncStatus.CREATED, SyncStatus.UPDATED)


@dataclass(frozen=True)
class JourneyStep:
    journey_id: int
    step_id: int

    @property
    def path(self) -> str:
        return f"/customer-journeys/journeys/{self.journey_id}/steps/{self.step_id}/actions/trigger"


def refusal_reason(status: int, body: Any) -> str:
    """`journey: http 400 <Mailchimp title>`: the title is a fixed phrase, never the contact's data."""
    title = body.get("title") if isinstance(body, dict) else None
    return f"journey: http {status}" + (f" {title}" if isinstance(title, str) and len(title) <= 60 else "")


def trigger_journey(
    http: VendorHttp, step: JourneyStep, subscribed: Sequence[tuple[Outcome, str]]
) -> list[Outcome]:
    """Each (subscribe outcome, e-mail) in order → its outcome after the trigger.

    A refusal (400, 404) fails that person only. A retryable answer (429, 5xx) is sent again by the client;
    one that outlasts its retries defers that person and everyone after, without sending more, so the
    drain re-delivers them (re-subscribing is idempotent).
    """
    outcomes: list[Outcome] = []
    deferred_reason: str | None = None
    for outcome, email in subscribed:
        if outcome.status not in TRIGGERABLE:
            outcomes.append(outcome)
            continue
        if deferred_reason is not None:
            outcomes.append(replace(outcome, status=SyncStatus.DEFERRED, error=deferred_reason))
            continue
        try:
            response = http.request(
                "POST", step.path, json={"email_address": email}, allow_statuses=TABLE.expect("journey")
            )
        except RetryableError as exc:
            deferred_reason = f"journey: {exc.reason}"
            outcomes.append(replace(outcome, status=SyncStatus.DEFERRED, error=deferred_reason))
            continue
        if response.status_code >= 400:  # one of the refusals the call expects
            try:
                body: Any = response.json()
            except ValueError:
                body = None
            outcomes.append(
                replace(outcome, status=SyncStatus.FAILED, error=refusal_reason(response.status_code, body))
            )
            continue
        outcomes.append(outcome)
    return outcomes
