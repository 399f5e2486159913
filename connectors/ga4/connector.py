"""Google Analytics 4: events by the Measurement Protocol, 25 a request, one client id a request."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import SecretStr

from connectors.base import AmbiguousSends, HttpConnector, ObjectSpec, Outcome, Person, Record
from connectors.endpoint import NotConfigured, resolve_endpoint
from connectors.ga4.errors import ADMIN_TABLE, TABLE, TOKEN_TABLE
from connectors.ga4.google_auth import ServiceAccount, ServiceAccountAuth
from connectors.ga4.settings import Ga4Settings
from connectors.http import ConnectorError, VendorHttp
from ennu import local_mode
from ennu.models import SyncStatus
from ennu.pseudonyms import peppers, person_pseudonym
from ennu.settings import Settings, is_loopback_url

VENDOR_BASE_URL = "https://www.google-analytics.com"
ADMIN_BASE_URL = "https://analyticsadmin.googleapis.com"
SANDBOX_API_SECRET = "sandbox-ga4-secret"  # noqa: S105 - the sandbox's published dummy secret
SANDBOX_MEASUREMENT_ID = "G-SANDBOX01"
# The Measurement Protocol's published limits.
MAX_EVENTS_PER_REQUEST = 25
MAX_PARAMS_PER_EVENT = 25
MAX_NAME_LENGTH = 40
MAX_PARAM_VALUE_LENGTH = 100
MAX_USER_ID_LENGTH = 256
MAX_BODY_BYTES = 130_000  # "less than 130 kB"
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESERVED_PREFIXES = ("google_", "ga_", "firebase_", "gtag.")
RESERVED_EVENT_NAMES = frozenset(
    {
        "ad_activeview", "ad_click", "ad_exposure", "ad_query", "ad_reward", "adunit_exposure",
        "app_background", "app_clear_data", "app_exception", "app_install", "app_remove",
        "app_store_refund", "app_store_subscription_cancel", "app_store_subscription_convert",
        "app_store_subscription_renew", "app_update", "app_upgrade", "dynamic_link_app_open",
        "dynamic_link_app_update", "dynamic_link_first_open", "error", "first_open", "first_visit",
        "in_app_purchase", "notification_dismiss", "notification_foreground", "notification_open",
        "notification_receive", "notification_send", "os_update", "screen_view", "session_start",
        "user_engagement",
    }
)  # fmt: skip
PARAMS_PREFIX = "params."
ERASE_NOT_CONFIGURED = "GA4 user deletion needs GA4_PROPERTY_ID and GA4_SERVICE_ACCOUNT_KEY"
# The GA4 mappings send one pseudonym as both client_id and user_id: a deletion asks for both kinds.
DELETION_IDENTIFIERS = ("userId", "clientId")
KEY_EVENTS_PATH = "/v1beta/properties/{property}/keyEvents"  # Admin API properties.keyEvents
KEY_EVENTS_PAGE_SIZE = 200
KEY_EVENT_COUNTING = "ONCE_PER_EVENT"  # every goal completed counts, not one a session


@dataclass(frozen=True)
class AdminApi:
    """Where user deletions go: the property, and a client signed in as the service account."""

    http: VendorHttp
    property_id: str


@dataclass(frozen=True)
class Ga4Event:
    """One record as a Measurement Protocol event, with the request-level ids it must travel with."""

    record_key: str
    client_id: str
    user_id: str | None
    timestamp_micros: int | None
    event: dict[str, Any]


def wire_problem(fields: Mapping[str, Any]) -> str | None:
    """The validation code GA4 would give this record's event (it would drop it silently), or None."""
    client_id, name = fields.get("client_id"), fields.get("name")
    if client_id is None or str(client_id) == "" or name is None:
        return "VALUE_REQUIRED"
    user_id = fields.get("user_id")
    if user_id is not None and len(str(user_id)) > MAX_USER_ID_LENGTH:
        return "VALUE_INVALID"
    problem = event_name_problem(str(name))
    if problem is not None:
        return problem
    params = event_params(fields)
    if len(params) > MAX_PARAMS_PER_EVENT:
        return "EXCEEDED_MAX_ENTITIES"
    for key, value in params.items():
        if not _valid_name(key):
            return "NAME_INVALID"
        if key.startswith(RESERVED_PREFIXES):
            return "NAME_RESERVED"
        if isinstance(value, str) and len(value) > MAX_PARAM_VALUE_LENGTH:
            return "VALUE_INVALID"
        if not isinstance(value, str | int | float | bool):
            return "VALUE_INVALID"
    return None


def _valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and bool(NAME.match(name))


def event_name_problem(name: str) -> str | None:
    """NAME_INVALID or NAME_RESERVED for an event name GA4 would refuse, else None."""
    if not _valid_name(name):
        return "NAME_INVALID"
    if name in RESERVED_EVENT_NAMES or name.startswith(RESERVED_PREFIXES):
        return "NAME_RESERVED"
    return None


def event_params(fields: Mapping[str, Any]) -> dict[str, Any]:
    """`params.<name>` fields, nulls left out (GA4 has no null parameter)."""
    return {
        name[len(PARAMS_PREFIX) :]: value
        for name, value in fields.items()
        if name.startswith(PARAMS_PREFIX) and value is not None
    }


def as_event(record: Record) -> Ga4Event:
    fields = record.fields
    params = event_params(fields)
    if record.event_id is not None:
        params.setdefault("event_id", record.event_id)  # for de-duplication downstream
    user_id = fields.get("user_id")
    micros = fields.get("timestamp_micros")
    return Ga4Event(
        record.record_key,
        str(fields["client_id"]),
        None if user_id is None else str(user_id),
        None if micros is None else int(micros),
        {"name": str(fields["name"]), "params": params},
    )


def request_bodies(
    events: Sequence[Ga4Event], max_bytes: int = MAX_BODY_BYTES
) -> list[tuple[dict[str, Any], list[str]]]:
    """(body, record keys) per request: events of one client and user together, ≤25 and <130 kB each.

    25 valid events stay under 100 kB, so the size check is a guard (e.g. for `items` arrays).
    """
    groups: dict[tuple[str, str | None, int | None], list[Ga4Event]] = {}
    for event in events:  # dicts keep first-seen order: requests go out in the records' order
        groups.setdefault((event.client_id, event.user_id, event.timestamp_micros), []).append(event)
    bodies: list[tuple[dict[str, Any], list[str]]] = []
    for (client_id, user_id, micros), members in groups.items():
        head: dict[str, Any] = {"client_id": client_id}
        if user_id is not None:
            head["user_id"] = user_id
        if micros is not None:
            head["timestamp_micros"] = micros
        current: list[Ga4Event] = []
        for event in members:
            candidate = [*current, event]
            too_big = _size({**head, "events": [e.event for e in candidate]}) >= max_bytes
            if current and (len(candidate) > MAX_EVENTS_PER_REQUEST or too_big):
                bodies.append(
                    ({**head, "events": [e.event for e in current]}, [e.record_key for e in current])
                )
                current = [event]
            else:
                current = candidate
        if current:
            bodies.append(({**head, "events": [e.event for e in current]}, [e.record_key for e in current]))
    return bodies


def _size(body: Mapping[str, Any]) -> int:
    return len(json.dumps(body).encode())  # what requests sends for json=


class Ga4Connector(HttpConnector):
    """Analytics events; ids are pseudonymous by mapping (never an e-mail or a name).

    It errs towards counting an event twice, never towards losing one its worker could still send: a lost
    answer is sent again by the worker that saw it, with the same `params.event_id` (GA4 de-duplicates
    nothing; a report can); a send orphaned by a dead worker is failed, never sent by another
    (`ambiguous_sends` below)."""

    name: ClassVar[str] = "ga4"
    # An event's fields are `client_id`, `user_id`, `name`, `timestamp_micros` and free-form `params.*`;
    # `params.event_id` is what a report de-duplicates on (GA4 has no upsert).
    objects: ClassVar[tuple[ObjectSpec, ...]] = (
        ObjectSpec("events", MAX_EVENTS_PER_REQUEST, upsert_keys=("params.event_id",)),
    )
    settings_class = Ga4Settings
    table = TABLE
    requests_per_record: ClassVar[int] = 1  # at most: one person's events share a request
    batch_group_field: ClassVar[str | None] = "client_id"
    # GA4 has no look-up and does not de-duplicate collected events (not by `event_id`, nor anything else
    # the Measurement Protocol sends), so a lost answer cannot be settled either way. It errs towards
    # counting twice while the worker that sent it lives: a reset or timeout of its own request is sent
    # again (at least once), with the same `params.event_id`, so a report or the BigQuery export can
    # de-duplicate a key event it holds twice; a reset before the request arrived (the common case) lands
    # once. A send orphaned by its worker (killed or stopped with the request in flight; the delivery stays
    # marked `unknown` past its lease) is never sent again by another: it is failed with the reason,
    # visible in the status and re-playable. A worker that dies took no decision, and a conversion the
    # clinic pays for counted twice, long after, is worse than one visibly missing.
    ambiguous_sends: ClassVar[AmbiguousSends] = "resend_unless_orphaned"

    def __init__(
        self,
        http: VendorHttp,
        measurement_id: str,
        api_secret: str,
        admin: AdminApi | None = None,
        key_events: tuple[str, ...] = (),
    ) -> None:
        super().__init__(http)
        self.measurement_id = measurement_id
        self._api_secret = api_secret
        self.admin = admin
        self.key_events = key_events

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        own = Ga4Settings.load()
        endpoint = resolve_endpoint(
            cls.name,
            credential_env="GA4_API_SECRET",
            vendor_base_url=VENDOR_BASE_URL,
            configured_base_url=own.base_url,
            sandbox_path="ga4",
            sandbox_secret=SANDBOX_API_SECRET,
        )
        measurement_id = own.measurement_id or (SANDBOX_MEASUREMENT_ID if endpoint.sandbox else "")
        if not measurement_id:
            raise NotConfigured("ga4: GA4_API_SECRET is set but GA4_MEASUREMENT_ID is not")
        http = cls.client(endpoint.base_url, rate=own.rate_limit, rate_limited=rate_limited)
        admin = cls.admin_api(own, sandbox=endpoint.sandbox, sandbox_base=endpoint.base_url)
        return cls(http, measurement_id, endpoint.secret.get_secret_value(), admin, own.key_events)

    @classmethod
    def admin_api(cls, own: Ga4Settings, *, sandbox: bool, sandbox_base: str) -> AdminApi | None:
        """The Admin API client from GA4_PROPERTY_ID and GA4_SERVICE_ACCOUNT_KEY; in local mode the
        stand-in's service account (`ennu.local_mode`), towards a loopback stand-in only; else None."""
        key = Ga4Settings.secret("GA4_SERVICE_ACCOUNT_KEY")
        property_id = own.property_id or ""
        base = own.admin_base_url
        if key is not None and property_id:
            account = ServiceAccount.from_key_file(key.get_secret_value())
            base = base or ADMIN_BASE_URL
        elif sandbox and is_loopback_url(base or sandbox_base):
            base = base or sandbox_base
            account = ServiceAccount(
                local_mode.GA4_SERVICE_ACCOUNT,
                local_mode.GA4_KEY_ID,
                SecretStr(local_mode.local_private_key_pem()),
                f"{base}/token",
            )
            property_id = local_mode.GA4_PROPERTY_ID
        else:
            return None
        # No retries of its own: a token is fetched within an Admin API request, which is the one retried.
        token_http = cls.client("", table=TOKEN_TABLE, rate=None, retries=0)
        http = cls.client(base, auth=ServiceAccountAuth(token_http, account), table=ADMIN_TABLE, rate=None)
        return AdminApi(http, property_id)

    @property
    def _query(self) -> dict[str, str]:
        return {"measurement_id": self.measurement_id, "api_secret": self._api_secret}

    def send(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """Send the events; each request carries the events of one `client_id` (whatever `upsert_key` is).

        Each request's records are marked just before it leaves (`sending`: a worker that dies from
        here on leaves them `unknown`, never sent again). Trouble, a lost answer included (sent again: at
        least once, the same `event_id`), defers the rest of the batch once something was answered; before
        anything was answered it raises, and the delivery engine offers the whole batch again later.
        """
        outcomes: dict[str, Outcome] = {}
        sendable: list[Ga4Event] = []
        for record in records:
            problem = wire_problem(record.fields)
            if problem is not None:
                outcomes[record.record_key] = Outcome(record.record_key, SyncStatus.FAILED, error=problem)
            else:
                sendable.append(as_event(record))
        event_ids = {e.record_key: e.event["params"].get("event_id") for e in sendable}
        by_key = {r.record_key: r for r in records}
        sent_any = False
        trouble: str | None = None
        for body, keys in request_bodies(sendable):
            if trouble is not None:  # the rest of the batch waits for a later offer
                outcomes.update({k: Outcome(k, SyncStatus.DEFERRED, error=trouble) for k in keys})
                continue
            try:
                with self.sending([by_key[k] for k in keys]):
                    self.http.request("POST", "/mp/collect", params=self._query, json=body)
            except ConnectorError as failure:  # a lost answer too: this worker sends it again
                if not sent_any:  # nothing of the batch went: the engine offers it all again
                    raise
                trouble = failure.reason
                outcomes.update({k: Outcome(k, SyncStatus.DEFERRED, error=trouble) for k in keys})
                continue
            sent_any = True
            for key in keys:
                remote = event_ids.get(key)
                outcomes[key] = Outcome(
                    key, SyncStatus.CREATED, remote_id=None if remote is None else str(remote)
                )
        return [outcomes[r.record_key] for r in records]

    def validate(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The validation server's messages for one request body (empty when GA4 would accept it)."""
        response = self.http.request("POST", "/debug/mp/collect", params=self._query, json=dict(body))
        answer: dict[str, Any] = response.json() if response.content else {}
        messages: list[dict[str, Any]] = answer.get("validationMessages") or []
        return messages

    def check_connection(self) -> str:
        """A sample event to the validation server (it checks the payload, not the secret); a message
        (a wrong measurement id) fails the check with its validation codes."""
        sample = {
            "client_id": "ennu-connection-test",
            "events": [{"name": "ennu_connection_test", "params": {"engagement_time_msec": 1}}],
        }
        messages = self.validate(sample)
        if messages:
            codes = sorted({str(m.get("validationCode")) for m in messages})
            raise ConnectorError(self.name, f"validation: {', '.join(codes)}")
        if not self.key_events:
            return "sample event validated"
        if self.admin is None:
            return (
                f"sample event validated; key events {', '.join(self.key_events)}: mark them in GA4 Admin "
                "(no GA4_PROPERTY_ID and GA4_SERVICE_ACCOUNT_KEY to check them)"
            )
        created = self.ensure_key_events()
        return f"sample event validated; key events {', '.join(self.key_events)} ({len(created)} created)"

    def ensure_key_events(self) -> list[str]:
        """Mark every GA4_KEY_EVENTS name as a key event of the property (Admin API `keyEvents`), creating
        only those it lacks; the names created. The Measurement Protocol has no per-event flag for this: an
        event counts as a key event when its name is one of the property's key events."""
        if self.admin is None:
            return []
        path = KEY_EVENTS_PATH.format(property=self.admin.property_id)
        marked: set[str] = set()
        page: str | None = None
        while True:
            params: dict[str, str | int] = {"pageSize": KEY_EVENTS_PAGE_SIZE}
            if page:
                params["pageToken"] = page
            answer = self.admin.http.request("GET", path, params=params).json()
            marked |= {str(k.get("eventName")) for k in answer.get("keyEvents") or []}
            page = answer.get("nextPageToken") or None
            if page is None:
                break
        missing = [name for name in self.key_events if name not in marked]
        for name in missing:
            self.admin.http.request(
                "POST",
                path,
                json={"eventName": name, "countingMethod": KEY_EVENT_COUNTING},
                allow_statuses=ADMIN_TABLE.expect("key event exists"),
            )
        return missing

    def erase(self, person: Person) -> Outcome:
        """`properties.submitUserDeletion` for the person's user id and client id, under every pepper in use.

        GA4 deletes the data within 72 hours; the outcome's reference is the latest deletionRequestTime.
        """
        key = f"user:{person.user_id}"
        if self.admin is None:
            return Outcome(key, SyncStatus.SKIPPED, error=ERASE_NOT_CONFIGURED)
        requested: list[str] = []
        for pepper in peppers():
            pseudonymous_id = person_pseudonym(person.user_id, pepper)
            for identifier in DELETION_IDENTIFIERS:
                response = self.admin.http.request(
                    "POST",
                    f"/v1alpha/properties/{self.admin.property_id}:submitUserDeletion",
                    json={identifier: pseudonymous_id},
                )
                answer: dict[str, Any] = response.json() if response.content else {}
                requested.append(str(answer.get("deletionRequestTime") or ""))
        return Outcome(key, SyncStatus.ERASED, remote_id=f"deletionRequestTime={max(requested)}")

    def close(self) -> None:
        super().close()
        if self.admin is not None:
            self.admin.http.close()
            auth = self.admin.http.session.auth
            if isinstance(auth, ServiceAccountAuth):
                auth.token_http.close()
