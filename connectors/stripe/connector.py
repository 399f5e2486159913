"""Stripe: customers found by e-mail and ennu user id, then updated, or created under an idempotency key."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Self

import requests

from connectors.base import AmbiguousSends, HttpConnector, ObjectSpec, Outcome, Person, Record
from connectors.endpoint import resolve_endpoint
from connectors.stripe.errors import TABLE
from connectors.stripe.settings import StripeSettings
from ennu.models import SyncStatus
from ennu.settings import Settings

VENDOR_BASE_URL = "https://api.stripe.com/v1"
SANDBOX_API_KEY = "sk_test_sandbox"
# The parameters a customer create takes (Stripe's API reference, as the stand-in checks them); a dotted
# mapping field writes into one of them (`metadata.ennu_user_id`, `address.city`), and what is inside
# `metadata` is ours.
CUSTOMER_FIELDS = frozenset(
    {
        "address",
        "balance",
        "business_name",
        "cash_balance",
        "description",
        "email",
        "individual_name",
        "invoice_prefix",
        "invoice_settings",
        "metadata",
        "name",
        "next_invoice_sequence",
        "payment_method",
        "phone",
        "preferred_locales",
        "shipping",
        "source",
        "tax",
        "tax_exempt",
        "tax_id_data",
        "test_clock",
    }
)
BATCH_SIZE = 25  # customers of one push, each its own look-up and write
EXTERNAL_ID_FIELD = "metadata.ennu_user_id"
# A customer with such a subscription pays us: erasing it would cancel the subscription, so it is kept.
KEEPING_SUBSCRIPTION_STATUSES = frozenset({"active", "trialing", "past_due", "unpaid", "paused"})
MAX_IDEMPOTENCY_KEY = 255
LIST_LIMIT = 100


def form_pairs(fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Stripe's form encoding: dotted names and nested mappings become bracketed keys, lists get indexes.

    `{"metadata.ennu_user_id": 42, "address": {"city": "Oslo"}, "tags": ["a"]}` →
    `[("metadata[ennu_user_id]", "42"), ("address[city]", "Oslo"), ("tags[0]", "a")]`; nulls are left out.
    """
    pairs: list[tuple[str, str]] = []
    for name, value in fields.items():
        head, *rest = str(name).split(".")
        pairs.extend(_encode(head + "".join(f"[{part}]" for part in rest), value))
    return pairs


def _encode(key: str, value: Any) -> Iterator[tuple[str, str]]:
    if value is None:
        return
    if isinstance(value, Mapping):
        for sub, item in value.items():
            yield from _encode(f"{key}[{sub}]", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _encode(f"{key}[{index}]", item)
    elif isinstance(value, bool):
        yield key, "true" if value else "false"
    else:
        yield key, str(value)


def idempotency_key(*parts: str) -> str:
    """A key that is the same for every attempt of one operation, within Stripe's 255 characters."""
    key = "ennu:" + ":".join(parts)
    if len(key) <= MAX_IDEMPOTENCY_KEY:
        return key
    return "ennu:" + hashlib.sha256(key.encode()).hexdigest()


def stripe_error_code(response: requests.Response) -> str:
    """`type:code` from Stripe's `{"error": {...}}` (never its message, which may quote a value)."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    kind = str(error.get("type") or f"http_{response.status_code}")
    code = error.get("code")
    return f"{kind}:{code}" if code else kind


class StripeConnector(HttpConnector):
    """Customers (one call per object); subscriptions are read to decide whether a customer may be erased."""

    name: ClassVar[str] = "stripe"
    # A customer is found by its e-mail (and our user id in its metadata): the list endpoint filters by
    # e-mail exactly and reads its own writes.
    objects: ClassVar[tuple[ObjectSpec, ...]] = (
        ObjectSpec("customers", BATCH_SIZE, upsert_keys=("email",), fields=CUSTOMER_FIELDS),
    )
    settings_class = StripeSettings
    table = TABLE
    requests_per_record: ClassVar[int] = 2  # a look-up, then a create or an update
    ambiguous_sends: ClassVar[AmbiguousSends] = "idempotent"  # every write carries an idempotency key

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        own = StripeSettings.load()
        endpoint = resolve_endpoint(
            cls.name,
            credential_env="STRIPE_API_KEY",
            vendor_base_url=VENDOR_BASE_URL,
            configured_base_url=own.base_url,
            sandbox_path="stripe/v1",
            sandbox_secret=SANDBOX_API_KEY,
        )
        headers = {"Authorization": f"Bearer {endpoint.secret.get_secret_value()}"}
        if own.api_version:
            headers["Stripe-Version"] = own.api_version
        http = cls.client(
            endpoint.base_url,
            headers=headers,
            rate=own.rate_limit,
            rate_limited=rate_limited,
        )
        return cls(http)

    # ------------------------------------------------------------------------------------------ push

    def send(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        return [self.upsert_customer(record, upsert_key) for record in records]

    def upsert_customer(self, record: Record, upsert_key: str) -> Outcome:
        """Update the customer with this e-mail and ennu user id (unless it has every value already), or
        create it once, whatever the retries."""
        email = record.fields.get(upsert_key)
        if not email:
            return Outcome(record.record_key, SyncStatus.FAILED, error=f"missing {upsert_key}")
        external_id = self.external_id(record)
        existing = self.find_customers(str(email), external_id)
        body = form_pairs(record.fields)
        if existing:
            customer_id = str(existing[0]["id"])
            if set(body) <= set(form_pairs(existing[0])):
                # It has every value already (the same records again): no write, and no new key at Stripe.
                return Outcome(record.record_key, SyncStatus.UNCHANGED, remote_id=customer_id)
            # The payload is part of the key: an update sent again with other values is a new update.
            key = idempotency_key(
                record.event_id or "no-event",
                record.record_key,
                "update",
                customer_id,
                _digest(body),
            )
            response = self.http.request(
                "POST",
                f"/customers/{customer_id}",
                data=body,
                headers={"Idempotency-Key": key},
                allow_statuses=TABLE.expect("record"),
            )
            if response.status_code != 404:  # deleted between the list and the update: create it anew
                return self.outcome(record, response, SyncStatus.UPDATED)
        # Event and record identify the creation: a retry of it can only replay the first answer.
        key = idempotency_key(record.event_id or f"payload-{_digest(body)}", record.record_key, "create")
        response = self.http.request(
            "POST",
            "/customers",
            data=body,
            headers={"Idempotency-Key": key},
            allow_statuses=TABLE.expect("record"),
        )
        return self.outcome(record, response, SyncStatus.CREATED)

    @staticmethod
    def external_id(record: Record) -> str:
        value = record.fields.get(EXTERNAL_ID_FIELD)
        return str(value if value is not None else record.user_id)

    @staticmethod
    def outcome(record: Record, response: requests.Response, success: SyncStatus) -> Outcome:
        if response.status_code >= 400:
            return Outcome(record.record_key, SyncStatus.FAILED, error=stripe_error_code(response))
        return Outcome(record.record_key, success, remote_id=str(response.json().get("id")))

    def find_customers(self, email: str, external_id: str) -> list[dict[str, Any]]:
        """Customers with exactly this e-mail whose `metadata.ennu_user_id` is ours, oldest first.

        The list endpoint is read-after-write consistent; Stripe's search is not, so it is never used here.
        """
        matches = [
            customer
            for customer in self.list_all("/customers", {"email": email})
            if str((customer.get("metadata") or {}).get("ennu_user_id")) == external_id
        ]
        return sorted(matches, key=lambda c: (int(c.get("created") or 0), str(c.get("id"))))

    def list_subscriptions(self, customer_id: str) -> list[dict[str, Any]]:
        """Every subscription of one customer, canceled ones included."""
        return list(self.list_all("/subscriptions", {"customer": customer_id, "status": "all"}))

    def list_all(self, path: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Follow `has_more` / `starting_after` through a Stripe list."""
        query: dict[str, Any] = {**params, "limit": LIST_LIMIT}
        while True:
            page: dict[str, Any] = self.http.request("GET", path, params=query).json()
            data = page.get("data") or []
            yield from data
            if not page.get("has_more") or not data:
                return
            query["starting_after"] = data[-1]["id"]

    # ------------------------------------------------------------------------------------------ rest

    def check_connection(self) -> str:
        self.http.request("GET", "/balance")
        return "balance read"

    def erase(self, person: Person) -> Outcome:
        """Delete the person's customers, except one that still pays: that is kept and reported."""
        key = f"user:{person.user_id}"
        if not person.email:
            return Outcome(key, SyncStatus.SKIPPED, error="no e-mail to identify the customer")
        customers = self.find_customers(person.email.strip().lower(), str(person.user_id))
        if not customers:
            return Outcome(key, SyncStatus.UNCHANGED, error="not found")
        kept: list[str] = []
        deleted: list[str] = []
        for customer in customers:
            customer_id = str(customer["id"])
            if any(
                s.get("status") in KEEPING_SUBSCRIPTION_STATUSES for s in self.list_subscriptions(customer_id)
            ):
                kept.append(customer_id)
                continue
            self.http.request("DELETE", f"/customers/{customer_id}", allow_statuses=TABLE.expect("gone"))
            deleted.append(customer_id)
        # Counts, not customer ids: a customer id would tie the hub's log back to the person.
        if kept:
            return Outcome(
                key,
                SyncStatus.SKIPPED,
                remote_id=f"{len(deleted)} customers deleted, {len(kept)} kept",
                error="active subscription: customer kept",
            )
        return Outcome(key, SyncStatus.ERASED, remote_id=f"{len(deleted)} customers deleted")


def _digest(pairs: list[tuple[str, str]]) -> str:
    return hashlib.sha256(repr(sorted(pairs)).encode()).hexdigest()[:32]
