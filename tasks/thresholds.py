"""Thresholds: which integrations' error rate or backlog is over its limit, and which of them is news.

An alert goes out when a threshold is crossed, not on every look while it stays crossed: the breaches
seen last time are kept in a Prefect Variable, so a breach alerts once, and again only after it cleared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prefect.variables import Variable

from ennu.performance import Figures
from ennu.settings import get_settings

SEEN_VARIABLE = "ennu_alert_breaches"


@dataclass(frozen=True)
class Breach:
    kind: str  # an ops-alert kind: "error-rate" or "backlog"
    integration: str
    detail: str  # figures and the threshold; never a record

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.integration}"


def breaches(figures: Mapping[str, Figures]) -> list[Breach]:
    """Every integration whose last hour's error rate, or whose longest-waiting due delivery, is over."""
    settings = get_settings()
    found: list[Breach] = []
    for name, fig in sorted(figures.items()):
        rate = fig.error_rate_1h
        enough = fig.records_1h >= settings.alert_error_rate_min_records
        if rate is not None and enough and rate > settings.alert_error_rate:
            found.append(
                Breach(
                    "error-rate",
                    name,
                    f"{rate:.1%} of {fig.records_1h} records failed or were rejected in the last hour "
                    f"(threshold {settings.alert_error_rate:.1%})",
                )
            )
        if fig.oldest_waiting_at is not None:
            waited = (fig.as_of - fig.oldest_waiting_at).total_seconds()
            if waited > settings.alert_backlog_seconds:
                found.append(
                    Breach(
                        "backlog",
                        name,
                        f"a due delivery has waited {int(waited)} s, {fig.queue_depth} owed "
                        f"(threshold {settings.alert_backlog_seconds} s)",
                    )
                )
    return found


def news(current: list[Breach]) -> list[Breach]:
    """The breaches that were not there at the last look; remembers the current ones for the next."""
    seen: set[str] = set(Variable.get(SEEN_VARIABLE, default=[]) or [])
    Variable.set(SEEN_VARIABLE, sorted(b.key for b in current), overwrite=True)
    return [b for b in current if b.key not in seen]
