"""Mailchimp Customer Journey API-trigger steps: the follow-up campaign after a health goal.

`POST /customer-journeys/journeys/{journey_id}/steps/{step_id}/actions/trigger` `{"email_address"}`
answers 204. The API takes one contact a call, so one request per person is the vendor's floor; the
contact must already be in the journey's audience (400 otherwise), which is why only members subscribed
successfully in the same push are triggered (`per_member`). A 404 means the journey or its step does not
exist (a configuration mistake): every person gets a FAILED outcome with that reason and no one is lost
silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connectors.base import Outcome
from connectors.http import VendorHttp
from connectors.mailchimp.per_member import MemberCall, call_each


@dataclass(frozen=True)
class JourneyStep:
    journey_id: int
    step_id: int

    @property
    def path(self) -> str:
        return f"/customer-journeys/journeys/{self.journey_id}/steps/{self.step_id}/actions/trigger"


def trigger_journey(
    http: VendorHttp, step: JourneyStep, subscribed: Sequence[tuple[Outcome, str]]
) -> list[Outcome]:
    """Each (subscribe outcome, e-mail) in order → its outcome after the trigger."""
    calls = [(outcome, MemberCall(step.path, {"email_address": email})) for outcome, email in subscribed]
    return call_each(http, "journey", calls)
