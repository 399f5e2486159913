"""zapier subscriptions: REST-hook targets by event type

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('zapier_subscriptions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('event_type', sa.String(length=60), nullable=False),
    sa.Column('target_url', sa.String(length=2048), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_type', 'target_url', name='uq_zapier_subscriptions_event_target')
    )
    with op.batch_alter_table('zapier_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_zapier_subscriptions_event_type'), ['event_type'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('zapier_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_zapier_subscriptions_event_type'))

    op.drop_table('zapier_subscriptions')
