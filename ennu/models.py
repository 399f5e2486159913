"""SQLAlchemy 2 models: the host app's source tables and the hub's own tables."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ennu.crypto import EncryptedJSON, EncryptedText


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp written as UTC. SQLite keeps no offset: an aware `10:00+05:00` written as it is reads back
    as `10:00`; converted first, both databases hold the same instant (a naive value is UTC already)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo is not None else value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}


def table_of(model: type[Base]) -> Table:
    """A model's Core table: a bulk insert of dicts through it skips the ORM's per-row bookkeeping
    (a fifth of a bulk sync's main-thread time went to ORM bulk inserts)."""
    return cast(Table, model.__table__)


# --------------------------------------------------------------------------- host app tables


class Clinic(Base):
    """The clinic (or household) a person belongs to in the host: the CRMs' Account / company."""

    __tablename__ = "clinics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # The clinic's web domain (HubSpot companies de-duplicate on it), when the host knows it.
    domain: Mapped[str | None] = mapped_column(String(253))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(40))
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(20))
    timezone: Mapped[str] = mapped_column(String(64), default="America/New_York")
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    communication_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    # Owned by the CRMs and written by the inbound sync (flows/inbound_sync.py), never sent back out.
    lifecycle_stage: Mapped[str | None] = mapped_column(String(40))
    hubspot_owner_id: Mapped[str | None] = mapped_column(String(40))
    salesforce_owner_id: Mapped[str | None] = mapped_column(String(40))
    # The clinic EHR's medical record number, when the host knows it (its system: EPIC_MRN_SYSTEM).
    mrn: Mapped[str | None] = mapped_column(String(64), index=True)
    # The clinic (or household) the person belongs to, if any: the CRMs link their contact to its account.
    clinic_id: Mapped[int | None] = mapped_column(ForeignKey("clinics.id", ondelete="SET NULL"), index=True)
    # How the person wants appointment reminders: "sms" (a scheduled message) or "voice" (a call).
    reminder_channel: Mapped[str] = mapped_column(String(10), default="sms", server_default="sms")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)

    assessments: Mapped[list[Assessment]] = relationship(back_populates="user")


class AssessmentType(enum.StrEnum):
    WEIGHT_LOSS = "weight_loss"
    HORMONE = "hormone"
    SLEEP = "sleep"
    SKIN = "skin"
    TESTOSTERONE = "testosterone"
    MENOPAUSE = "menopause"
    HEALTH_OPTIMIZATION = "health_optimization"


class Assessment(Base):
    __tablename__ = "assessments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(20), default="completed", index=True)
    started_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column(index=True)
    overall_score: Mapped[float | None] = mapped_column(Float)

    user: Mapped[User] = relationship(back_populates="assessments")
    scores: Mapped[list[AssessmentScore]] = relationship(back_populates="assessment")


class AssessmentScore(Base):
    """One category score (0-10) of an assessment, e.g. `energy` or `sleep_quality`."""

    __tablename__ = "assessment_scores"
    __table_args__ = (UniqueConstraint("assessment_id", "category"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assessment_id: Mapped[int] = mapped_column(ForeignKey("assessments.id", ondelete="CASCADE"), index=True)
    category: Mapped[str] = mapped_column(String(60))
    score: Mapped[float] = mapped_column(Float)

    assessment: Mapped[Assessment] = relationship(back_populates="scores")


class Biomarker(Base):
    __tablename__ = "biomarkers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(60), index=True)
    loinc_code: Mapped[str | None] = mapped_column(String(20), index=True)
    value: Mapped[float] = mapped_column(Float)
    # Decimals the lab reported (76 -> 0, 5.55 -> 2); None: derived from the stored value.
    value_decimals: Mapped[int | None] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(30))
    reference_low: Mapped[float | None] = mapped_column(Float)
    reference_high: Mapped[float | None] = mapped_column(Float)
    observed_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)


class HealthGoal(Base):
    __tablename__ = "health_goals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(60), index=True)
    target: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="active", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_date: Mapped[date | None] = mapped_column(Date)
    completed_at: Mapped[datetime | None] = mapped_column(index=True)
    # How far toward the goal (0-100) as the host last said; health_goal.progressed sends what is here at
    # send time, so a late, older event never puts an older value at the CRM.
    progress_percent: Mapped[int | None] = mapped_column(Integer)
    # The goal's HubSpot deal as the clinic's staff left it (the inbound deal half, flows/hubspot_changes.py):
    # the CRM's view only. The goal's state above stays the host's; a deal won or lost at the CRM changes
    # only these, and no outbound mapping reads them.
    crm_stage: Mapped[str | None] = mapped_column(String(100))  # a stage id other than the host's own
    crm_owner_id: Mapped[str | None] = mapped_column(String(40))  # the deal's HubSpot owner


class Subscription(Base):
    """A person's paid subscription as Stripe last told us (customer.subscription.* webhooks)."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    stripe_subscription_id: Mapped[str] = mapped_column(String(80), unique=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(80), index=True)
    status: Mapped[str] = mapped_column(String(30))
    price_id: Mapped[str | None] = mapped_column(String(80))
    current_period_end: Mapped[datetime | None] = mapped_column()
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    trial_end: Mapped[datetime | None] = (
        mapped_column()
    )  # customer.subscription.trial_will_end and the others
    # Stripe's `created` of the event last applied: an older event arriving late never overwrites a newer one.
    vendor_updated_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PaymentStatus(enum.StrEnum):
    PAID = "paid"  # invoice.paid
    PAYMENT_FAILED = "payment_failed"  # invoice.payment_failed
    REFUNDED = "refunded"  # charge.refunded, the whole amount
    PARTIALLY_REFUNDED = "partially_refunded"  # charge.refunded, part of it


class Payment(Base):
    """A person's payment as Stripe last told us (invoice.paid / payment_failed, charge.refunded).

    Amounts, currency, status and Stripe's ids only: never a card, a billing detail or a line item. Keyed by
    the invoice, or by the charge for a refund Stripe reports without its invoice (API 2025-03-31 and later
    carry no `charge.invoice`); a refund of a charge whose invoice is known updates the invoice's row.
    """

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(80), unique=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(String(80), unique=True)
    status: Mapped[str] = mapped_column(String(30))  # a PaymentStatus
    amount: Mapped[int] = mapped_column(
        Integer
    )  # in the currency's smallest unit (cents), as Stripe sends it
    amount_refunded: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3))  # ISO 4217, lower case as at Stripe
    # Stripe's `created` of the event last applied: when the payment reached this status, and the order of
    # events (an older event arriving late never overwrites a newer one).
    occurred_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Appointment(Base):
    """A person's appointment at the clinic: when, what kind, whether it stands. No clinical detail."""

    __tablename__ = "appointments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime] = mapped_column(index=True)
    # What it is for the calendar ("consultation", "follow_up", "lab_visit"); never a diagnosis.
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="scheduled", index=True)  # or "cancelled"
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)


class Consent(Base):
    """A person's explicit grant or refusal for one integration; overrides the user's category flags."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("user_id", "integration"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    integration: Mapped[str] = mapped_column(String(40), index=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --------------------------------------------------------------------------- hub tables


class EventStatus(enum.StrEnum):
    PENDING = "pending"  # some destination still owes an outcome (or the event is not routed yet)
    DEFERRED = "deferred"  # before the delivery engine (migration 0004): read as pending
    DONE = "done"  # every delivery of the event is settled


class OutboxEvent(Base):
    """A host-app event, durable before anything is sent anywhere."""

    __tablename__ = "event_outbox"
    __table_args__ = (Index("ix_event_outbox_status_type", "status", "type"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(60), index=True)
    subject: Mapped[int | None] = mapped_column(Integer, index=True)
    resource: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default=EventStatus.PENDING, index=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    processed_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # What the event asks for: None = every routed destination; a list = only these (a bulk sync's).
    destinations: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    # When its deliveries were created (the engine routes events the host inserted itself, too).
    routed_at: Mapped[datetime | None] = mapped_column(index=True)


class DeliveryStatus(enum.StrEnum):
    """The durable state of one event at one destination (ennu/deliveries.py moves it)."""

    PENDING = "pending"  # to be sent
    DEFERRED = "deferred"  # to be offered again at `not_before` (vendor trouble, quiet hours, open circuit)
    UNKNOWN = "unknown"  # an ambiguous send: looked up at the vendor before anything is sent again
    DELIVERED = "delivered"
    REJECTED = "rejected"  # our validation refused the record: never sent
    FAILED = "failed"  # the vendor refused it, or attempts ran out: a dead letter an operator can replay
    SKIPPED = "skipped"  # not for this destination after all (no consent, the route's filter)
    CANCELLED = "cancelled"  # withdrawn before it was sent (the person was erased)


OPEN_DELIVERY = frozenset({DeliveryStatus.PENDING, DeliveryStatus.DEFERRED, DeliveryStatus.UNKNOWN})


class Delivery(Base):
    """One event at one destination; leased while a worker holds it (lease_owner till lease_expires_at)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "integration"),
        Index("ix_deliveries_ready", "status", "not_before"),
        Index("ix_deliveries_person", "user_id", "integration", "lease_expires_at"),
        Index("ix_deliveries_type", "event_type", "status", "priority", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("event_outbox.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(60))
    integration: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.PENDING)
    priority: Mapped[int] = mapped_column(Integer, default=5)  # 1 first; bulk syncs queue behind live events
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # sends that failed or whose answer was lost
    not_before: Mapped[datetime | None] = mapped_column()
    # The worker batch that holds it (while lease_expires_at is ahead) or last held it.
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)  # a code or reason, never a value
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column()
    # What the vendor reported later about what it accepted (Twilio's status callbacks: `delivered`,
    # `undelivered`, `failed`, ...) and its error code; applied in order, never regressing.
    vendor_status: Mapped[str | None] = mapped_column(String(20))
    vendor_error: Mapped[str | None] = mapped_column(String(20))
    vendor_status_at: Mapped[datetime | None] = mapped_column()


class ErasedPerson(Base):
    """The erasure list: a host user id that was erased, and when. Holds no personal data; every later event
    or bulk sync of that id is skipped, so the person is never sent anywhere again."""

    __tablename__ = "erased_people"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)
    event_id: Mapped[str | None] = mapped_column(String(64))  # the deletion request that put it here


class WorkerHeartbeat(Base):
    """A delivery worker's sign of life: the status and readiness checks read it."""

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    warm_at: Mapped[datetime | None] = mapped_column()  # imports done, contexts built: it is claiming
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    batches: Mapped[int] = mapped_column(Integer, default=0)
    events: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)


class SyncStatus(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"  # our validation refused it: never sent
    FAILED = "failed"  # the vendor refused it permanently
    DEFERRED = "deferred"  # not delivered yet (open circuit, vendor trouble, quiet hours): offered again
    # The request may have reached a vendor without idempotency keys (timeout or reset after sending): it is
    # looked up at the vendor before anything is sent again.
    UNKNOWN = "unknown"
    SKIPPED = "skipped"  # not routed to this destination (no consent, filtered out)
    ERASED = "erased"  # the person was erased or anonymised at the destination
    RECEIVED = "received"  # inbound: a change made at the vendor, applied to the host's user


# Sync-log rows that are not an attempt to deliver: they count neither toward volume nor error rates.
NOT_DELIVERY_ATTEMPTS = frozenset({SyncStatus.SKIPPED.value, SyncStatus.RECEIVED.value})

FINAL_STATUSES = frozenset(
    {
        SyncStatus.CREATED,
        SyncStatus.UPDATED,
        SyncStatus.UNCHANGED,
        SyncStatus.REJECTED,
        SyncStatus.FAILED,
        SyncStatus.SKIPPED,
        SyncStatus.ERASED,
    }
)


class SyncLog(Base):
    """One outcome of one record at one destination. Holds ids and codes, never personal data."""

    __tablename__ = "sync_log"
    __table_args__ = (
        Index("ix_sync_log_destination_record", "connector", "object", "record_key", "id"),
        Index("ix_sync_log_connector_time", "connector", "created_at"),
        Index("ix_sync_log_connector_remote", "connector", "remote_id"),  # a vendor id back to our user
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str | None] = mapped_column(String(64), index=True)
    connector: Mapped[str] = mapped_column(String(40))
    object: Mapped[str] = mapped_column(String(60))
    record_key: Mapped[str] = mapped_column(String(120))
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    remote_id: Mapped[str | None] = mapped_column(String(120))
    error: Mapped[str | None] = mapped_column(Text)
    payload_hash: Mapped[str | None] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    flow_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class WebhookReceipt(Base):
    """An inbound vendor webhook, stored once per vendor event id."""

    __tablename__ = "webhook_receipts"
    __table_args__ = (UniqueConstraint("integration", "vendor_event_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    integration: Mapped[str] = mapped_column(String(40), index=True)
    vendor_event_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str | None] = mapped_column(String(100))
    # Only the fields its handler reads (ennu.receipts.kept_payload), encrypted under ENNU_DATA_KEY.
    payload: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON(), default=dict)
    status: Mapped[str] = mapped_column(String(20), default="received", index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    processed_at: Mapped[datetime | None] = mapped_column()  # None until a worker has applied it
    # Claimed by a worker like a delivery; a handler that raised is offered again after `not_before`.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    not_before: Mapped[datetime | None] = mapped_column()
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)


class ReceivedWebhookId(Base):
    """A received webhook's id, remembered to refuse a replay after its receipt is cleaned up.

    A keyed hash (ennu.pseudonyms) of integration and vendor event id, kept for the integration's replay
    window (ennu.receipts.REPLAY_WINDOW_DAYS): no payload, no personal data, no guessable id.
    """

    __tablename__ = "webhook_receipt_ids"
    __table_args__ = (Index("ix_webhook_receipt_ids_integration_time", "integration", "received_at"),)

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    integration: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundFieldVersion(Base):
    """When the CRM value a host record's column last took from an integration changed there (the vendor's
    time). The record is a user (contacts, Salesforce's people) or a health goal (HubSpot deals).

    An older change arriving later (a delayed webhook, a poll that read before a webhook's change) never
    overwrites a newer one. Ids, a column name and a time only; erasure deletes the person's rows (a goal's
    rows carry its person).
    """

    __tablename__ = "inbound_field_versions"
    # One primary-key column, as every table (ennu.crypto.rotate walks tables by it).
    __table_args__ = (
        UniqueConstraint(
            "integration", "record", "record_id", "column", name="uq_inbound_field_versions_record_column"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    integration: Mapped[str] = mapped_column(String(40))
    record: Mapped[str] = mapped_column(String(20))  # the host record kind: user, health_goal
    record_id: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    column: Mapped[str] = mapped_column(String(60))
    changed_at: Mapped[datetime] = mapped_column()


class IntegrationState(Base):
    """Circuit-breaker and health state of one integration, shared by every process."""

    __tablename__ = "integration_state"

    integration: Mapped[str] = mapped_column(String(40), primary_key=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_until: Mapped[datetime | None] = mapped_column()
    last_success_at: Mapped[datetime | None] = mapped_column()
    last_error_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    # Fingerprint of the vendor-side definitions (custom properties, merge fields) last ensured, so a
    # connector checks the vendor's schema once, not on every push and not in every process.
    schema_fingerprint: Mapped[str | None] = mapped_column(String(64))


# --------------------------------------------------------------------------- Zapier REST hooks


class ZapierSubscription(Base):
    """One Zap's hook for one event type (`ennu.zapier_subscriptions` adds, lists and removes them).

    The target URL is a credential (whoever has it can post to the Zap): it is kept encrypted, and found
    (one hook per URL and event type) by its keyed hash, never by the URL itself.
    """

    __tablename__ = "zapier_subscriptions"
    __table_args__ = (
        UniqueConstraint("event_type", "target_hash", name="uq_zapier_subscriptions_event_target_hash"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(60), index=True)
    target_url: Mapped[str] = mapped_column(EncryptedText())
    target_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ZapierHookAttempt(Base):
    """One record's delivery to one hook while the record is not settled at every hook of its event.

    Kept only between a partial delivery and the record's settling, so that the next offer posts only to
    the hooks still owed it (a broken hook never has the others' deliveries repeated or withheld), and
    so that a hook's own trouble is capped per hook. `delivery_key`: a hash of the record's key and
    event id (no value of the record).
    """

    __tablename__ = "zapier_hook_attempts"
    __table_args__ = (
        UniqueConstraint("subscription_id", "delivery_key", name="uq_zapier_hook_attempts_hook_delivery"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(String(36))
    delivery_key: Mapped[str] = mapped_column(String(64), index=True)
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)  # a code or reason, never a value
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who did what to what, and how it ended: one operator's or viewer's action (an API request, a Prefect
    deployment run started by hand, a token rotation). The actor is a token's label or a Prefect user, never a
    token; the target names ids and integrations only, never personal data (ennu/audit.py)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_action_at", "action", "at"),
        Index("ix_audit_log_actor_at", "actor", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str | None] = mapped_column(String(400))
    # The answer's status code; None while the action runs (a request that never answered, a crashed run).
    outcome: Mapped[int | None] = mapped_column(Integer)
    # Where the action came from: "api" (the intake), "prefect" (a deployment run), "intake" (its start-up).
    source: Mapped[str] = mapped_column(String(20))


class AuditedTokenLabel(Base):
    """The token labels the intake saw configured at its last start, per role: the next start records the
    labels added and removed (a rotation) in the audit log. Labels only, never a token."""

    __tablename__ = "audit_token_labels"
    # One primary-key column, as every hub table (ennu.crypto.rotate walks the tables by it).
    __table_args__ = (UniqueConstraint("role", "label", name="uq_audit_token_labels_role_label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    role: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(80))
    since: Mapped[datetime] = mapped_column(default=utcnow)
