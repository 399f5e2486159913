"""Readiness: can this hub deliver right now? Each check answers with its name and a fixed sentence.

`GET /health/ready` and the daily health report run them; a failing check names the part to look at,
never a secret (no URL with credentials, no exception text) and never a record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import func, select, text

from ennu.db import session_scope
from ennu.heartbeats import live_workers
from ennu.models import WebhookReceipt, utcnow
from ennu.performance import backlog
from ennu.prefect_api import prefect_api_headers
from ennu.settings import get_settings
from tasks.status import clinical_warnings

PREFECT_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def hub_database() -> Check:
    try:
        with session_scope() as session:
            session.execute(text("SELECT 1"))
    except Exception:
        return Check("hub-database", False, "the hub database does not answer")
    return Check("hub-database", True, "answers")


def prefect_api() -> Check:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return Check("prefect-api", False, "PREFECT_API_URL is not set")
    try:
        # `/version`, not `/health`: a server with basic auth answers `/health` to anyone, and this check
        # is whether the hub itself gets in (PREFECT_API_AUTH_STRING).
        answer = httpx.get(
            f"{url.rstrip('/')}/version", headers=prefect_api_headers(), timeout=PREFECT_TIMEOUT_SECONDS
        )
    except httpx.HTTPError:
        return Check("prefect-api", False, "the Prefect API does not answer")
    if answer.status_code == httpx.codes.UNAUTHORIZED:
        return Check("prefect-api", False, "the Prefect API refuses this hub's PREFECT_API_AUTH_STRING")
    if answer.status_code != 200:
        return Check("prefect-api", False, f"the Prefect API answers {answer.status_code}")
    return Check("prefect-api", True, "answers")


def delivery_worker() -> Check:
    alive = [w for w in live_workers() if w.warm_at is not None]
    if not alive:
        return Check("delivery-worker", False, "no warm delivery worker has beaten in the last 30 s")
    return Check("delivery-worker", True, f"{len(alive)} alive")


def pending_age() -> Check:
    limit = get_settings().alert_backlog_seconds
    oldest = [since for _, since in backlog().values() if since is not None]
    if oldest:
        age = (utcnow() - min(oldest)).total_seconds()
        if age > limit:
            return Check("pending-age", False, f"a due delivery has waited {int(age)} s (limit {limit} s)")
    return Check("pending-age", True, f"nothing due has waited over {limit} s")


def webhook_receipts() -> Check:
    limit = get_settings().ready_receipt_seconds
    cutoff = utcnow() - timedelta(seconds=limit)
    with session_scope() as session:
        late = session.execute(
            select(func.count()).where(
                WebhookReceipt.processed_at.is_(None), WebhookReceipt.received_at < cutoff
            )
        ).scalar_one()
    if late:
        return Check("webhook-receipts", False, f"{late} receipts unprocessed after {limit} s")
    return Check("webhook-receipts", True, f"none unprocessed after {limit} s")


def provider_channel() -> Check:
    from mappings.routing import routing_table

    warnings = clinical_warnings(routing_table(get_settings().mappings_dir))
    if warnings:
        return Check("provider-channel", False, warnings[0])
    return Check("provider-channel", True, "critical results reach a care team")


CHECKS: tuple[Callable[[], Check], ...] = (
    hub_database,
    prefect_api,
    delivery_worker,
    pending_age,
    webhook_receipts,
    provider_channel,
)
NEEDS_DATABASE = {"delivery-worker", "pending-age", "webhook-receipts"}


def run_checks() -> list[Check]:
    """Every check; those that read the hub database are failed, not run, when it does not answer."""
    results: list[Check] = []
    database_ok = True
    for check in CHECKS:
        name = check.__name__.replace("_", "-")
        if name in NEEDS_DATABASE and not database_ok:
            results.append(Check(name, False, "not checked: the hub database does not answer"))
            continue
        try:
            result = check()
        except Exception:
            result = Check(name, False, "the check itself failed")
        database_ok = database_ok and (result.name != "hub-database" or result.ok)
        results.append(result)
    return results
