"""health_goals.progress_percent: how far the person is toward a goal (0-100), what health_goal.progressed sends

Revision ID: 0012_goal_progress
Revises: 0015_hubspot
Create Date: 2026-12-01 20:05:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_goal_progress"
down_revision = "0015_hubspot"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("health_goals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress_percent", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("health_goals", schema=None) as batch_op:
        batch_op.drop_column("progress_percent")
