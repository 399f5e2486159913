"""Zapier REST-hook subscriptions: which target URLs are hooks at all, the hub's table of them (the models
`ZapierSubscription` and `ZapierHookAttempt`, migrations 0002 and 0006) and the small interface it uses.

The Zapier connector (`connectors.zapier`) reads them to post; the intake routes (`intake/zapier.py`) add
and remove them. A target URL is a credential: stored encrypted (`ennu.crypto.EncryptedText`), found by its
keyed hash (`ennu.pseudonyms`), never named in a log line, an error or a repr.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from ennu.db import session_scope
from ennu.models import ZapierHookAttempt, ZapierSubscription, utcnow
from ennu.pseudonyms import peppers, pseudonym
from ennu.settings import get_settings, is_loopback_url

__all__ = [
    "MAX_TARGET_URL",
    "HookAttempt",
    "Subscription",
    "TargetRefused",
    "ZapierSubscription",
    "ZapierSubscriptions",
    "normalise_target",
    "target_hash",
]

MAX_TARGET_URL = 2048
# The sandbox's catch hooks (local mode only): the stand-in's own path, nothing else on the sandbox.
SANDBOX_HOOK = re.compile(r"^/zapier/hooks/[A-Za-z0-9_-]+/?$")
_HASH_PREFIX = "zapier-hook-target:"  # keeps these hashes apart from every other pseudonym of the pepper


class TargetRefused(ValueError):
    """A target URL that is not a Zapier hook; the reason never repeats the URL (it is the hook's secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalise_target(url: str) -> str:
    """The hook URL to keep and post to, or `TargetRefused` with the reason.

    https only, on a host of ZAPIER_HOOK_HOSTS, on the default port (":443" is dropped), without user
    info or fragment; surrounding whitespace is dropped, any other whitespace or control character
    refused. In local mode (ENNU_ENV=local) the loopback sandbox's catch hooks (`/zapier/hooks/<id>`)
    are hooks too, as `make up` and the tests subscribe them.
    """
    url = url.strip()
    if not url:
        raise TargetRefused("target_url is empty")
    if len(url) > MAX_TARGET_URL:
        raise TargetRefused("target_url is too long")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url) or "\\" in url:
        raise TargetRefused("target_url contains whitespace, a control character or a backslash")
    if not url.isascii():
        raise TargetRefused("target_url is not plain ASCII")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("target_url is not a URL") from None
    if "@" in parts.netloc:
        raise TargetRefused("target_url carries user info")
    if "#" in url:
        raise TargetRefused("target_url carries a fragment")
    host = (parts.hostname or "").lower()
    settings = get_settings()
    if settings.local and is_loopback_url(settings.sandbox_url):
        sandbox = urlsplit(settings.sandbox_url)
        if (parts.scheme.lower(), parts.netloc.lower()) == (sandbox.scheme, sandbox.netloc.lower()):
            if SANDBOX_HOOK.match(parts.path) and not parts.query:
                return url
            raise TargetRefused("target_url is not one of the sandbox's hooks")
    if parts.scheme.lower() != "https":
        raise TargetRefused("target_url is not https")
    hosts = {h.strip().lower() for h in settings.zapier_hook_hosts.split(",") if h.strip()}
    if host not in hosts:
        raise TargetRefused("target_url is not on a Zapier hook host (ZAPIER_HOOK_HOSTS)")
    if port not in (None, 443) or parts.netloc.lower() not in (host, f"{host}:443"):
        raise TargetRefused("target_url is not on the default https port")
    return f"https://{host}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")


def target_hash(target_url: str, pepper: str | None = None) -> str:
    """The keyed hash a target URL is found by (its uniqueness per event type, unsubscribe by URL)."""
    return pseudonym(_HASH_PREFIX + target_url, pepper)


def _hashes(target_url: str) -> list[str]:
    """Its hash under the current pepper, then under the previous one while a rotation is under way."""
    return [target_hash(target_url, pepper) for pepper in peppers()]


@dataclass(frozen=True)
class Subscription:
    id: str
    event_type: str
    target_url: str

    def __repr__(self) -> str:  # the URL is the hook's secret
        return f"Subscription(id={self.id!r}, event_type={self.event_type!r})"


@dataclass(frozen=True)
class HookAttempt:
    """What one hook has of one record so far (`ZapierHookAttempt`)."""

    subscription_id: str
    delivered: bool
    attempts: int


class ZapierSubscriptions:
    """Subscriptions in the hub's database (`database_url`, or the configured one when None)."""

    def __init__(self, database_url: str | None = None) -> None:
        self.database_url = database_url

    def list(self, event_type: str | None) -> builtins.list[Subscription]:
        """The hooks subscribed to one event type (None: to any), oldest first."""
        with session_scope(self.database_url) as session:
            query = select(ZapierSubscription)
            if event_type is not None:
                query = query.where(ZapierSubscription.event_type == event_type)
            rows = session.execute(
                query.order_by(ZapierSubscription.created_at, ZapierSubscription.id)
            ).scalars()
            return [Subscription(r.id, r.event_type, r.target_url) for r in rows]

    def add(self, event_type: str, target_url: str) -> str:
        """Subscribe a hook; subscribing the same URL to the same event again returns the first id.

        `target_url` as the caller has it: the subscribe route normalises and checks it first
        (`normalise_target`); delivery checks it again, so a row stored otherwise is never posted to.
        """
        existing = self.find(event_type, target_url)
        if existing is not None:
            return existing
        new_id = str(uuid.uuid4())
        try:
            with session_scope(self.database_url) as session:
                session.add(
                    ZapierSubscription(
                        id=new_id,
                        event_type=event_type,
                        target_url=target_url,
                        target_hash=target_hash(target_url),
                    )
                )
        except IntegrityError:  # subscribed concurrently
            found = self.find(event_type, target_url)
            if found is None:
                raise
            return found
        return new_id

    def find(self, event_type: str, target_url: str) -> str | None:
        """The id of the subscription of this URL to this event type, found by the URL's keyed hash."""
        with session_scope(self.database_url) as session:
            found: str | None = session.execute(
                select(ZapierSubscription.id)
                .where(
                    ZapierSubscription.event_type == event_type,
                    ZapierSubscription.target_hash.in_(_hashes(target_url)),
                )
                .limit(1)
            ).scalar_one_or_none()
            return found

    def remove(self, subscription_id: str) -> bool:
        """Unsubscribe; False when there was no such subscription."""
        with session_scope(self.database_url) as session:
            session.execute(
                delete(ZapierHookAttempt).where(ZapierHookAttempt.subscription_id == subscription_id)
            )
            result = session.execute(
                delete(ZapierSubscription).where(ZapierSubscription.id == subscription_id)
            )
            return bool(getattr(result, "rowcount", 0))

    def remove_target(self, target_url: str, event_type: str | None = None) -> int:
        """Unsubscribe a URL (from one event type, or from all): how many subscriptions went."""
        with session_scope(self.database_url) as session:
            query = select(ZapierSubscription.id).where(
                ZapierSubscription.target_hash.in_(_hashes(target_url))
            )
            if event_type is not None:
                query = query.where(ZapierSubscription.event_type == event_type)
            ids = builtins.list(session.execute(query).scalars())
        return sum(self.remove(found) for found in ids)

    def count(self) -> int:
        with session_scope(self.database_url) as session:
            return int(session.execute(select(func.count()).select_from(ZapierSubscription)).scalar_one())

    # ----------------------------------------------------------------- per-hook state of unsettled records

    def attempts(self, delivery_keys: Iterable[str]) -> dict[str, dict[str, HookAttempt]]:
        """What each hook has so far of each of these records: delivery key -> subscription id -> attempt
        (a record with nothing kept is absent). One query for a batch."""
        keys = sorted(set(delivery_keys))
        if not keys:
            return {}
        with session_scope(self.database_url) as session:
            rows = session.execute(
                select(ZapierHookAttempt).where(ZapierHookAttempt.delivery_key.in_(keys))
            ).scalars()
            found: dict[str, dict[str, HookAttempt]] = {}
            for r in rows:
                found.setdefault(r.delivery_key, {})[r.subscription_id] = HookAttempt(
                    r.subscription_id, r.delivered, r.attempts
                )
            return found

    def keep_attempts(
        self, delivery_key: str, delivered: Iterable[str], failed: dict[str, str], now: datetime | None = None
    ) -> None:
        """Remember a partial delivery: hooks that took the record, and hooks that failed it (with why)."""
        when = now or utcnow()
        with session_scope(self.database_url) as session:
            rows = {
                r.subscription_id: r
                for r in session.execute(
                    select(ZapierHookAttempt).where(ZapierHookAttempt.delivery_key == delivery_key)
                ).scalars()
            }

            def row(subscription_id: str) -> ZapierHookAttempt:
                if subscription_id not in rows:
                    rows[subscription_id] = ZapierHookAttempt(
                        subscription_id=subscription_id,
                        delivery_key=delivery_key,
                        delivered=False,
                        attempts=0,
                    )
                    session.add(rows[subscription_id])
                return rows[subscription_id]

            for subscription_id in delivered:
                taken = row(subscription_id)
                taken.delivered, taken.last_error, taken.updated_at = True, None, when
            for subscription_id, reason in failed.items():
                failing = row(subscription_id)
                failing.attempts = (failing.attempts or 0) + 1
                failing.last_error, failing.updated_at = reason, when

    def settle(self, delivery_key: str) -> None:
        """The record is settled at every hook: nothing more to keep about it."""
        with session_scope(self.database_url) as session:
            session.execute(delete(ZapierHookAttempt).where(ZapierHookAttempt.delivery_key == delivery_key))


def delivery_key(record_key: str, event_id: str | None) -> str:
    """The key of one record's delivery (no value of the record: its host-side key and event id)."""
    return hashlib.sha256(f"{record_key}\n{event_id or ''}".encode()).hexdigest()
