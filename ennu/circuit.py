"""A circuit breaker per integration, kept in the database so every process and worker sees it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ennu.db import session_scope
from ennu.models import IntegrationState, as_utc, utcnow
from ennu.settings import get_settings


@dataclass(frozen=True)
class CircuitState:
    integration: str
    open: bool
    consecutive_failures: int
    opened_until: datetime | None
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None

    @property
    def label(self) -> str:
        if self.open:
            return "open"
        threshold = get_settings().circuit_failure_threshold
        return "half-open" if self.consecutive_failures >= threshold else "closed"


def circuit_state(integration: str, now: datetime | None = None) -> CircuitState:
    now = now or utcnow()
    with session_scope() as session:
        row = session.get(IntegrationState, integration)
        if row is None:
            return CircuitState(integration, False, 0, None, None, None, None)
        opened_until = as_utc(row.opened_until)
        return CircuitState(
            integration,
            opened_until is not None and opened_until > now,
            row.consecutive_failures,
            opened_until,
            as_utc(row.last_success_at),
            as_utc(row.last_error_at),
            row.last_error,
        )


def allows_calls(integration: str) -> bool:
    """False while the circuit is open; after the open period one batch may probe (half-open)."""
    return not circuit_state(integration).open


def ensure_state_row(integration: str) -> None:
    """Create the integration's row once; concurrent first calls race harmlessly on the primary key."""
    try:
        with session_scope() as session:
            if session.get(IntegrationState, integration) is None:
                session.add(IntegrationState(integration=integration, consecutive_failures=0))
    except IntegrityError:
        pass  # another worker created it first


def _locked_row(session: Session, integration: str) -> IntegrationState:
    return session.execute(
        select(IntegrationState).where(IntegrationState.integration == integration).with_for_update()
    ).scalar_one()


def record_success(integration: str) -> None:
    ensure_state_row(integration)
    with session_scope() as session:
        row = _locked_row(session, integration)
        row.consecutive_failures = 0
        row.opened_until = None
        row.last_success_at = utcnow()


def record_failure(integration: str, reason: str) -> bool:
    """Count one failed call; returns True when this failure opened (or re-opened) the circuit."""
    settings = get_settings()
    ensure_state_row(integration)
    with session_scope() as session:
        row = _locked_row(session, integration)
        row.consecutive_failures = (row.consecutive_failures or 0) + 1
        row.last_error_at = utcnow()
        row.last_error = reason[:500]
        beyond = row.consecutive_failures - settings.circuit_failure_threshold
        if beyond >= 0:
            row.opened_until = utcnow() + timedelta(seconds=open_seconds(beyond))
            return True
        return False


def open_seconds(failures_beyond_threshold: int) -> float:
    """How long the circuit stays open before the next probe: short at first, doubling up to the cap."""
    settings = get_settings()
    probe = settings.circuit_probe_seconds * 2 ** min(failures_beyond_threshold, 16)
    return min(probe, float(settings.circuit_open_seconds))


def reset_circuit(integration: str) -> None:
    with session_scope() as session:
        row = session.get(IntegrationState, integration)
        if row is not None:
            row.consecutive_failures = 0
            row.opened_until = None
