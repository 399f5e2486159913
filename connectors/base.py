"""The connector surface every vendor module implements: push, test the connection, erase."""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import requests

from connectors.errors import DEFAULT_TABLE, ErrorTable
from connectors.http import VendorHttp, before_next_send
from connectors.request_rate import RequestRate
from ennu.models import SyncStatus

if TYPE_CHECKING:
    from connectors.settings import VendorSettings
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
    # Where the connector wrote the record to another object than its batch's (Salesforce: a person's Contact
    # record sent to the Lead they still are), that object, for the sync log; None: the batch's.
    object: str | None = None


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


@dataclass(frozen=True)
class ObjectSpec:
    """One object a connector writes, as data: what a mapping may name and how its records are sent."""

    name: str
    batch_size: int  # records per request (1: one request per record)
    # The destination fields a mapping may use as this object's upsert key; empty: any field it maps.
    upsert_keys: tuple[str, ...] = ()
    # The fields the vendor object accepts, where they are fixed (a wrong name is a lint error); None:
    # open (custom properties, free-form payloads).
    fields: frozenset[str] | None = None
    changes: bool = False  # the inbound sync can read its changes at the vendor (`fetch_changes`)
    # Requests one full batch costs (an upsert, then a look-up and a link for its associations: 3).
    requests_per_batch: int = 1
    # Where this object repeats differently from its connector (`Connector.ambiguous_sends`): Mailchimp's
    # members are upserts, its follow-up events are sent again with the same id (at least once). None: the
    # connector's.
    ambiguous_sends: AmbiguousSends | None = None


class UnsupportedObject(ValueError):
    """A mapping names an object its connector does not write."""


AmbiguousSends = Literal["idempotent", "reconcile", "resend", "resend_unless_orphaned"]
# Who marks the records of a "resend_unless_orphaned" send as possibly sent, just before each request
# (tasks.push: the delivery engine's `mark_sending`); unset: nobody (a direct call, a test).
_send_marker: ContextVar[Callable[[Sequence[Record]], None] | None] = ContextVar("send_marker", default=None)


@contextmanager
def sends_marked_by(marker: Callable[[Sequence[Record]], None] | None) -> Iterator[None]:
    """Within this block, `Connector.sending` has `marker` called with the records a request carries."""
    token = _send_marker.set(marker)
    try:
        yield
    finally:
        _send_marker.reset(token)


# The consents a person can withdraw in the host (users.marketing_consent, users.communication_consent).
MARKETING = "marketing"
COMMUNICATION = "communication"


class Connector(ABC):
    """A destination: subclasses set the class attributes without a default and implement the surface."""

    name: ClassVar[str]
    objects: ClassVar[tuple[ObjectSpec, ...]]
    batch_sizes: ClassVar[dict[str, int]]  # destination object -> records per request, from `objects`
    settings_class: ClassVar[type[VendorSettings]]  # its typed settings (connectors.settings)
    # Its local stand-in's name in the sandbox (`<sandbox url>/<stand_in>/...`, `sandbox/<stand_in>.py`);
    # empty: the connector's name.
    stand_in: ClassVar[str] = ""
    # What to do with a send that may have reached the vendor unanswered (UNKNOWN, AmbiguousError):
    # "idempotent": send again, the vendor de-duplicates (upsert by key, idempotency key, conditional create);
    # "reconcile": look it up with `reconcile` first, send only what is not there;
    # "resend": send again, at least once; a stable delivery id in the payload lets a receiver de-duplicate;
    # "resend_unless_orphaned": the worker that saw its own send lose its answer (a timeout, a reset) sends
    # it again (at least once; a stable id in the payload lets reports de-duplicate); but each request's
    # records are marked as possibly sent just before it leaves (`sending`), and a send orphaned by
    # its worker (killed, stopped, or an unexpected error with the request in flight: the mark outlives
    # it) is failed with that reason instead of being sent again; an operator's replay sends it anyway.
    ambiguous_sends: ClassVar[AmbiguousSends]
    # A field whose equal values should share a request (GA4: one client_id per request); None: any order.
    batch_group_field: ClassVar[str | None] = None
    # Requests a record costs where the vendor takes them one by one (look-up-then-create: 2); 0: a
    # batch is one request. Rate-limit slots for a push are taken ahead by this estimate.
    requests_per_record: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "objects" in cls.__dict__:
            cls.batch_sizes = {spec.name: spec.batch_size for spec in cls.objects}

    @classmethod
    def object_spec(cls, object_name: str) -> ObjectSpec:
        """The declared object, or `UnsupportedObject` naming the ones there are."""
        for spec in cls.objects:
            if spec.name == object_name:
                return spec
        known = ", ".join(spec.name for spec in cls.objects)
        raise UnsupportedObject(f"{cls.name} has no object {object_name!r} (it has {known})")

    @classmethod
    def sends_of(cls, object_name: str) -> AmbiguousSends:
        """How a send of this object repeats: its own policy where it has one, else the connector's."""
        return cls.object_spec(object_name).ambiguous_sends or cls.ambiguous_sends

    @classmethod
    def expected_requests(cls, object_name: str, records: int) -> int:
        """About how many requests pushing `records` records costs (an estimate: never a limit)."""
        if cls.requests_per_record:
            return cls.requests_per_record * records
        spec = cls.object_spec(object_name)
        return max(1, math.ceil(records / spec.batch_size)) * spec.requests_per_batch

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        """A connector configured from settings and secrets (or the sandbox when none are set)."""

    def push(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """Send one batch (at most `batch_sizes[object_name]` records) and return one outcome per record.

        `upsert_key` is the destination field that identifies a record at the vendor (e.g. `email`).

        Raises `UnsupportedObject` for an object the connector does not declare, and
        `connectors.http.RetryableError` when the whole batch should be offered again later (a connector
        whose sends are not idempotent raises it only while nothing of the batch has been sent).
        """
        self.object_spec(object_name)
        return self.send(object_name, upsert_key, records)

    @abstractmethod
    def send(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """`push` for a declared object: the vendor's requests for one batch."""

    @contextmanager
    def sending(self, records: Sequence[Record]) -> Iterator[None]:
        """Around one request of a "resend_unless_orphaned" connector: its records are marked just before
        its bytes leave (after its rate-limit slot, `connectors.http.before_next_send`), so a worker killed
        while it waited for the slot, or before, leaves them offered again, not orphaned."""
        marker = _send_marker.get()
        if marker is None:
            yield
            return
        with before_next_send(lambda: marker(records)):
            yield

    @classmethod
    def has_credentials(cls) -> bool:
        """Whether this site configured the connector's credentials (never the sandbox's stand-ins)."""
        secrets = cls.settings_class.secrets
        return not secrets or any(cls.settings_class.secret(name) for name in secrets)

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this connector is disabled whatever the routing says, or None: in production, one without
        credentials ("no credentials"); in local mode the sandbox stands in, so never. Raises
        `ennu.secrets.SecretUnavailable` when a credential could not be read (an error, not an absence)."""
        from connectors.endpoint import NO_CREDENTIALS
        from ennu.settings import get_settings

        if get_settings().local or cls.has_credentials():
            return None
        return NO_CREDENTIALS

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


class HttpConnector(Connector):
    """A connector over one vendor HTTP API: owns the shared client (pool, error table, rate limit),
    closes it, and times the connection test around `check_connection`."""

    table: ClassVar[ErrorTable] = DEFAULT_TABLE

    def __init__(self, http: VendorHttp) -> None:
        self.http = http

    @classmethod
    def client(
        cls,
        base_url: str,
        *,
        rate: RequestRate | None,
        rate_limited: bool = True,
        auth: requests.auth.AuthBase | tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        table: ErrorTable | None = None,
        pool_size: int = 10,
        retries: int | None = None,
    ) -> VendorHttp:
        """The shared client for this vendor: its error table, its rate limit (unless `rate_limited` is off
        or no rate is set), the hub's timeout and per-request retry settings (`retries` overrides the number:
        0 for a client whose request is retried by the call it serves, e.g. a token endpoint)."""
        from connectors.rate_limit import RateLimit
        from ennu.settings import get_settings

        core = get_settings()
        limit = RateLimit(cls.name, rate) if rate_limited and rate is not None else None
        return VendorHttp(
            cls.name,
            base_url,
            auth=auth,
            headers=headers,
            timeout=core.http_timeout_seconds,
            table=table or cls.table,
            rate_limit=limit,
            pool_size=pool_size,
            retries=core.http_retries if retries is None else retries,
            max_retry_wait=core.http_retry_max_wait_seconds,
        )

    def test_connection(self) -> ConnectionCheck:
        started = time.monotonic()
        detail = self.check_connection()
        return ConnectionCheck(self.name, True, detail, int((time.monotonic() - started) * 1000))

    @abstractmethod
    def check_connection(self) -> str:
        """A cheap authenticated read; what it read ("account details read"). Failures raise."""

    def close(self) -> None:
        self.http.close()
