"""A circuit breaker per integration, kept in the database so every process and worker sees it.

The push path reads it through a one-second process cache (`current_state`) and writes a success only when
it changes something (failures to clear, or a last-success time older than SUCCESS_STAMP): a bulk sync's
hundreds of batches cost a handful of database round trips, not two transactions each. Another process's
opened circuit is seen within the cache's second.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
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


CACHE_SECONDS = 1.0
SUCCESS_STAMP = timedelta(seconds=5)  # a clean circuit's last-success time is refreshed at most this often
_cache: dict[tuple[str, str], tuple[float, CircuitState]] = {}
_cache_lock = threading.Lock()


def _cache_key(integration: str) -> tuple[str, str]:
    return (get_settings().database_url, integration)


def forget_cached_states() -> None:
    with _cache_lock:
        _cache.clear()


def current_state(integration: str) -> CircuitState:
    """The circuit as this process saw it at most CACHE_SECONDS ago (the push path's read)."""
    key = _cache_key(integration)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    state = circuit_state(integration)
    with _cache_lock:
        _cache[key] = (time.monotonic(), state)
    return state


def _forget(integration: str) -> None:
    with _cache_lock:
        _cache.pop(_cache_key(integration), None)


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
    """A call went through: the failure count is cleared and the circuit closed. Nothing is written when
    the circuit is known clean and its last success was stamped within SUCCESS_STAMP."""
    now = utcnow()
    known = current_state(integration)
    clean = known.consecutive_failures == 0 and known.opened_until is None
    if clean and known.last_success_at is not None and now - known.last_success_at < SUCCESS_STAMP:
        return
    clear = (
        update(IntegrationState)
        .where(IntegrationState.integration == integration)
        .values(consecutive_failures=0, opened_until=None, last_success_at=now)
    )
    with session_scope() as session:
        found = int(getattr(session.execute(clear), "rowcount", 0) or 0)
    if not found:  # the integration's first call: its row is created, then cleared the same way
        ensure_state_row(integration)
        with session_scope() as session:
            session.execute(clear)
    clean_state = CircuitState(integration, False, 0, None, now, known.last_error_at, known.last_error)
    with _cache_lock:
        _cache[_cache_key(integration)] = (time.monotonic(), clean_state)


def record_failure(integration: str, reason: str) -> bool:
    """Count one failed call; returns True when this failure opened (or re-opened) the circuit.

    A failure while the circuit is open is a call that was already under way when it opened (another push
    thread's, another worker's): it is noted as the last error but neither counts nor lengthens the open
    period, which doubles only for a failed probe. Otherwise a burst of concurrent pushes failing together
    at the start of an outage would double the first probe's wait once per push (5 s became 80 s and more)
    and keep the deliveries waiting long after the vendor healed."""
    settings = get_settings()
    ensure_state_row(integration)
    with session_scope() as session:
        row = _locked_row(session, integration)
        now = utcnow()
        row.last_error_at = now
        row.last_error = reason[:500]
        opened_until = as_utc(row.opened_until)
        if opened_until is not None and opened_until > now:
            opened = False
        else:
            row.consecutive_failures = (row.consecutive_failures or 0) + 1
            beyond = row.consecutive_failures - settings.circuit_failure_threshold
            opened = beyond >= 0
            if opened:
                row.opened_until = now + timedelta(seconds=open_seconds(beyond))
    _forget(integration)  # after the commit: this process's next read sees the failure
    return opened


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
    _forget(integration)
