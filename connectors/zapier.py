"""Zapier REST hooks: each record's mapped JSON is POSTed to every hook subscribed to its event type."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from connectors.base import AmbiguousSends, ConnectionCheck, Connector, Outcome, Person, Record
from connectors.http import RETRYABLE_STATUSES, ErrorPolicy, VendorHttp
from connectors.rate_limit import RateLimit
from connectors.zapier_store import Subscription, ZapierSubscriptions
from ennu.models import SyncStatus
from ennu.settings import Settings

EVENT_FIELD = "event"  # the mapped field naming the event type, as subscriptions name it
DEFAULT_REQUESTS_PER_HOUR = 20000
GONE = 410  # Zapier's answer for a hook whose Zap was turned off or deleted: unsubscribe it
# 4xx answers are read per hook (410 unsubscribes, others fail the record); 408/425/429 and 5xx retry.
PER_HOOK_STATUSES = frozenset(s for s in range(400, 500) if s not in RETRYABLE_STATUSES)
POLICY = ErrorPolicy()
REMEMBERED_DELIVERIES = 10_000
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


class ZapierConnector(Connector):
    """Instant triggers for Zaps: at-least-once delivery, with each payload's `id` for de-duplication."""

    name: ClassVar[str] = "zapier"
    consent_category: ClassVar[str] = "automation"
    batch_sizes: ClassVar[dict[str, int]] = {"hooks": 50}  # one POST per hook and record
    requests_per_record: ClassVar[int] = 1  # each record to each hook
    # A lost answer is posted again: a hook cannot be asked what it received, so this errs toward a Zap
    # triggered twice (each payload's `id`, the host event id, lets the Zap de-duplicate) rather than never.
    ambiguous_sends: ClassVar[AmbiguousSends] = "resend"

    def __init__(self, http: VendorHttp, subscriptions: ZapierSubscriptions) -> None:
        self.http = http
        self.subscriptions = subscriptions
        # Hooks that already took a record: a Prefect retry of the batch (after another hook's 5xx)
        # does not post to them again. Per process and bounded, so this narrows duplicates, no more.
        self._delivered: OrderedDict[tuple[str | None, str, str], None] = OrderedDict()
        self._delivered_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        per_hour = int(os.environ.get("ZAPIER_REQUESTS_PER_HOUR", DEFAULT_REQUESTS_PER_HOUR))
        http = VendorHttp(
            cls.name,
            "",  # every request goes to a subscription's absolute target URL
            timeout=settings.http_timeout_seconds,
            policy=POLICY,
            rate_limit=RateLimit(cls.name, per_hour) if rate_limited else None,
        )
        return cls(http, ZapierSubscriptions(settings.database_url))

    def push(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        if object_name != "hooks":
            raise ValueError(f"zapier: unsupported object {object_name!r}")
        subscribed: dict[str, list[Subscription]] = {}  # read once per event type and push
        return [self._deliver(record, subscribed) for record in records]

    def _deliver(self, record: Record, subscribed: dict[str, list[Subscription]]) -> Outcome:
        event_type = record.fields.get(EVENT_FIELD)
        if not event_type:
            return Outcome(record.record_key, SyncStatus.FAILED, error=f"no {EVENT_FIELD} field")
        if str(event_type) not in subscribed:
            subscribed[str(event_type)] = self.subscriptions.list(str(event_type))
        hooks = subscribed[str(event_type)]
        if not hooks:
            return Outcome(record.record_key, SyncStatus.SKIPPED, error="no zapier subscription")
        payload = hook_payload(record.fields)
        failures: list[str] = []
        delivered = 0
        for hook in list(hooks):
            key = (record.event_id, record.record_key, hook.id)
            if self._already_delivered(key):
                delivered += 1
                continue
            response = self.http.request(
                "POST", hook.target_url, json=payload, allow_statuses=PER_HOOK_STATUSES
            )
            if response.status_code == GONE:
                self.subscriptions.remove(hook.id)
                hooks.remove(hook)  # the push's later records skip it too
            elif response.status_code >= 400:
                failures.append(f"http {response.status_code}")
            else:
                delivered += 1
                self._remember(key)
        if failures:
            return Outcome(record.record_key, SyncStatus.FAILED, error=failures[0])
        if not delivered:
            return Outcome(record.record_key, SyncStatus.SKIPPED, error="every subscription was gone")
        return Outcome(record.record_key, SyncStatus.CREATED, remote_id=f"{delivered} hooks")

    def _already_delivered(self, key: tuple[str | None, str, str]) -> bool:
        with self._delivered_lock:
            return key in self._delivered

    def _remember(self, key: tuple[str | None, str, str]) -> None:
        with self._delivered_lock:
            self._delivered[key] = None
            while len(self._delivered) > REMEMBERED_DELIVERIES:
                self._delivered.popitem(last=False)

    def test_connection(self) -> ConnectionCheck:
        """Zapier has no API of its own to call: the check is that the subscriptions can be read."""
        return ConnectionCheck(self.name, True, f"{self.subscriptions.count()} hook subscriptions", None)

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
                "POST", hook.target_url, json=notice, allow_statuses=PER_HOOK_STATUSES
            )
            if response.status_code == GONE:
                self.subscriptions.remove(hook.id)
            elif response.status_code >= 400:
                return Outcome(key, SyncStatus.FAILED, error=f"http {response.status_code}")
            else:
                told += 1
        return Outcome(key, SyncStatus.ERASED, remote_id=f"{told} hooks notified")

    def close(self) -> None:
        self.http.close()
