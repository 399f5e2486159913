"""Per-integration health from the sync log, the outbox and the circuit breaker (counts and codes only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from ennu.circuit import circuit_state
from ennu.db import session_scope
from ennu.deliveries import counts_by_integration
from ennu.models import NOT_DELIVERY_ATTEMPTS, DeliveryStatus, SyncLog, SyncStatus, as_utc, utcnow
from ennu.performance import Figures, figures
from ennu.secrets import SecretUnavailable
from ennu.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from mappings.routing import RoutingTable

ERRORS = (SyncStatus.FAILED.value, SyncStatus.REJECTED.value)
DELIVERED = (SyncStatus.CREATED.value, SyncStatus.UPDATED.value, SyncStatus.UNCHANGED.value)
# Critical results reach a care team through these routes; e-mail joins the channels once it exists.
CRITICAL_EVENT = "biomarker.updated"
CRITICAL_FILTER = "critical_biomarker"
PROVIDER_CHANNELS = ("slack", "teams")
CLINICAL_INTEGRATION = "epic_fhir"
NO_PROVIDER_CHANNEL = "critical results have no provider channel"


def provider_channels(table: RoutingTable) -> list[str]:
    """Care-team channels reached by an enabled `biomarker.updated` route `where: critical_biomarker`."""
    return [
        spec.connector
        for spec in table.routes_for(CRITICAL_EVENT)
        if spec.connector in PROVIDER_CHANNELS and spec.where == CRITICAL_FILTER
    ]


def clinical_warnings(table: RoutingTable) -> list[str]:
    """What makes the clinical path unsafe as configured (fixed sentences, never data)."""
    return [] if provider_channels(table) else [NO_PROVIDER_CHANNEL]


@dataclass(frozen=True)
class IntegrationStatus:
    integration: str
    enabled: bool
    last_success: datetime | None
    last_error: datetime | None
    last_error_reason: str | None
    circuit: str
    pending: int  # deliveries still owed: pending, leased, deferred or unknown
    deliveries: dict[str, int]  # open deliveries by state, and `failed` dead letters awaiting a replay
    counts_24h: dict[str, int]
    error_rate_24h: float | None
    # Records whose latest outcome in the last 24 h is a deferral, by reason ("no patient match", ...).
    deferred_24h: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # The dashboard's figures (ennu.performance): the last hour, latency, the oldest delivery still owed,
    # and the last 24 h against the daily average of the 7 days before.
    error_rate_1h: float | None = None
    p50_ms_24h: int | None = None
    p95_ms_24h: int | None = None
    oldest_waiting_at: datetime | None = None
    records_per_day_7d: float = 0.0
    error_rate_7d: float | None = None
    trend_vs_7d: str = "flat"


def deferred_by_reason(session: Session, integration: str, since: datetime) -> dict[str, int]:
    latest = (
        select(func.max(SyncLog.id).label("id"))
        .where(SyncLog.connector == integration, SyncLog.created_at >= since)
        .group_by(SyncLog.object, SyncLog.record_key)
        .subquery()
    )
    rows = session.execute(
        select(SyncLog.error, func.count())
        .join(latest, SyncLog.id == latest.c.id)
        .where(SyncLog.status == SyncStatus.DEFERRED.value)
        .group_by(SyncLog.error)
    ).all()
    return {str(reason or "no reason given"): int(n) for reason, n in rows}


def integration_status(
    integration: str,
    enabled: bool,
    now: datetime | None = None,
    by_state: dict[str, int] | None = None,
    warnings: list[str] | None = None,
    perf: Figures | None = None,
) -> IntegrationStatus:
    now = now or utcnow()
    perf = perf or figures([integration], now)[integration]
    since = now - timedelta(hours=24)
    with session_scope() as session:
        counts = {
            status: int(n)
            for status, n in session.execute(
                select(SyncLog.status, func.count())
                .where(SyncLog.connector == integration, SyncLog.created_at >= since)
                .group_by(SyncLog.status)
            )
        }
        last_success = session.execute(
            select(func.max(SyncLog.created_at)).where(
                SyncLog.connector == integration, SyncLog.status.in_(DELIVERED)
            )
        ).scalar_one()
        last_error_row = session.execute(
            select(SyncLog.created_at, SyncLog.error)
            .where(SyncLog.connector == integration, SyncLog.status.in_([*ERRORS, SyncStatus.DEFERRED.value]))
            .order_by(SyncLog.id.desc())
            .limit(1)
        ).first()
        deferred = deferred_by_reason(session, integration, since)
    circuit = circuit_state(integration, now)
    by_state = counts_by_integration().get(integration, {}) if by_state is None else by_state
    attempted = sum(n for status, n in counts.items() if status not in NOT_DELIVERY_ATTEMPTS)
    errors = sum(counts.get(s, 0) for s in ERRORS)
    last_error_at = as_utc(last_error_row[0]) if last_error_row else None
    reason = last_error_row[1] if last_error_row else None
    if circuit.last_error_at is not None and (last_error_at is None or circuit.last_error_at > last_error_at):
        last_error_at, reason = circuit.last_error_at, circuit.last_error
    return IntegrationStatus(
        integration=integration,
        enabled=enabled,
        last_success=as_utc(last_success),
        last_error=as_utc(last_error_at),
        last_error_reason=reason,
        circuit=circuit.label,
        pending=sum(n for state, n in by_state.items() if state != DeliveryStatus.FAILED.value),
        deliveries=dict(sorted(by_state.items())),
        counts_24h=counts,
        error_rate_24h=round(errors / attempted, 4) if attempted else None,
        deferred_24h=deferred,
        warnings=list(warnings or []),
        error_rate_1h=perf.error_rate_1h,
        p50_ms_24h=perf.p50_ms_24h,
        p95_ms_24h=perf.p95_ms_24h,
        oldest_waiting_at=perf.oldest_waiting_at,
        records_per_day_7d=perf.records_per_day_7d,
        error_rate_7d=perf.error_rate_7d,
        trend_vs_7d=perf.trend_vs_7d,
    )


def disabled_reason(integration: str) -> str | None:
    """Why a registered connector is disabled whatever the routing says ("no credentials" in production),
    or None. A credential that could not be read says so: it is not taken as absent."""
    from connectors.registry import CONNECTORS

    connector = CONNECTORS.get(integration)
    if connector is None:
        return None
    try:
        return connector.unavailable()
    except SecretUnavailable as exc:
        return exc.reason


def integration_names() -> list[str]:
    from mappings.routing import routing_table

    return sorted(routing_table(get_settings().mappings_dir).integrations)


def all_statuses(perf: dict[str, Figures] | None = None) -> list[IntegrationStatus]:
    """Every integration of the routing table (with `perf`: these figures, computed by the caller)."""
    from mappings.routing import routing_table

    table = routing_table(get_settings().mappings_dir)
    states = counts_by_integration()
    # The clinical integration carries the warning: it is where a critical result is first flagged.
    warnings = {CLINICAL_INTEGRATION: clinical_warnings(table)}
    disabled = {name: disabled_reason(name) for name in table.integrations}
    for name, reason in disabled.items():
        if reason is not None:  # "hubspot: no credentials": disabled, and its deliveries are never sent
            warnings.setdefault(name, []).append(f"{name}: {reason}")
    now = utcnow()
    perf = perf or figures(sorted(table.integrations), now)
    return [
        integration_status(
            name,
            config.enabled and disabled[name] is None,
            now,
            by_state=states.get(name, {}),
            warnings=warnings.get(name),
            perf=perf[name],
        )
        for name, config in sorted(table.integrations.items())
    ]


def health_problems() -> list[str]:
    """The hub's standing problems: the clinical path's warnings and every open circuit (names only)."""
    from mappings.routing import routing_table

    table = routing_table(get_settings().mappings_dir)
    now = utcnow()
    circuits = [
        f"{name}: circuit open"
        for name, config in sorted(table.integrations.items())
        if config.enabled and circuit_state(name, now).open
    ]
    # Routed but not configured (production): every delivery to it fails "no credentials".
    unconfigured = [
        f"{name}: {reason}"
        for name, config in sorted(table.integrations.items())
        if config.enabled and (reason := disabled_reason(name)) is not None
    ]
    return [*clinical_warnings(table), *unconfigured, *circuits]
