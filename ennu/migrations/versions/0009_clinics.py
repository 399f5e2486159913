"""clinics (a person's clinic or household: the CRMs' Account / company) and users.clinic_id

Revision ID: 0009_clinics
Revises: 0008_audit_log
Create Date: 2026-12-01 20:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_clinics"
down_revision = "0008_audit_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clinics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("clinics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clinics_updated_at"), ["updated_at"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clinic_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_users_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_users_clinic_id_clinics", "clinics", ["clinic_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("fk_users_clinic_id_clinics", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_users_clinic_id"))
        batch_op.drop_column("clinic_id")
    with op.batch_alter_table("clinics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clinics_updated_at"))
    op.drop_table("clinics")
