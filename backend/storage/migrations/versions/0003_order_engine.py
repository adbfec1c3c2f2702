"""order engine

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 00:12:32.878264
"""

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('merchant_callbacks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('merchant', sa.String(length=50), nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('merchant', 'event_id')
    )
    op.create_table('products',
    sa.Column('sku', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('unit', sa.String(length=10), nullable=False),
    sa.Column('package_amount', sa.Integer(), nullable=False),
    sa.Column('price_cents', sa.Integer(), nullable=False),
    sa.Column('default_lead_days', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('sku')
    )
    op.create_table('sim_stock',
    sa.Column('sku', sa.String(length=100), nullable=False),
    sa.Column('on_hand', sa.Integer(), nullable=False),
    sa.Column('restock_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('sku')
    )
    op.create_table('notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('household_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('message', sa.String(length=500), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('device_pk', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('read_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['device_pk'], ['devices.id'], ),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], ),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_household_id'), ['household_id'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=100), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('locked_by', sa.String(length=100), nullable=True),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('done_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_order_id'), ['order_id'], unique=False)

    op.create_table('sim_orders',
    sa.Column('idempotency_key', sa.String(length=100), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('sku', sa.String(length=100), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('idempotency_key'),
    sa.UniqueConstraint('order_id')
    )
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('test_mode', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('low_battery_notified', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('offline_notified', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('dropped_events', sa.Integer(), nullable=True))

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('blocked', sa.Integer(), nullable=True))

    with op.batch_alter_table('households', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hold_window_s', sa.Integer(), nullable=False, server_default="900"))
        batch_op.add_column(sa.Column('allow_multiple_open', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('max_orders_per_day', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('monthly_limit_cents', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('webhook_url', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('webhook_secret', sa.String(length=100), nullable=True))

    with op.batch_alter_table('order_transitions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=200), nullable=True))

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=20), nullable=False, server_default="press"))
        batch_op.add_column(sa.Column('is_test', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('unit_price_cents', sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column('total_cents', sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column('hold_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('merchant', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('merchant_ref', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('failure_reason', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('placed_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('delivered_at', sa.DateTime(), nullable=True))

    with op.batch_alter_table('slots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=20), nullable=False, server_default="button"))
        batch_op.add_column(sa.Column('safety_days', sa.Float(), nullable=False, server_default="2.0"))



    # The catalogue a household chooses from (prices in cents; amounts in the unit).
    products = sa.table("products", sa.column("sku"), sa.column("name"), sa.column("unit"),
                        sa.column("package_amount"), sa.column("price_cents"),
                        sa.column("default_lead_days"))
    op.bulk_insert(products, [
        {"sku": "DETERGENT-1L", "name": "Laundry detergent, 1 l", "unit": "ml",
         "package_amount": 1000, "price_cents": 899, "default_lead_days": 3.0},
        {"sku": "DETERGENT-2KG", "name": "Laundry detergent, 2 kg", "unit": "g",
         "package_amount": 2000, "price_cents": 1299, "default_lead_days": 3.0},
        {"sku": "DISHWASHER-TABS-40", "name": "Dishwasher tablets, 40", "unit": "doses",
         "package_amount": 40, "price_cents": 999, "default_lead_days": 3.0},
        {"sku": "COFFEE-BEANS-1KG", "name": "Coffee beans, 1 kg", "unit": "g",
         "package_amount": 1000, "price_cents": 1899, "default_lead_days": 2.0},
        {"sku": "PAPER-TOWELS-6", "name": "Paper towels, 6 rolls", "unit": "pcs",
         "package_amount": 6, "price_cents": 749, "default_lead_days": 2.0},
        {"sku": "WATER-FILTER-3", "name": "Water filter cartridges, 3", "unit": "pcs",
         "package_amount": 3, "price_cents": 2499, "default_lead_days": 4.0},
    ])


def downgrade() -> None:
    with op.batch_alter_table('slots', schema=None) as batch_op:
        batch_op.drop_column('safety_days')
        batch_op.drop_column('kind')

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('delivered_at')
        batch_op.drop_column('placed_at')
        batch_op.drop_column('failure_reason')
        batch_op.drop_column('merchant_ref')
        batch_op.drop_column('merchant')
        batch_op.drop_column('hold_until')
        batch_op.drop_column('total_cents')
        batch_op.drop_column('unit_price_cents')
        batch_op.drop_column('is_test')
        batch_op.drop_column('source')

    with op.batch_alter_table('order_transitions', schema=None) as batch_op:
        batch_op.drop_column('reason')

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('blocked')

    with op.batch_alter_table('households', schema=None) as batch_op:
        batch_op.drop_column('webhook_secret')
        batch_op.drop_column('webhook_url')
        batch_op.drop_column('monthly_limit_cents')
        batch_op.drop_column('max_orders_per_day')
        batch_op.drop_column('allow_multiple_open')
        batch_op.drop_column('hold_window_s')

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('dropped_events')
        batch_op.drop_column('offline_notified')
        batch_op.drop_column('low_battery_notified')
        batch_op.drop_column('test_mode')

    op.drop_table('sim_orders')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_order_id'))
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_household_id'))

    op.drop_table('notifications')
    op.drop_table('sim_stock')
    op.drop_table('products')
    op.drop_table('merchant_callbacks')
