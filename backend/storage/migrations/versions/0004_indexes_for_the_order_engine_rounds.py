"""indexes for the order engine rounds

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 01:13:00.254576
"""

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.create_index('ix_devices_offline_watch', ['offline_notified', 'last_seen_at'], unique=False)

    with op.batch_alter_table('sim_orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sim_orders_status'), ['status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sim_orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sim_orders_status'))

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index('ix_devices_offline_watch')

