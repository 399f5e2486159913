"""Per-integration request rates as Prefect global concurrency limits, so they hold across processes."""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectAlreadyExists

logger = logging.getLogger(__name__)

_ensured: set[tuple[str, int, float]] = set()
_ensure_lock = threading.Lock()


def limit_name(integration: str) -> str:
    return f"ennu-rate-{integration}"


@dataclass(frozen=True)
class RateLimit:
    """At most `per_hour` requests an hour to one integration, with a burst of one minute's share."""

    integration: str
    per_hour: int

    @property
    def name(self) -> str:
        return limit_name(self.integration)

    @property
    def burst(self) -> int:
        return max(1, math.ceil(self.per_hour / 60))

    @property
    def slots_per_second(self) -> float:
        return self.per_hour / 3600.0

    def ensure(self) -> None:
        """Create or update the global limit once per process (two processes racing is fine)."""
        key = (self.name, self.burst, self.slots_per_second)
        with _ensure_lock:
            if key in _ensured:
                return
            with get_client(sync_client=True) as client:
                try:
                    client.upsert_global_concurrency_limit_by_name(
                        self.name, self.burst, slot_decay_per_second=self.slots_per_second
                    )
                except ObjectAlreadyExists:
                    logger.debug("rate limit %s created concurrently", self.name)
            _ensured.add(key)

    def acquire(self) -> None:
        """Block until one request may be sent."""
        self.ensure()
        rate_limit(self.name, occupy=1, strict=True)


def forget_ensured_limits() -> None:
    """For tests that point the process at another Prefect server."""
    with _ensure_lock:
        _ensured.clear()
