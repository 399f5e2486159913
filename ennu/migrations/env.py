"""Alembic environment: runs migrations on the engine handed over by `ennu.db.migrate`."""

from __future__ import annotations

from alembic import context

import ennu.zapier_subscriptions  # noqa: F401 - registers its table on Base
from ennu.db import get_engine
from ennu.models import Base

config = context.config
engine = config.attributes.get("engine") or get_engine()

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
