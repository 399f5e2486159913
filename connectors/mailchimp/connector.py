"""Mailchimp Marketing: audience members by batch subscribe (500 a request), basic auth with the API key.

Choices, with the vendor facts behind them:

- Tags follow the host's state (`tag_state`): the tags that hold ride in the batch subscribe body
  (`members[].tags`, which since January 2022 reach existing members too: "Added ability to sync tags to
  existing members", Mailchimp release notes), so tagging costs no request beyond the batch: 2 requests
  per 1,000 records. A tag that no longer holds (a completed goal's `goal:<kind>`, an assessment band
  superseded by a newer assessment of that type) is taken off by tag (`tag_removal`): a tag is a static
  segment, and `POST .../segments/{tag id}` with `members_to_remove` takes it off up to 500 members in one
  request, so a batch costs one request per distinct tag that no longer holds for some of its people and
  that one of them still carries (the batch subscribe's answer lists each member's tags: a first sync
  sends none; the ids come from the segment listing the segments already make). We never send
  `sync_tags: true`, which replaces *all* of a member's tags: the clinic's own tags, sign-up form tags and
  `ennu:registered` would be wiped on every push. `POST /batches` (asynchronous, no per-record outcome
  in the push, no ordering with the subscribe) is not needed either.
- The tags are computed from the person's goals and assessments as the host holds them at push time
  (a reader the pipeline hands in, `tasks/host_tags.py`), never from the event alone: a late, older event
  cannot re-activate a tag a newer state removed, and any event type's mapping of members gets them.
- Saved segments per goal kind and assessment type (`segments`) are tag conditions, created once per
  audience, looked up by name at the vendor.
- Merge fields the mappings write are created at the audience when missing (`merge_fields`),
  checked once per connector instance and remembered across processes by fingerprint.
- Follow-ups: the objects `assessment_followups` and `goal_followups` are the same batch subscribe, then one
  member event per person written (`member_events`; names from MAILCHIMP_ASSESSMENT_EVENT and
  MAILCHIMP_GOAL_COMPLETED_EVENT), which starts the journeys that begin with that event. The object
  `journey_members` triggers a Customer Journey API step instead (`journey`), when MAILCHIMP_JOURNEY_ID and
  MAILCHIMP_JOURNEY_STEP_ID are set. Each costs one request per person: the API takes one contact a call.
- Erasure (`erase`) is the permanent delete (`POST .../actions/delete-permanent`): the member, its tags and
  its events are gone and the address can never be re-imported, it must re-subscribe itself. `archive`
  (`DELETE .../members/{hash}`) is "unsubscribe and archive": the member leaves the audience but can be
  added back; it is for a withdrawn consent, never for a deletion request.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from connectors.base import MARKETING, AmbiguousSends, HttpConnector, ObjectSpec, Outcome, Person, Record
from connectors.endpoint import resolve_endpoint
from connectors.http import VendorHttp
from connectors.mailchimp.errors import TABLE
from connectors.mailchimp.journey import JourneyStep, trigger_journey
from connectors.mailchimp.member_events import PROPERTIES, event_call, properties_of
from connectors.mailchimp.merge_fields import (
    DatabaseMemory,
    EnsuredMemory,
    MergeField,
    MergeFieldEnsurer,
    merge_fields_from_mappings,
)
from connectors.mailchimp.per_member import call_each
from connectors.mailchimp.segments import SegmentEnsurer, SegmentSpec, wanted_segments
from connectors.mailchimp.settings import MailchimpSettings
from connectors.mailchimp.tag_removal import TagRemover
from connectors.mailchimp.tag_state import HostFacts, PersonFacts, TagState, tag_state
from ennu.follow_up import follow_ups_for
from ennu.models import SyncStatus
from ennu.settings import Settings, get_settings

SANDBOX_API_KEY = "sandbox-key-us1"
BATCH_LIMIT = 500  # members of one batch subscribe
MEMBERS = "members"
JOURNEY_MEMBERS = "journey_members"  # members, then the configured journey step for each subscribed one
ASSESSMENT_FOLLOWUPS = "assessment_followups"  # members, then the assessment event for each written one
GOAL_FOLLOWUPS = "goal_followups"  # members, then the goal-completed event for each written one
FOLLOWUPS = (ASSESSMENT_FOLLOWUPS, GOAL_FOLLOWUPS)


@dataclass(frozen=True)
class EventNames:
    """The member event each follow-up object sends (MailchimpSettings)."""

    assessment: str = "assessment_completed"
    goal_completed: str = "goal_completed"

    def of(self, object_name: str) -> str:
        return self.assessment if object_name == ASSESSMENT_FOLLOWUPS else self.goal_completed


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


def starts_journey(object_name: str, record: Record) -> bool:
    """Whether the record's follow-up event goes: always after an assessment; after a completed goal when
    its kind's follow-ups (ENNU_GOAL_FOLLOW_UP, ENNU_GOAL_FOLLOW_UP_BY_KIND) include `journey`. The tags
    follow the goal either way."""
    if object_name != GOAL_FOLLOWUPS:
        return True
    settings = get_settings()
    kind = record.fields.get(f"{PROPERTIES}goal_kind")
    chosen = follow_ups_for(
        str(kind) if kind else None, settings.goal_follow_up, settings.goal_follow_up_by_kind
    )
    return "journey" in chosen


class MailchimpConnector(HttpConnector):
    """Members of one audience (list), upserted by batch subscribe with `update_existing`."""

    name: ClassVar[str] = "mailchimp"
    # A member is its e-mail address (its id is the address's hash); its fields are open: merge fields
    # are the audience's own.
    objects: ClassVar[tuple[ObjectSpec, ...]] = (
        ObjectSpec(MEMBERS, BATCH_LIMIT, upsert_keys=("email_address",)),
        ObjectSpec(JOURNEY_MEMBERS, BATCH_LIMIT, upsert_keys=("email_address",)),
        # A member event has no idempotency key: a lost answer sends it again, with the same host event id
        # in its properties (`ennu_event_id`), so a repeat is recognisable.
        ObjectSpec(
            ASSESSMENT_FOLLOWUPS, BATCH_LIMIT, upsert_keys=("email_address",), ambiguous_sends="resend"
        ),
        ObjectSpec(GOAL_FOLLOWUPS, BATCH_LIMIT, upsert_keys=("email_address",), ambiguous_sends="resend"),
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
        segments: tuple[SegmentSpec, ...] = (),
        events: EventNames | None = None,
        facts: HostFacts | None = None,
    ) -> None:
        """`facts` reads the people's goals and assessments from the host (the pipeline hands one in,
        `tasks.host_biomarkers.provide_host_data`); without it only the mapping's own tags are sent."""
        super().__init__(http)
        self.list_id = list_id
        memory = memory or DatabaseMemory(self.name)
        self.merge_fields = MergeFieldEnsurer(http, list_id, merge_fields, memory)
        self.segments = SegmentEnsurer(http, list_id, segments)
        self.tags = TagRemover(http, list_id, self.segments)
        self.journey = journey
        self.events = events or EventNames()
        self.facts = facts

    @classmethod
    def expected_requests(cls, object_name: str, records: int) -> int:
        """The batch subscribes, plus one request per person for a follow-up (event or journey trigger).
        A request taking a tag that no longer holds off the batch's members (one per such tag and 500
        members) is not foreseen: there are few (a completed goal, a changed band) and each takes its
        rate-limit slot when it is sent."""
        batches = max(1, math.ceil(records / BATCH_LIMIT))
        return batches + (records if object_name in (*FOLLOWUPS, JOURNEY_MEMBERS) else 0)

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
            segments=wanted_segments() if own.segments else (),
            events=EventNames(own.assessment_event, own.goal_completed_event),
        )

    def send(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        self.merge_fields.ensure()
        self.segments.ensure()
        facts = self.facts.of({r.user_id for r in records if r.user_id is not None}) if self.facts else {}
        states = [tag_state(facts[r.user_id]) if r.user_id in facts else TagState() for r in records]
        outcomes, carried = self.subscribe(upsert_key, records, states)
        emails = [str(_member(r.fields, upsert_key)["email_address"]) for r in records]
        hashes = [subscriber_hash(email) for email in emails]
        self.segments.applied({tag for state in states for tag in state.active})
        outcomes = self.tags.remove(
            [
                (o, email, still_carried(s.inactive, carried.get(member)))
                for o, email, member, s in zip(outcomes, emails, hashes, states, strict=True)
            ]
        )
        if object_name in FOLLOWUPS:
            name = self.events.of(object_name)
            calls = [
                event_call(self.list_id, member, name, self._properties(object_name, record, facts))
                if starts_journey(object_name, record)
                else None
                for member, record in zip(hashes, records, strict=True)
            ]
            outcomes = call_each(self.http, "event", list(zip(outcomes, calls, strict=True)))
        if object_name == JOURNEY_MEMBERS and self.journey is not None:
            outcomes = trigger_journey(self.http, self.journey, list(zip(outcomes, emails, strict=True)))
        return outcomes

    @staticmethod
    def _properties(object_name: str, record: Record, facts: dict[int, PersonFacts]) -> dict[str, Any]:
        """The mapping's `properties.*` and the host event's id (an opaque id, stable across repeats); an
        assessment follow-up adds the score band of the person's latest assessment of that type, from the
        host's state like the tags (the band only, never the score)."""
        properties = properties_of(record.fields)
        properties["ennu_event_id"] = record.event_id
        kind = properties.get("assessment_type")
        person = facts.get(record.user_id) if record.user_id is not None else None
        if object_name == ASSESSMENT_FOLLOWUPS and person is not None and kind is not None:
            properties["score_band"] = person.latest_band.get(str(kind))
        return properties

    def subscribe(
        self, upsert_key: str, records: Sequence[Record], states: Sequence[TagState] | None = None
    ) -> tuple[list[Outcome], dict[str, frozenset[str]]]:
        """One batch subscribe with `update_existing`: one outcome per record, in order, and the tags each
        member carries after it (by subscriber hash; where the answer lists them). Each member's tags
        are the mapping's own and the active ones of its `states` entry.

        Members refused for one of our merge fields (deleted at Mailchimp since we ensured it) are sent
        once more after the definitions were checked again and the missing ones created.
        """
        members = [
            _member(r.fields, upsert_key, state.active)
            for r, state in zip(records, states or [TagState()] * len(records), strict=True)
        ]
        outcomes, refused, carried = self._batch_subscribe(upsert_key, records, members)
        if refused and self.merge_fields.ensure(force=True):
            again_at = [i for i, r in enumerate(records) if r.record_key in refused]
            again, _, carried_again = self._batch_subscribe(
                upsert_key, [records[i] for i in again_at], [members[i] for i in again_at]
            )
            retried = {o.record_key: o for o in again}
            outcomes = [retried.get(o.record_key, o) for o in outcomes]
            carried.update(carried_again)
        return outcomes, carried

    def _batch_subscribe(
        self, upsert_key: str, records: Sequence[Record], members: list[dict[str, Any]]
    ) -> tuple[list[Outcome], set[str], dict[str, frozenset[str]]]:
        """Outcomes in order, the keys of records refused for naming one of our merge fields, and the tags
        of each written member whose answer lists them (`tags: [{id, name}]`, as a member read does)."""
        response = self.http.request(
            "POST", f"/lists/{self.list_id}", json={"members": members, "update_existing": True}
        )
        body: dict[str, Any] = response.json()
        by_hash = {subscriber_hash(str(r.fields[upsert_key])): r for r in records}
        outcomes: dict[str, Outcome] = {}
        carried: dict[str, frozenset[str]] = {}
        for kind, status in (("new_members", SyncStatus.CREATED), ("updated_members", SyncStatus.UPDATED)):
            for member in body.get(kind, []):
                record = by_hash.get(
                    str(member.get("id") or subscriber_hash(str(member.get("email_address", ""))))
                )
                if record is not None:
                    outcomes[record.record_key] = Outcome(
                        record.record_key, status, remote_id=str(member.get("id"))
                    )
                    tags = member.get("tags")
                    if isinstance(tags, list):
                        names = (t.get("name") for t in tags if isinstance(t, dict))
                        carried[subscriber_hash(str(record.fields[upsert_key]))] = frozenset(
                            str(n) for n in names
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
        return ordered, refused, carried

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


def still_carried(inactive: tuple[str, ...], carried: frozenset[str] | None) -> tuple[str, ...]:
    """The tags that no longer hold and the member still carries: all of them when its answer did not
    list its tags (never a removal skipped on a guess)."""
    return inactive if carried is None else tuple(t for t in inactive if t in carried)


def _member(fields: dict[str, Any], upsert_key: str, state_tags: Sequence[str] = ()) -> dict[str, Any]:
    member = nest(fields)
    member.pop("properties", None)  # a follow-up event's, never the member's
    member["email_address"] = member.pop(upsert_key)
    # Batch subscribe takes `status`; a mapping may say `status_if_new` as the member PUT does.
    member["status"] = member.pop("status_if_new", None) or member.get("status") or "subscribed"
    tags = member.get("tags")
    given = [tags] if isinstance(tags, str) else list(tags or [])
    combined = list(dict.fromkeys([*given, *state_tags]))
    if combined:
        member["tags"] = combined
    else:
        member.pop("tags", None)
    return member
