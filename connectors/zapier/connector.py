"""Zapier REST hooks: each record's mapped JSON is POSTed to every hook subscribed to its event type."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from connectors.base import AmbiguousSends, HttpConnector, ObjectSpec, Outcome, Person, Record
from connectors.http import AmbiguousError, RetryableError, VendorHttp
from connectors.zapier.errors import GONE, TABLE
from connectors.zapier.settings import ZapierSettings
from ennu.models import SyncStatus
from ennu.settings import Settings
from ennu.zapier_subscriptions import Subscription, ZapierSubscriptions

EVENT_FIELD = "event"  # the mapped field naming the event type, as subscriptions name it
ERASURE_EVENT = "user.erased"  # what every hook is told when a person is erased, so its Zap can clean up


def hook_payload(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON a hook receives: the mapped fields, dotted names nested (`assessment.type`)."""
    payload: dict[str, Any] = {}
    for name, value in fields.items():
        parts = name.split(".")
        node = payload
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return payload


@dataclass
class _Batch:
    """One `send`: the subscriptions read (once per event type) and whether a hook may have a record."""

    subscribed: dict[str, list[Subscription]]
    may_have_posted: bool = False


class ZapierConnector(HttpConnector):
    """Instant triggers for Zaps: at-least-once delivery, with each payload's `id` for de-duplication."""

    name: ClassVar[str] = "zapier"
    # One POST per hook and record. The payload's `id` (the host event id) is what a Zap de-duplicates
    # on; its fields are open (a Zap takes any JSON).
    objects: ClassVar[tuple[ObjectSpec, ...]] = (ObjectSpec("hooks", 50, upsert_keys=("id",)),)
    settings_class = ZapierSettings
    table = TABLE
    requests_per_record: ClassVar[int] = 1  # each record to each hook
    # A lost answer is posted again: a hook cannot be asked what it received, so this errs toward a Zap
    # triggered twice (each payload's `id`, the host event id, lets the Zap de-duplicate) rather than never.
    ambiguous_sends: ClassVar[AmbiguousSends] = "resend"

    def __init__(self, http: VendorHttp, subscriptions: ZapierSubscriptions) -> None:
        super().__init__(http)
        self.subscriptions = subscriptions

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        own = ZapierSettings.load()
        http = cls.client(
            "",  # every request goes to a subscription's absolute target URL
            rate=own.rate_limit,
            rate_limited=rate_limited,
        )
        return cls(http, ZapierSubscriptions(settings.database_url))

    def send(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """Each record to every hook subscribed to its event; once a hook may have taken something of this
        batch, trouble becomes outcomes, never a raise.

        The shared client posts again where that is safe (429, 5xx, a refused connection). Trouble that
        outlasts its retries, before any hook may have taken anything, raises: the delivery engine offers
        the whole batch again later. After that, the record in trouble is DEFERRED (UNKNOWN when its
        answer was lost) and the rest are DEFERRED unsent, so that the next offer does not post again
        what went: the record in trouble goes again to every hook, at least once (`id` de-duplicates).
        """
        batch = _Batch(subscribed={})
        outcomes: list[Outcome] = []
        trouble: str | None = None
        for record in records:
            if trouble is not None:
                outcomes.append(Outcome(record.record_key, SyncStatus.DEFERRED, error=trouble))
                continue
            try:
                outcomes.append(self._deliver(record, batch))
            except RetryableError as exc:
                if not batch.may_have_posted:
                    raise
                trouble = exc.reason
                status = SyncStatus.UNKNOWN if isinstance(exc, AmbiguousError) else SyncStatus.DEFERRED
                outcomes.append(Outcome(record.record_key, status, error=trouble))
        return outcomes

    def _deliver(self, record: Record, batch: _Batch) -> Outcome:
        event_type = record.fields.get(EVENT_FIELD)
        if not event_type:
            return Outcome(record.record_key, SyncStatus.FAILED, error=f"no {EVENT_FIELD} field")
        if str(event_type) not in batch.subscribed:
            batch.subscribed[str(event_type)] = self.subscriptions.list(str(event_type))
        hooks = batch.subscribed[str(event_type)]
        if not hooks:
            return Outcome(record.record_key, SyncStatus.SKIPPED, error="no zapier subscription")
        payload = hook_payload(record.fields)
        failures: list[str] = []
        delivered = 0
        for hook in list(hooks):
            try:
                response = self.http.request(
                    "POST", hook.target_url, json=payload, allow_statuses=TABLE.expect("per hook")
                )
            except AmbiguousError:
                batch.may_have_posted = True
                raise
            if response.status_code == GONE:
                self.subscriptions.remove(hook.id)
                hooks.remove(hook)  # the push's later records skip it too
            elif response.status_code >= 400:
                failures.append(f"http {response.status_code}")
            else:
                delivered += 1
                batch.may_have_posted = True
        if failures:
            return Outcome(record.record_key, SyncStatus.FAILED, error=failures[0])
        if not delivered:
            return Outcome(record.record_key, SyncStatus.SKIPPED, error="every subscription was gone")
        return Outcome(record.record_key, SyncStatus.CREATED, remote_id=f"{delivered} hooks")

    def check_connection(self) -> str:
        """Zapier has no API of its own to call: the check is that the subscriptions can be read."""
        return f"{self.subscriptions.count()} hook subscriptions"

    def erase(self, person: Person) -> Outcome:
        """Tell every subscribed hook (once per URL) that the person with this pseudonymous id was erased.

        Zapier keeps what it received in each Zap's task history; the notice is what lets a Zap's owner
        (or the Zap itself) delete it. A hook that answers 410 is unsubscribed, as for any delivery.
        """
        from ennu.pseudonyms import person_pseudonym

        key = f"user:{person.user_id}"
        pseudonymous_id = person_pseudonym(person.user_id)
        notice = {
            "id": f"{ERASURE_EVENT}:{pseudonymous_id}",
            "event": ERASURE_EVENT,
            "user_id": pseudonymous_id,
        }
        hooks = {hook.target_url: hook for hook in self.subscriptions.list(None)}
        told = 0
        for hook in hooks.values():
            response = self.http.request(
                "POST", hook.target_url, json=notice, allow_statuses=TABLE.expect("per hook")
            )
            if response.status_code == GONE:
                self.subscriptions.remove(hook.id)
            elif response.status_code >= 400:
                return Outcome(key, SyncStatus.FAILED, error=f"http {response.status_code}")
            else:
                told += 1
        return Outcome(key, SyncStatus.ERASED, remote_id=f"{told} hooks notified")
