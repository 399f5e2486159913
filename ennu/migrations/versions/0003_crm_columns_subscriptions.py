"""crm-owned user columns, subscriptions, vendor schema fingerprint

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 03:30:39.558849
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('stripe_subscription_id', sa.String(length=80), nullable=False),
    sa.Column('stripe_customer_id', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=30), nullable=False),
    sa.Column('price_id', sa.String(length=80), nullable=True),
    sa.Column('current_period_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_at_period_end', sa.Boolean(), nullable=False),
    sa.Column('vendor_updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('stripe_subscription_id')
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriptions_stripe_customer_id'), ['stripe_customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_subscriptions_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('sync_log', schema=None) as batch_op:
        batch_op.create_index('ix_sync_log_connector_remote', ['connector', 'remote_id'], unique=False)

    with op.batch_alter_table('integration_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schema_fingerprint', sa.String(length=64), nullable=True))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lifecycle_stage', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('hubspot_owner_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('salesforce_owner_id', sa.String(length=40), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('salesforce_owner_id')
        batch_op.drop_column('hubspot_owner_id')
        batch_op.drop_column('lifecycle_stage')

    with op.batch_alter_table('integration_state', schema=None) as batch_op:
        batch_op.drop_column('schema_fingerprint')

    with op.batch_alter_table('sync_log', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_log_connector_remote')

    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriptions_user_id'))
        batch_op.drop_index(batch_op.f('ix_subscriptions_stripe_customer_id'))

    op.drop_table('subscriptions')
