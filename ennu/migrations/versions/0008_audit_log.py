"""audit_log (who did what, to what, with what outcome) and audit_token_labels (token labels last seen)

Revision ID: 0008_audit_log
Revises: 0007_zapier_hooks
Create Date: 2026-12-01 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_audit_log"
# After the Zapier hooks (0007_zapier_hooks, the head on main when rebased); re-chain at merge if needed.
down_revision = "0007_zapier_hooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("target", sa.String(length=400), nullable=True),
        sa.Column("outcome", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index("ix_audit_log_action_at", ["action", "at"], unique=False)
        batch_op.create_index("ix_audit_log_actor_at", ["actor", "at"], unique=False)

    op.create_table(
        "audit_token_labels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("role", "label", name="uq_audit_token_labels_role_label"),
    )


def downgrade() -> None:
    op.drop_table("audit_token_labels")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_actor_at")
        batch_op.drop_index("ix_audit_log_action_at")
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))
    op.drop_table("audit_log")
