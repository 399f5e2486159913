"""Mailchimp Marketing: audience members by batch subscribe (500 a request), basic auth with the API key.

Choices, with the vendor facts behind them:

- Tags (health goals, assessment types) ride in the batch subscribe body (`members[].tags`). Since
  January 2022 Mailchimp adds them to existing members too ("Added ability to sync tags to existing
  members", Mailchimp release notes), so tagging costs no request beyond the batch: 2 requests per
  1,000 records. We never send `sync_tags` (which would replace a member's tags): tags only accumulate,
  a person may have several goals. Neither the per-member tags endpoint (one request a person) nor
  `POST /batches` (asynchronous, no per-record outcome in the push, no ordering with the subscribe) nor
  static-segment writes (one request per tag per batch) is needed.
- Merge fields the mappings write are created at the audience when missing (`mailchimp_merge_fields`),
  checked once per connector instance and remembered across processes by fingerprint.
- A mapping asks for the Customer Journey follow-up with the object `journey_members` instead of
  `members`: the same batch subscribe, then one trigger per person subscribed successfully in that push
  (`mailchimp_journey`), when MAILCHIMP_JOURNEY_ID and MAILCHIMP_JOURNEY_STEP_ID are set.
- Erasure (`erase`) is the permanent delete (`POST .../actions/delete-permanent`): the address can then
  never be re-imported, it must re-subscribe itself. `archive` (`DELETE .../members/{hash}`) is
  "unsubscribe and archive": the member leaves the audience but can be added back; it is for a
  withdrawn consent, never for a deletion request.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Self

from connectors.base import MARKETING, AmbiguousSends, ConnectionCheck, Connector, Outcome, Person, Record
from connectors.endpoint import resolve_endpoint
from connectors.http import ErrorPolicy, VendorHttp
from connectors.mailchimp_journey import JourneyStep, trigger_journey
from connectors.mailchimp_merge_fields import (
    DatabaseMemory,
    EnsuredMemory,
    MergeField,
    MergeFieldEnsurer,
    merge_fields_from_mappings,
)
from connectors.rate_limit import RateLimit
from ennu.models import SyncStatus
from ennu.settings import Settings

SANDBOX_API_KEY = "sandbox-key-us1"
POLICY = ErrorPolicy()
MEMBERS = "members"
JOURNEY_MEMBERS = "journey_members"  # members, then the configured journey step for each subscribed one


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased e-mail address."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def vendor_base_url(api_key: str) -> str | None:
    """`https://{dc}.api.mailchimp.com/3.0`, with `dc` the suffix after the API key's dash."""
    _, _, dc = api_key.rpartition("-")
    return f"https://{dc}.api.mailchimp.com/3.0" if dc and dc.isalnum() else None


def nest(fields: dict[str, Any]) -> dict[str, Any]:
    """`{"merge_fields.FNAME": "Ann"}` → `{"merge_fields": {"FNAME": "Ann"}}`; nulls are left out."""
    nested: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            continue
        head, _, tail = name.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[name] = value
    return nested


class MailchimpConnector(Connector):
    """Members of one audience (list), upserted by batch subscribe with `update_existing`."""

    name: ClassVar[str] = "mailchimp"
    consent_category: ClassVar[str] = "marketing"
    batch_sizes: ClassVar[dict[str, int]] = {MEMBERS: 500, JOURNEY_MEMBERS: 500}
    ambiguous_sends: ClassVar[AmbiguousSends] = "idempotent"  # members are keyed by the e-mail's hash
    credential_names: ClassVar[tuple[str, ...]] = ("MAILCHIMP_API_KEY",)

    def __init__(
        self,
        http: VendorHttp,
        list_id: str,
        *,
        merge_fields: tuple[MergeField, ...] = (),
        memory: EnsuredMemory | None = None,
        journey: JourneyStep | None = None,
    ) -> None:
        self.http = http
        self.list_id = list_id
        memory = memory or DatabaseMemory(self.name)
        self.merge_fields = MergeFieldEnsurer(http, list_id, merge_fields, memory)
        self.journey = journey

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        from ennu.secrets import read_secret

        configured_key = read_secret("MAILCHIMP_API_KEY")
        endpoint = resolve_endpoint(
            cls.name,
            credential_env="MAILCHIMP_API_KEY",
            vendor_base_url=vendor_base_url(configured_key.get_secret_value()) if configured_key else None,
            configured_base_url=settings.mailchimp_base_url,
            sandbox_path="mailchimp/3.0",
            sandbox_secret=SANDBOX_API_KEY,
        )
        http = VendorHttp(
            cls.name,
            endpoint.base_url,
            auth=("ennu", endpoint.secret.get_secret_value()),
            timeout=settings.http_timeout_seconds,
            policy=POLICY,
            rate_limit=RateLimit(cls.name, settings.mailchimp_requests_per_hour) if rate_limited else None,
        )
        journey = (
            JourneyStep(settings.mailchimp_journey_id, settings.mailchimp_journey_step_id)
            if settings.mailchimp_journey_id is not None and settings.mailchimp_journey_step_id is not None
            else None
        )
        return cls(
            http,
            settings.mailchimp_list_id,
            merge_fields=merge_fields_from_mappings(settings.mappings_dir),
            journey=journey,
        )

    def push(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        if object_name not in self.batch_sizes:
            raise ValueError(f"mailchimp: unsupported object {object_name!r}")
        self.merge_fields.ensure()
        outcomes = self.subscribe(upsert_key, records)
        if object_name == JOURNEY_MEMBERS and self.journey is not None:
            emails = [str(_member(r.fields, upsert_key)["email_address"]) for r in records]
            outcomes = trigger_journey(self.http, self.journey, list(zip(outcomes, emails, strict=True)))
        return outcomes

    def subscribe(self, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """One batch subscribe with `update_existing`: one outcome per record, in order.

        Members refused for one of our merge fields (deleted at Mailchimp since we ensured it) are sent
        once more after the definitions were checked again and the missing ones created.
        """
        outcomes, refused = self._batch_subscribe(upsert_key, records)
        if refused and self.merge_fields.ensure(force=True):
            again, _ = self._batch_subscribe(upsert_key, [r for r in records if r.record_key in refused])
            retried = {o.record_key: o for o in again}
            outcomes = [retried.get(o.record_key, o) for o in outcomes]
        return outcomes

    def _batch_subscribe(self, upsert_key: str, records: Sequence[Record]) -> tuple[list[Outcome], set[str]]:
        """Outcomes in order, and the keys of records refused for naming one of our merge fields."""
        members = [_member(r.fields, upsert_key) for r in records]
        response = self.http.request(
            "POST", f"/lists/{self.list_id}", json={"members": members, "update_existing": True}
        )
        body: dict[str, Any] = response.json()
        by_hash = {subscriber_hash(str(r.fields[upsert_key])): r for r in records}
        outcomes: dict[str, Outcome] = {}
        for kind, status in (("new_members", SyncStatus.CREATED), ("updated_members", SyncStatus.UPDATED)):
            for member in body.get(kind, []):
                record = by_hash.get(
                    str(member.get("id") or subscriber_hash(str(member.get("email_address", ""))))
                )
                if record is not None:
                    outcomes[record.record_key] = Outcome(
                        record.record_key, status, remote_id=str(member.get("id"))
                    )
        refused: set[str] = set()
        ours = self.merge_fields.tags
        for error in body.get("errors", []):
            record = by_hash.get(subscriber_hash(str(error.get("email_address", ""))))
            if record is None:
                continue
            code = str(error.get("error_code") or "error")
            field = str(error.get("field") or "")
            if field in ours:  # a merge tag is a name, never the member's data
                refused.add(record.record_key)
                code = f"{code} {field}"
            outcomes[record.record_key] = Outcome(record.record_key, SyncStatus.FAILED, error=code)
        ordered = [
            outcomes.get(r.record_key)
            or Outcome(r.record_key, SyncStatus.FAILED, error="no result from mailchimp")
            for r in records
        ]
        return ordered, refused

    def test_connection(self) -> ConnectionCheck:
        started = time.monotonic()
        self.http.request("GET", "/ping")
        return ConnectionCheck(self.name, True, "ping answered", int((time.monotonic() - started) * 1000))

    def erase(self, person: Person) -> Outcome:
        """Right to deletion: permanent delete; Mailchimp will refuse to re-import the address."""
        return self._remove(person, "POST", "/actions/delete-permanent", SyncStatus.ERASED)

    def archive(self, person: Person) -> Outcome:
        """Unsubscribe and archive (a withdrawn consent): the member can be added back later."""
        return self._remove(person, "DELETE", "", SyncStatus.UPDATED)

    def withdraw_consent(self, person: Person, withdrawn: frozenset[str]) -> Outcome | None:
        """A withdrawn marketing consent unsubscribes and archives the member."""
        return self.archive(person) if MARKETING in withdrawn else None

    def _remove(self, person: Person, method: str, action: str, done: SyncStatus) -> Outcome:
        key = f"user:{person.user_id}"
        if not person.email:
            return Outcome(key, SyncStatus.SKIPPED, error="no e-mail to identify the member")
        member = subscriber_hash(person.email)
        response = self.http.request(
            method, f"/lists/{self.list_id}/members/{member}{action}", allow_statuses=frozenset({404})
        )
        if response.status_code == 404:
            return Outcome(key, SyncStatus.UNCHANGED, error="not found")
        # The member hash is the e-mail's MD5: it stays at Mailchimp, never in the hub's log.
        return Outcome(key, done, remote_id=f"{method} member{action}".strip())

    def close(self) -> None:
        self.http.close()


def _member(fields: dict[str, Any], upsert_key: str) -> dict[str, Any]:
    member = nest(fields)
    member["email_address"] = member.pop(upsert_key)
    # Batch subscribe takes `status`; a mapping may say `status_if_new` as the member PUT does.
    member["status"] = member.pop("status_if_new", None) or member.get("status") or "subscribed"
    tags = member.get("tags")
    if isinstance(tags, str):
        member["tags"] = [tags]
    return member
