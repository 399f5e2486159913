"""The connector surface every vendor module implements: push, test the connection, erase."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from ennu.models import SyncStatus

if TYPE_CHECKING:
    from ennu.settings import Settings


@dataclass(frozen=True)
class Record:
    """One mapped record for one destination object.

    `fields` holds only the destination fields that the mapping names; `record_key` is the host-side
    identity ("user:42"), never personal data, and is what the sync log stores.
    """

    record_key: str
    event_id: str | None
    user_id: int | None
    fields: dict[str, Any]
    # The caller's own ids for this delivery (e.g. {"delivery_id": "812"}), for vendors that echo them back
    # (Twilio's StatusCallback URL). A few short ids, never personal data.
    delivery_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What happened to one record at one destination. `error` is a code or reason, never a value."""

    record_key: str
    status: SyncStatus
    remote_id: str | None = None
    error: str | None = None
    duration_ms: int | None = None  # of the request that carried it, set by the push stage
    # DEFERRED only. Set: a wait by design (quiet hours, a partner result not there yet) that costs no
    # attempt; the delivery is offered again at that time. None: vendor-side trouble, an attempt spent.
    not_before: datetime | None = None


@dataclass(frozen=True)
class ConnectionCheck:
    integration: str
    ok: bool
    detail: str
    latency_ms: int | None = None


@dataclass(frozen=True)
class ChangedRecord:
    """A record changed at the vendor (inbound sync): its vendor id, when it changed, the fields asked for."""

    remote_id: str
    modified_at: datetime  # aware, UTC
    values: dict[str, Any]


@dataclass(frozen=True)
class Person:
    """Who to erase: the host user id and the keys destinations know them by."""

    user_id: int
    email: str | None = None
    phone: str | None = None
    goal_ids: tuple[int, ...] = ()  # their health goals, which CRMs hold as deals / opportunities
    extra: dict[str, str] = field(default_factory=dict)


AmbiguousSends = Literal["idempotent", "reconcile", "resend"]
# The consents a person can withdraw in the host (users.marketing_consent, users.communication_consent).
MARKETING = "marketing"
COMMUNICATION = "communication"


class Connector(ABC):
    """A destination: subclasses set the class attributes without a default and implement the surface."""

    name: ClassVar[str]
    consent_category: ClassVar[str]  # "crm", "marketing", "communication", "analytics", "clinical", ...
    batch_sizes: ClassVar[dict[str, int]]  # destination object -> records per request
    # What to do with a send that may have reached the vendor unanswered (UNKNOWN, AmbiguousError):
    # "idempotent": send again, the vendor de-duplicates (upsert by key, idempotency key, conditional create);
    # "reconcile": look it up with `reconcile` first, send only what is not there;
    # "resend": send again, at least once; a stable delivery id in the payload lets a receiver de-duplicate.
    ambiguous_sends: ClassVar[AmbiguousSends]
    # The secrets (environment variables or Secret blocks) whose presence means real credentials are set;
    # empty: the connector needs none. An erasure asks a disabled destination only when it has them.
    credential_names: ClassVar[tuple[str, ...]] = ()
    # A field whose equal values should share a request (GA4: one client_id per request); None: any order.
    batch_group_field: ClassVar[str | None] = None
    # Requests a record costs where the vendor takes them one by one (look-up-then-create: 2); 0: a
    # batch is one request. Rate-limit slots for a push are taken ahead by this estimate.
    requests_per_record: ClassVar[int] = 0

    def expected_requests(self, object_name: str, records: int) -> int:
        """About how many requests pushing `records` records costs (an estimate: never a limit)."""
        if self.requests_per_record:
            return self.requests_per_record * records
        return max(1, math.ceil(records / self.batch_sizes.get(object_name, 1)))

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        """A connector configured from settings and secrets (or the sandbox when none are set)."""

    @abstractmethod
    def push(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """Send one batch (at most `batch_sizes[object_name]` records) and return one outcome per record.

        `upsert_key` is the destination field that identifies a record at the vendor (e.g. `email`).

        Raises `connectors.http.RetryableError` when the whole batch should be retried later (a connector
        whose sends are not idempotent raises it only while nothing of the batch has been sent).
        """

    @classmethod
    def has_credentials(cls) -> bool:
        """Whether this site configured the connector's credentials (never the sandbox's stand-ins)."""
        from ennu.secrets import read_secret

        return not cls.credential_names or any(read_secret(name) for name in cls.credential_names)

    @abstractmethod
    def test_connection(self) -> ConnectionCheck:
        """A cheap authenticated read."""

    @abstractmethod
    def erase(self, person: Person) -> Outcome:
        """Erase or anonymise the person at the vendor (right to deletion)."""

    def withdraw_consent(self, person: Person, withdrawn: frozenset[str]) -> Outcome | None:
        """Stop what the person no longer consents to: `withdrawn` holds "marketing" and/or "communication".

        E.g. unsubscribe from a list, set a CRM's opt-out fields. None: nothing of that here.
        """
        return None

    def reconcile(self, object_name: str, records: Sequence[Record], since: datetime) -> dict[str, Outcome]:
        """After an ambiguous send, what the vendor already has of `records`: record key -> outcome.

        For vendors without idempotency keys (`ambiguous_sends == "reconcile"`): each record found at the
        vendor, created at or after `since` (aware, UTC: when the ambiguous attempt began), has an outcome
        with its remote id; a record with no entry was not found, and the caller sends it. Lookup
        failures raise the shared client's errors. Other connectors find nothing to reconcile.
        """
        return {}

    def fetch_changes(self, object_name: str, since: datetime, fields: Sequence[str]) -> list[ChangedRecord]:
        """Records of `object_name` changed at the vendor after `since`, oldest first (inbound sync).

        Only CRMs implement it; the inbound sync asks only connectors whose mappings have an inbound half.
        """
        raise NotImplementedError(f"{self.name} does not report changes")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections."""
