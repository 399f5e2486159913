"""Test helpers for the delivery engine: a worker running in this process, and waiting on conditions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import func, select

from engine.worker import DeliveryWorker
from ennu.db import session_scope
from ennu.models import OPEN_DELIVERY, Delivery, OutboxEvent

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = 120.0, every: float = 0.2) -> T:
    """Poll until `condition()` is truthy and return it; fail naming `what` after a generous ceiling."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def open_deliveries() -> int:
    """Deliveries still owed, counting events not routed yet (a worker routes them first)."""
    with session_scope() as session:
        owed = session.execute(
            select(func.count()).where(Delivery.status.in_([s.value for s in OPEN_DELIVERY]))
        ).scalar_one()
        unrouted = session.execute(
            select(func.count()).where(OutboxEvent.routed_at.is_(None), OutboxEvent.status != "done")
        ).scalar_one()
        return int(owed) + int(unrouted)


def delivery_states(integration: str | None = None) -> dict[str, int]:
    with session_scope() as session:
        query = select(Delivery.status, func.count()).group_by(Delivery.status)
        if integration is not None:
            query = query.where(Delivery.integration == integration)
        return {status: int(n) for status, n in session.execute(query)}


@contextmanager
def running_worker(name: str = "test-worker", concurrency: int = 2) -> Iterator[DeliveryWorker]:
    """A delivery worker on threads of this process (the real-process tests start `python -m engine`)."""
    worker = DeliveryWorker(name, concurrency=concurrency)
    thread = worker.start()
    try:
        yield worker
    finally:
        worker.stop.set()
        thread.join(60)
