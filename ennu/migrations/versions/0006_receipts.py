"""webhook_receipts.payload minimised and encrypted under ENNU_DATA_KEY; webhook_receipt_ids remembers every
received webhook's id (a keyed hash) past its payload's clean-up, to refuse replays

Revision ID: 0006_receipts
Revises: 0005
Create Date: 2026-12-01 17:00:00.000000

The key (ENNU_DATA_KEY) and the pepper (ENNU_PSEUDONYM_PEPPER) are read through ennu.crypto and
ennu.pseudonyms when the migration runs: with receipts stored, outside local mode both must be set, or the
migration stops naming the missing variable and changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0006_receipts'
down_revision = '0005'
branch_labels = None
depends_on = None

BATCH = 1000

receipts_table = sa.table(
    'webhook_receipts',
    sa.column('id', sa.Integer()),
    sa.column('integration', sa.String()),
    sa.column('vendor_event_id', sa.String()),
    sa.column('payload', sa.Text()),
    sa.column('received_at', sa.DateTime(timezone=True)),
)
ids_table = sa.table(
    'webhook_receipt_ids',
    sa.column('digest', sa.String()),
    sa.column('integration', sa.String()),
    sa.column('received_at', sa.DateTime(timezone=True)),
)


def _batches(conn: sa.Connection) -> Any:
    last = 0
    while True:
        rows = conn.execute(
            sa.select(receipts_table)
            .where(receipts_table.c.id > last)
            .order_by(receipts_table.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def _document(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or '{}')
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def upgrade() -> None:
    from ennu import crypto, receipts

    conn = op.get_bind()
    stored = conn.execute(sa.select(sa.func.count()).select_from(receipts_table)).scalar_one()
    if stored:  # fail before any change, naming the missing variable (a new database needs neither yet)
        crypto.check_data_key()
        receipts.receipt_digests('check', 'pepper')

    op.create_table('webhook_receipt_ids',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('integration', sa.String(length=40), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('digest')
    )
    with op.batch_alter_table('webhook_receipt_ids', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_receipt_ids_integration_time', ['integration', 'received_at'], unique=False)

    with op.batch_alter_table('webhook_receipts', schema=None) as batch_op:
        batch_op.alter_column(
            'payload',
            existing_type=sa.JSON(),
            type_=sa.Text(),
            existing_nullable=False,
            postgresql_using='payload::text',
        )

    for rows in _batches(conn):
        for row in rows:
            kept = receipts.kept_payload(row.integration, _document(row.payload))
            try:
                plain = json.dumps(kept, separators=(',', ':'), allow_nan=False)
            except ValueError:  # a non-finite number stored before the intake refused them
                plain = '{}'
            conn.execute(
                receipts_table.update()
                .where(receipts_table.c.id == row.id)
                .values(payload=crypto.encrypt(plain))
            )
            conn.execute(
                ids_table.insert().values(
                    digest=receipts.receipt_digests(row.integration, row.vendor_event_id)[0],
                    integration=row.integration,
                    received_at=row.received_at,
                )
            )


def downgrade() -> None:
    from ennu import crypto

    conn = op.get_bind()
    for rows in _batches(conn):
        for row in rows:
            conn.execute(
                receipts_table.update()
                .where(receipts_table.c.id == row.id)
                .values(payload=crypto.decrypt(row.payload) if row.payload else '{}')
            )

    with op.batch_alter_table('webhook_receipts', schema=None) as batch_op:
        batch_op.alter_column(
            'payload',
            existing_type=sa.Text(),
            type_=sa.JSON(),
            existing_nullable=False,
            postgresql_using='payload::json',
        )

    with op.batch_alter_table('webhook_receipt_ids', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_receipt_ids_integration_time')

    op.drop_table('webhook_receipt_ids')
