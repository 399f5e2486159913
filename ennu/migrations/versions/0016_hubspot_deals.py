"""health_goals.crm_stage and crm_owner_id (a goal's HubSpot deal as the clinic's staff left it: the CRM's
view, never the goal's state); inbound_field_versions keyed by the host record (a user or a goal) too

Revision ID: 0016_hubspot_deals
Revises: 0012_goal_progress
Create Date: 2026-12-02 00:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_hubspot_deals"
down_revision = "0012_goal_progress"
branch_labels = None
depends_on = None

TABLE = "inbound_field_versions"
OLD_COLUMNS = ["integration", "user_id", "column"]
NEW_UNIQUE = "uq_inbound_field_versions_record_column"
# SQLite keeps 0015's unique constraint unnamed; batch mode names it by this convention to drop it.
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_unique_name() -> str:
    """The unique constraint of 0015 (integration, user_id, column) as the database named it."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        return f"uq_{TABLE}_integration"
    for found in sa.inspect(bind).get_unique_constraints(TABLE):
        if found["column_names"] == OLD_COLUMNS and found["name"]:
            return str(found["name"])
    raise RuntimeError(f"{TABLE}: the unique constraint on {', '.join(OLD_COLUMNS)} is missing")


def upgrade() -> None:
    with op.batch_alter_table("health_goals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("crm_stage", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("crm_owner_id", sa.String(length=40), nullable=True))
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.add_column(sa.Column("record", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("record_id", sa.Integer(), nullable=True))
    op.execute(sa.text(f"UPDATE {TABLE} SET record = 'user', record_id = user_id"))
    old = _old_unique_name()
    with op.batch_alter_table(TABLE, schema=None, naming_convention=SQLITE_NAMES) as batch_op:
        batch_op.alter_column("record", existing_type=sa.String(length=20), nullable=False)
        batch_op.alter_column("record_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint(old, type_="unique")
        batch_op.create_unique_constraint(NEW_UNIQUE, ["integration", "record", "record_id", "column"])


def downgrade() -> None:
    op.execute(sa.text(f"DELETE FROM {TABLE} WHERE record <> 'user'"))
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_constraint(NEW_UNIQUE, type_="unique")
        batch_op.create_unique_constraint(f"uq_{TABLE}_integration", OLD_COLUMNS)
        batch_op.drop_column("record_id")
        batch_op.drop_column("record")
    with op.batch_alter_table("health_goals", schema=None) as batch_op:
        batch_op.drop_column("crm_owner_id")
        batch_op.drop_column("crm_stage")
