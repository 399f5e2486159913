"""Zapier REST hooks: each record's mapped JSON is POSTed to every hook subscribed to its event type."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, Self

from connectors.base import AmbiguousSends, HttpConnector, ObjectSpec, Outcome, Person, Record
from connectors.http import AmbiguousError, PermanentError, RetryableError, VendorHttp
from connectors.zapier.errors import GONE, TABLE
from connectors.zapier.settings import ZapierSettings
from ennu.models import SyncStatus
from ennu.settings import Settings
from ennu.zapier_subscriptions import (
    HookAttempt,
    Subscription,
    TargetRefused,
    ZapierSubscriptions,
    delivery_key,
    normalise_target,
)

logger = logging.getLogger(__name__)

EVENT_FIELD = "event"  # the mapped field naming the event type, as subscriptions name it
ERASURE_EVENT = "user.erased"  # what every hook is told when a person is erased, so its Zap can clean up
# A hook in trouble while the others take the record: tried this many times in all (the product's promise
# of at most 3 attempts), the record offered again after 30 s, 60 s... (or the hook's Retry-After).
MAX_HOOK_ATTEMPTS = 3
HOOK_RETRY_SECONDS = 30.0

HookResult = Literal["delivered", "gone", "refused", "trouble"]


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
    """One `send`: the subscriptions read (once per event type), what each hook already has of the batch's
    records, the hooks in trouble in this batch (not posted to again in it), and whether any hook may
    have taken anything."""

    subscribed: dict[str, list[Subscription]]
    kept: dict[str, dict[str, HookAttempt]]
    down: dict[str, RetryableError] = field(default_factory=dict)
    may_have_posted: bool = False
    keep: list[tuple[str, list[str], dict[str, str]]] = field(default_factory=list)
    settle: list[str] = field(default_factory=list)


@dataclass
class _Hooks:
    """What the hooks of one record did with it in one send."""

    delivered: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # for good: a 4xx, a redirect, a bad stored URL
    troubled: dict[str, RetryableError] = field(default_factory=dict)  # may work later


class ZapierConnector(HttpConnector):
    """Instant triggers for Zaps: each payload's `id` for de-duplication; a post whose answer its worker saw
    lost is posted again, one orphaned by its worker is failed (`ambiguous_sends`)."""

    name: ClassVar[str] = "zapier"
    # One POST per hook and record. The payload's `id` (the host event id) is what a Zap de-duplicates
    # on; its fields are open (a Zap takes any JSON).
    objects: ClassVar[tuple[ObjectSpec, ...]] = (ObjectSpec("hooks", 50, upsert_keys=("id",)),)
    settings_class = ZapierSettings
    table = TABLE
    requests_per_record: ClassVar[int] = 1  # each record to each hook
    # A hook cannot be asked what it received. The worker that saw its own post's answer lost (a reset, a
    # timeout) posts it again to that hook: a Zap triggered twice (each payload's `id`, the host event id,
    # lets the Zap de-duplicate) is better than a trigger that never fired. But each record's delivery is
    # marked just before its first post leaves, and a record orphaned by its worker (killed or stopped with
    # a post in flight) is failed with that reason, visible in the status and re-playable, instead of being
    # posted to every hook again by another worker: a crash mid-batch would otherwise run every Zap of the
    # record a second time (e-mails, rows, tasks), the hooks that had it included.
    ambiguous_sends: ClassVar[AmbiguousSends] = "resend_unless_orphaned"

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
        """Each record to every hook subscribed to its event; one hook's trouble never withholds the record
        from the others.

        Per hook: a success, a 410 (the subscription is removed), a refusal for good (another 4xx, a
        redirect, a stored URL that is no hook: recorded with the hook's id and the reason), or trouble
        that may pass (429, 5xx, a refused connection, after the shared client's own retries). A hook in
        trouble is not posted to again in the batch. A record owed to a hook in trouble is DEFERRED until
        a later offer (after `HOOK_RETRY_SECONDS`), which posts only to the hooks still owed it (the
        others' deliveries are kept in `ZapierHookAttempt`); after `MAX_HOOK_ATTEMPTS` the hook's part
        fails and the record is FAILED with that hook's reason. While nothing of the batch may have
        reached any hook (in this send or an earlier one), trouble raises instead: the destination as a
        whole may be down, and the delivery engine offers the whole batch again later.
        """
        keys = {r.record_key: delivery_key(r.record_key, r.event_id) for r in records}
        batch = _Batch(subscribed={}, kept=self.subscriptions.attempts(keys.values()))
        outcomes = [self._deliver(record, keys[record.record_key], batch) for record in records]
        if batch.down and not batch.may_have_posted and not batch.kept:
            # Nothing of the batch reached any hook, now or at an earlier offer: Zapier, not one hook,
            # may be down. Nothing is kept; the engine offers the whole batch again (an attempt spent).
            raise next(iter(batch.down.values()))
        for key, delivered, failed in batch.keep:
            self.subscriptions.keep_attempts(key, delivered, failed)
        for key in batch.settle:
            self.subscriptions.settle(key)
        return outcomes

    def _deliver(self, record: Record, key: str, batch: _Batch) -> Outcome:
        event_type = record.fields.get(EVENT_FIELD)
        if not event_type:
            return Outcome(record.record_key, SyncStatus.FAILED, error=f"no {EVENT_FIELD} field")
        if str(event_type) not in batch.subscribed:
            batch.subscribed[str(event_type)] = self.subscriptions.list(str(event_type))
        hooks = batch.subscribed[str(event_type)]
        if not hooks:
            return Outcome(record.record_key, SyncStatus.SKIPPED, error="no zapier subscription")
        kept = batch.kept.get(key, {})
        payload = hook_payload(record.fields)
        done = _Hooks()
        had = [h.id for h in hooks if h.id in kept and kept[h.id].delivered]
        with self.sending([record]):  # marked once, just before the record's first post leaves
            for hook in list(hooks):
                if hook.id in had:
                    continue  # taken at an earlier offer: never posted twice
                if hook.id in batch.down:
                    done.troubled[hook.id] = batch.down[hook.id]
                    continue
                if self._post(hook, payload, batch, done) == "gone":
                    hooks.remove(hook)  # the push's later records skip it too
        owed = {
            hook_id: exc
            for hook_id, exc in done.troubled.items()
            if (kept[hook_id].attempts if hook_id in kept else 0) + 1 < MAX_HOOK_ATTEMPTS
        }
        delivered = len(had) + len(done.delivered)
        if owed:
            batch.keep.append((key, done.delivered, {h: e.reason for h, e in done.troubled.items()}))
            hook_id, exc = next(iter(owed.items()))
            tries = (kept[hook_id].attempts if hook_id in kept else 0) + 1
            wait = max(exc.retry_after or 0.0, HOOK_RETRY_SECONDS * 2 ** (tries - 1))
            # A hook's own trouble, not the vendor's: a wait (no attempt of the delivery's, no circuit
            # failure), capped here per hook instead.
            return Outcome(
                record.record_key,
                SyncStatus.DEFERRED,
                remote_id=f"{delivered} hooks" if delivered else None,
                error=f"hook {hook_id}: {exc.reason}",
                not_before=datetime.now(UTC) + timedelta(seconds=wait),
            )
        if kept:
            batch.settle.append(key)
        failures = {
            **done.refused,
            **{h: f"{e.reason} ({MAX_HOOK_ATTEMPTS} attempts)" for h, e in done.troubled.items()},
        }
        if failures:
            hook_id, reason = next(iter(failures.items()))
            return Outcome(
                record.record_key,
                SyncStatus.FAILED,
                remote_id=f"{delivered} hooks" if delivered else None,
                error=f"hook {hook_id}: {reason}",
            )
        if not delivered:
            return Outcome(record.record_key, SyncStatus.SKIPPED, error="every subscription was gone")
        return Outcome(record.record_key, SyncStatus.CREATED, remote_id=f"{delivered} hooks")

    def _post(self, hook: Subscription, payload: dict[str, Any], batch: _Batch, done: _Hooks) -> HookResult:
        """One payload to one hook, its result put in `done` (and `batch.down` for trouble); never raises."""
        try:
            target = normalise_target(hook.target_url)
        except TargetRefused as refused:
            logger.warning(
                "zapier: hook %s not posted to: stored target refused (%s)", hook.id, refused.reason
            )
            done.refused[hook.id] = f"stored target refused ({refused.reason})"
            return "refused"
        try:
            response = self.http.request(
                "POST", target, json=payload, allow_statuses=TABLE.expect("per hook")
            )
        except RetryableError as exc:
            if isinstance(exc, AmbiguousError):
                batch.may_have_posted = True  # it may have arrived: at least once, `id` de-duplicates
            batch.down[hook.id] = exc
            done.troubled[hook.id] = exc
            return "trouble"
        except PermanentError as exc:  # a redirect, a URL HTTP cannot send to
            done.refused[hook.id] = exc.reason
            return "refused"
        if response.status_code == GONE:
            self.subscriptions.remove(hook.id)
            return "gone"
        if response.status_code >= 400:
            done.refused[hook.id] = f"http {response.status_code}"
            return "refused"
        done.delivered.append(hook.id)
        batch.may_have_posted = True
        return "delivered"

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
        refused: list[str] = []
        trouble: RetryableError | None = None
        for hook in hooks.values():  # every hook is told, whichever of them is in trouble
            try:
                response = self.http.request(
                    "POST",
                    normalise_target(hook.target_url),
                    json=notice,
                    allow_statuses=TABLE.expect("per hook"),
                )
            except TargetRefused as exc:
                refused.append(f"hook {hook.id}: stored target refused ({exc.reason})")
                continue
            except RetryableError as exc:
                trouble = trouble or exc
                continue
            except PermanentError as exc:
                refused.append(f"hook {hook.id}: {exc.reason}")
                continue
            if response.status_code == GONE:
                self.subscriptions.remove(hook.id)
            elif response.status_code >= 400:
                refused.append(f"hook {hook.id}: http {response.status_code}")
            else:
                told += 1
        if trouble is not None:
            raise trouble  # told again later, every hook (the notice's `id` de-duplicates)
        if refused:
            return Outcome(key, SyncStatus.FAILED, remote_id=f"{told} hooks notified", error=refused[0])
        return Outcome(key, SyncStatus.ERASED, remote_id=f"{told} hooks notified")
