"""users.mrn (the EHR's medical record number) and biomarkers.value_decimals (the precision reported)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
# TEMPORARY: "0004" (the delivery engine's delivery states) comes first; set this to "0004" when that
# revision is merged. Until then it follows 0003 so that the migrations run in this branch.
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mrn', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_users_mrn'), ['mrn'], unique=False)

    with op.batch_alter_table('biomarkers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('value_decimals', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('biomarkers', schema=None) as batch_op:
        batch_op.drop_column('value_decimals')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_mrn'))
        batch_op.drop_column('mrn')
