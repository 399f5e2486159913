"""Tags that no longer hold, taken off by tag: one static-segment request per tag and 500 members.

At Mailchimp a tag is a static segment. `POST /lists/{id}/segments/{tag id}` with `members_to_remove`
(at most 500 addresses; the SDK's `lists.batch_segment_members`) takes the tag off many members at once,
where `POST .../members/{hash}/tags` takes one member a request. So a batch's inactive tags are grouped by
tag: a batch of 500 people costs one request per distinct tag that no longer holds for some of them,
whatever their number. The connector hands in only the tags a member still carries (the batch
subscribe's answer lists them); a tag the audience never had (no id in the segment listing) is on nobody:
skipped.

The answer names each member taken off (`members_removed`) and each address refused (`errors[]`:
`email_addresses` and an `error` phrase); an address in neither did not carry the tag, which is the state
we want. A refused address fails that person's push, as a refused per-member tags request did; a refused
request (400) fails its members; a segment gone since the listing (404) is looked up again once; a
retryable failure defers its members and every later request's, as the per-member calls did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import requests

from connectors.base import Outcome
from connectors.http import RetryableError, VendorHttp
from connectors.mailchimp.errors import TABLE
from connectors.mailchimp.per_member import MAX_TITLE, WRITTEN, refusal_reason
from connectors.mailchimp.segments import SegmentEnsurer
from ennu.models import SyncStatus

SEGMENT_LIMIT = 500  # addresses in members_to_remove
LABEL = "tags"
NOT_REMOVED = f"{LABEL}: not removed"


def chunks(items: Sequence[str], size: int = SEGMENT_LIMIT) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def address_key(email: str) -> str:
    return email.strip().lower()


def refused_reason(error: Any) -> str:
    """`tags: <Mailchimp's phrase>`, or a fixed reason when the phrase could quote an address."""
    if isinstance(error, str) and error and "@" not in error and len(error) <= MAX_TITLE:
        return f"{LABEL}: {error}"
    return NOT_REMOVED


def by_tag(pending: Sequence[tuple[Outcome, str, Sequence[str]]]) -> dict[str, list[str]]:
    """Tag → the distinct addresses of the written members it no longer holds for, in order."""
    grouped: dict[str, dict[str, str]] = {}
    for outcome, email, inactive in pending:
        if outcome.status not in WRITTEN:
            continue
        for tag in inactive:
            grouped.setdefault(tag, {}).setdefault(address_key(email), email)
    return {tag: list(emails.values()) for tag, emails in grouped.items()}


def after(
    pending: Sequence[tuple[Outcome, str, Sequence[str]]], failed: dict[str, tuple[SyncStatus, str]]
) -> list[Outcome]:
    """Each written member's outcome with its removal's failure (the first), if any; the rest as they were."""
    outcomes: list[Outcome] = []
    for outcome, email, _ in pending:
        failure = failed.get(address_key(email)) if outcome.status in WRITTEN else None
        outcomes.append(replace(outcome, status=failure[0], error=failure[1]) if failure else outcome)
    return outcomes


class TagRemover:
    """Takes a batch's inactive tags off its members, one request per tag and 500 of them."""

    def __init__(self, http: VendorHttp, list_id: str, segments: SegmentEnsurer) -> None:
        self.http = http
        self.list_id = list_id
        self.segments = segments

    def remove(self, pending: Sequence[tuple[Outcome, str, Sequence[str]]]) -> list[Outcome]:
        """Each (outcome so far, member's address, tags that no longer hold) → the outcome after."""
        grouped = by_tag(pending)
        if not grouped:
            return [outcome for outcome, _, _ in pending]
        try:
            ids = self.segments.tag_ids(list(grouped))
        except RetryableError as exc:  # the look-up outlasted its retries: every removal waits
            waiting = (SyncStatus.DEFERRED, f"{LABEL}: {exc.reason}")
            return after(pending, {address_key(e): waiting for emails in grouped.values() for e in emails})
        failed: dict[str, tuple[SyncStatus, str]] = {}
        deferred: str | None = None
        for tag, emails in grouped.items():
            for part in chunks(emails) if tag in ids else ():
                if deferred is None:
                    try:
                        refused = self._remove(tag, ids[tag], part)
                    except RetryableError as exc:
                        deferred = f"{LABEL}: {exc.reason}"
                    else:
                        for key, reason in refused.items():
                            failed.setdefault(key, (SyncStatus.FAILED, reason))
                if deferred is not None:
                    for email in part:
                        failed.setdefault(address_key(email), (SyncStatus.DEFERRED, deferred))
        return after(pending, failed)

    def _remove(self, tag: str, tag_id: int, emails: Sequence[str]) -> dict[str, str]:
        """The refused addresses' keys → reason, for one request (and once more if the segment is gone)."""
        response = self._post(tag_id, emails)
        if response.status_code == 404:  # deleted since the listing (and maybe applied again since)
            again = self.segments.tag_ids([tag], refresh=True).get(tag)
            if again is None:
                return {}  # no such tag any more: on nobody
            if again != tag_id:
                response = self._post(again, emails)
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = None
            reason = refusal_reason(LABEL, response.status_code, body)
            return {address_key(email): reason for email in emails}
        answer: dict[str, Any] = response.json()
        sent = {address_key(email) for email in emails}
        refused: dict[str, str] = {}
        for error in answer.get("errors") or []:
            for email in error.get("email_addresses") or []:
                if address_key(str(email)) in sent:
                    refused.setdefault(address_key(str(email)), refused_reason(error.get("error")))
        return refused

    def _post(self, tag_id: int, emails: Sequence[str]) -> requests.Response:
        return self.http.request(
            "POST",
            f"/lists/{self.list_id}/segments/{tag_id}",
            json={"members_to_remove": list(emails)},
            allow_statuses=TABLE.expect("tag segment"),
        )
