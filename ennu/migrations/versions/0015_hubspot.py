"""inbound_field_versions (the vendor time of each CRM-owned column's last applied change: webhooks and the
poll never let an older change overwrite a newer one)

Revision ID: 0015_hubspot
Revises: 0011_payments
Create Date: 2026-12-01 20:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_hubspot"
# After the payments (0011_payments, main's head when rebased); re-chain at merge if needed.
down_revision = "0011_payments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_field_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("integration", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("column", sa.String(length=60), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("integration", "user_id", "column"),
    )
    with op.batch_alter_table("inbound_field_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbound_field_versions_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("inbound_field_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_field_versions_user_id"))
    op.drop_table("inbound_field_versions")
