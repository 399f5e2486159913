"""Zapier REST-hook subscriptions: the hub's table (migration 0002) and the small interface it uses.

The Zapier connector (`connectors.zapier`) reads them to post; the intake routes (`intake/zapier.py`) add
and remove them. A hub model like those of `ennu.models`, kept in its own module.
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, UniqueConstraint, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ennu.db import session_scope
from ennu.models import Base, utcnow

MAX_TARGET_URL = 2048


class ZapierSubscription(Base):
    """One Zap's hook for one event type. The target URL is a credential (whoever has it can post)."""

    __tablename__ = "zapier_subscriptions"
    __table_args__ = (
        UniqueConstraint("event_type", "target_url", name="uq_zapier_subscriptions_event_target"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(60), index=True)
    target_url: Mapped[str] = mapped_column(String(MAX_TARGET_URL))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class Subscription:
    id: str
    event_type: str
    target_url: str

    def __repr__(self) -> str:  # the URL is the hook's secret
        return f"Subscription(id={self.id!r}, event_type={self.event_type!r})"


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
        """Subscribe a hook; subscribing the same URL to the same event again returns the first id."""
        existing = self._find(event_type, target_url)
        if existing is not None:
            return existing
        new_id = str(uuid.uuid4())
        try:
            with session_scope(self.database_url) as session:
                session.add(ZapierSubscription(id=new_id, event_type=event_type, target_url=target_url))
        except IntegrityError:  # subscribed concurrently
            found = self._find(event_type, target_url)
            if found is None:
                raise
            return found
        return new_id

    def remove(self, subscription_id: str) -> bool:
        """Unsubscribe; False when there was no such subscription."""
        with session_scope(self.database_url) as session:
            result = session.execute(
                delete(ZapierSubscription).where(ZapierSubscription.id == subscription_id)
            )
            return bool(getattr(result, "rowcount", 0))

    def count(self) -> int:
        with session_scope(self.database_url) as session:
            return int(session.execute(select(func.count()).select_from(ZapierSubscription)).scalar_one())

    def _find(self, event_type: str, target_url: str) -> str | None:
        with session_scope(self.database_url) as session:
            found: str | None = session.execute(
                select(ZapierSubscription.id).where(
                    ZapierSubscription.event_type == event_type, ZapierSubscription.target_url == target_url
                )
            ).scalar_one_or_none()
            return found
