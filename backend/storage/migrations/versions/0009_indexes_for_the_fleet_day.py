"""indexes for the fleet day (issue 18)

The lead-time estimate, run for every sensor level report, reads a product's latest
deliveries: without (product_sku, delivered_at) it scanned every order. The group
commit's open-order lookup reads the batch's devices' orders: without (device_pk,
slot_index) it read every open order.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 09:30:00
"""

from alembic import op


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_product_delivered', ['product_sku', 'delivered_at'],
                              unique=False)
        batch_op.create_index('ix_orders_device_slot', ['device_pk', 'slot_index'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_device_slot')
        batch_op.drop_index('ix_orders_product_delivered')
