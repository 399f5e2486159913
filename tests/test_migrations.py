"""The Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ennu.db import get_engine
from ennu.models import Base


def test_migrations_match_the_models(database: str) -> None:
    # `database` is migrated to head by its fixture; any difference is a missing or wrong migration.
    with get_engine(database).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
