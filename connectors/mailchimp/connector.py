"""Mailchimp Marketing: audience members by batch subscribe (500 a request), basic auth with the API key.

Choices, with the vendor facts behind them:

- Tags (health goals, assessment types) ride in the batch subscribe body (`members[].tags`). Since
  January 2022 Mailchimp adds them to existing members too ("Added ability to sync tags to existing
  members", Mailchimp release notes), so tagging costs no request beyond the batch: 2 requests per
  1,000 records. We never send `sync_tags` (which would replace a member's tags): tags only accumulate,
  a person may have several goals. Neither the per-member tags endpoint (one request a person) nor
  `POST /batches` (asynchronous, no per-record outcome in the push, no ordering with the subscribe) nor
  static-segment writes (one request per tag per batch) is needed.
- Merge fields the mappings write are created at the audience when missing (`merge_fields`),
  checked once per connector instance and remembered across processes by fingerprint.
- A mapping asks for the Customer Journey follow-up with the object `journey_members` instead of
  `members`: the same batch subscribe, then one trigger per person subscribed successfully in that push
  (`journey`), when MAILCHIMP_JOURNEY_ID and MAILCHIMP_JOURNEY_STEP_ID are set.
- Erasure (`erase`) is the permanent delete (`POST .../actions/delete-permanent`): the address can then
  never be re-imported, it must re-subscribe itself. `archive` (`DELETE .../members/{hash}`) is
  "unsubscribe and archive": the member leaves the audience but can be added back; it is for a
  withdrawn consent, never for a deletion request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar, Self

from connectors.base import MARKETING, AmbiguousSends, HttpConnector, ObjectSpec, Outcome, Person, Record
from connectors.endpoint import resolve_endpoint
from connectors.http import VendorHttp
from connectors.mailchimp.errors import TABLE
from connectors.mailchimp.journey import JourneyStep, trigger_journey
from connectors.mailchimp.merge_fields import (
    DatabaseMemory,
    EnsuredMemory,
    MergeField,
    MergeFieldEnsurer,
    merge_fields_from_mappings,
)
from connectors.mailchimp.settings import MailchimpSettings
from ennu.models import SyncStatus
from ennu.settings import Settings

SANDBOX_API_KEY = "sandbox-key-us1"
BATCH_LIMIT = 500  # members of one batch subscribe
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


class MailchimpConnector(HttpConnector):
    """Members of one audience (list), upserted by batch subscribe with `update_existing`."""

    name: ClassVar[str] = "mailchimp"
    # A member is its e-mail address (its id is the address's hash); its fields are open: merge fields
    # are the audience's own.
    objects: ClassVar[tuple[ObjectSpec, ...]] = (
        ObjectSpec(MEMBERS, BATCH_LIMIT, upsert_keys=("email_address",)),
        ObjectSpec(JOURNEY_MEMBERS, BATCH_LIMIT, upsert_keys=("email_address",)),
    )
    settings_class = MailchimpSettings
    table = TABLE
    ambiguous_sends: ClassVar[AmbiguousSends] = "idempotent"  # members are keyed by the e-mail's hash

    def __init__(
        self,
        http: VendorHttp,
        list_id: str,
        *,
        merge_fields: tuple[MergeField, ...] = (),
        memory: EnsuredMemory | None = None,
        journey: JourneyStep | None = None,
    ) -> None:
        super().__init__(http)
        self.list_id = list_id
        memory = memory or DatabaseMemory(self.name)
        self.merge_fields = MergeFieldEnsurer(http, list_id, merge_fields, memory)
        self.journey = journey

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        own = MailchimpSettings.load()
        configured_key = MailchimpSettings.secret("MAILCHIMP_API_KEY")
        endpoint = resolve_endpoint(
            cls.name,
            credential_env="MAILCHIMP_API_KEY",
            vendor_base_url=vendor_base_url(configured_key.get_secret_value()) if configured_key else None,
            configured_base_url=own.base_url,
            sandbox_path="mailchimp/3.0",
            sandbox_secret=SANDBOX_API_KEY,
        )
        http = cls.client(
            endpoint.base_url,
            auth=("ennu", endpoint.secret.get_secret_value()),
            rate=own.rate_limit,
            rate_limited=rate_limited,
        )
        journey = (
            JourneyStep(own.journey_id, own.journey_step_id)
            if own.journey_id is not None and own.journey_step_id is not None
            else None
        )
        return cls(
            http,
            own.list_id,
            merge_fields=merge_fields_from_mappings(settings.mappings_dir),
            journey=journey,
        )

    def send(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
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

    def check_connection(self) -> str:
        self.http.request("GET", "/ping")
        return "ping answered"

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
            method, f"/lists/{self.list_id}/members/{member}{action}", allow_statuses=TABLE.expect("gone")
        )
        if response.status_code == 404:
            return Outcome(key, SyncStatus.UNCHANGED, error="not found")
        # The member hash is the e-mail's MD5: it stays at Mailchimp, never in the hub's log.
        return Outcome(key, done, remote_id=f"{method} member{action}".strip())


def _member(fields: dict[str, Any], upsert_key: str) -> dict[str, Any]:
    member = nest(fields)
    member["email_address"] = member.pop(upsert_key)
    # Batch subscribe takes `status`; a mapping may say `status_if_new` as the member PUT does.
    member["status"] = member.pop("status_if_new", None) or member.get("status") or "subscribed"
    tags = member.get("tags")
    if isinstance(tags, str):
        member["tags"] = [tags]
    return member
