"""zapier hooks: target URLs encrypted and found by keyed hash; per-hook state of unsettled records

Revision ID: 0007_zapier_hooks
Revises: 0006_receipts
Create Date: 2026-12-01 17:00:00.000000

Existing rows are converted in place: each target URL is encrypted under ENNU_DATA_KEY and hashed under
ENNU_PSEUDONYM_PEPPER (both needed only when there are rows to convert). The downgrade decrypts them back.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_zapier_hooks'
down_revision = '0006_receipts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('zapier_subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('target_hash', sa.String(length=64), nullable=True))
        batch_op.alter_column(
            'target_url', existing_type=sa.String(length=2048), type_=sa.Text(), existing_nullable=False
        )

    connection = op.get_bind()
    rows = connection.execute(sa.text('SELECT id, target_url FROM zapier_subscriptions')).all()
    if rows:
        from ennu.crypto import encrypt
        from ennu.zapier_subscriptions import target_hash

        for row_id, url in rows:
            connection.execute(
                sa.text('UPDATE zapier_subscriptions SET target_url = :url, target_hash = :hash WHERE id = :id'),
                {'url': encrypt(url), 'hash': target_hash(url), 'id': row_id},
            )

    with op.batch_alter_table('zapier_subscriptions', schema=None) as batch_op:
        batch_op.alter_column('target_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint('uq_zapier_subscriptions_event_target', type_='unique')
        batch_op.create_unique_constraint(
            'uq_zapier_subscriptions_event_target_hash', ['event_type', 'target_hash']
        )

    op.create_table('zapier_hook_attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('subscription_id', sa.String(length=36), nullable=False),
    sa.Column('delivery_key', sa.String(length=64), nullable=False),
    sa.Column('delivered', sa.Boolean(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subscription_id', 'delivery_key', name='uq_zapier_hook_attempts_hook_delivery')
    )
    with op.batch_alter_table('zapier_hook_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_zapier_hook_attempts_delivery_key'), ['delivery_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('zapier_hook_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_zapier_hook_attempts_delivery_key'))
    op.drop_table('zapier_hook_attempts')

    connection = op.get_bind()
    rows = connection.execute(sa.text('SELECT id, target_url FROM zapier_subscriptions')).all()
    if rows:
        from ennu.crypto import decrypt

        for row_id, token in rows:
            connection.execute(
                sa.text('UPDATE zapier_subscriptions SET target_url = :url WHERE id = :id'),
                {'url': decrypt(token), 'id': row_id},
            )

    with op.batch_alter_table('zapier_subscriptions', schema=None) as batch_op:
        batch_op.drop_constraint('uq_zapier_subscriptions_event_target_hash', type_='unique')
        batch_op.create_unique_constraint('uq_zapier_subscriptions_event_target', ['event_type', 'target_url'])
        batch_op.alter_column(
            'target_url', existing_type=sa.Text(), type_=sa.String(length=2048), existing_nullable=False
        )
        batch_op.drop_column('target_hash')
