"""catalogue, consent and sensor floors (issue 17): products get brand, currency (ISO
4217; `price_cents` holds minor units of it), GTIN, image and availability; households
a locale, a time zone and a price tolerance; slots the price the household confirmed,
a floor and a target; orders a snapshot of the product and price they were placed at.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 09:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The seeded rows (0003) named the pack in the name ("Coffee beans, 1 kg"); the pack is
# its own field now (package_amount + unit), so the name is the product's alone.
_NAMES = {
    "DETERGENT-1L": ("Laundry detergent", "Replenish Basics"),
    "DETERGENT-2KG": ("Laundry detergent powder", "Replenish Basics"),
    "DISHWASHER-TABS-40": ("Dishwasher tablets", "Replenish Basics"),
    "COFFEE-BEANS-1KG": ("Coffee beans", "Replenish Roasters"),
    "PAPER-TOWELS-6": ("Paper towels", "Replenish Basics"),
    "WATER-FILTER-3": ("Water filter cartridges", "Replenish Basics"),
}


def upgrade() -> None:
    with op.batch_alter_table('products') as batch_op:
        batch_op.add_column(sa.Column('brand', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('currency', sa.String(length=3), nullable=False,
                                      server_default='EUR'))
        batch_op.add_column(sa.Column('gtin', sa.String(length=14), nullable=True))
        batch_op.add_column(sa.Column('image_url', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('available', sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(), nullable=True))
        batch_op.create_unique_constraint('uq_products_gtin', ['gtin'])
    products = sa.table('products', sa.column('sku'), sa.column('name'), sa.column('brand'))
    for sku, (name, brand) in _NAMES.items():
        op.execute(products.update().where(products.c.sku == sku)
                   .values(name=name, brand=brand))

    with op.batch_alter_table('households') as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=35), nullable=False,
                                      server_default='en'))
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=False,
                                      server_default='UTC'))
        batch_op.add_column(sa.Column('price_tolerance_pct', sa.Integer(), nullable=False,
                                      server_default='0'))

    with op.batch_alter_table('slots') as batch_op:
        batch_op.add_column(sa.Column('confirmed_price_minor', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('confirmed_currency', sa.String(length=3),
                                      nullable=True))
        batch_op.add_column(sa.Column('min_level', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('target_level', sa.BigInteger(), nullable=True))
    # A slot configured before consent existed was chosen at the price shown then; the
    # closest record of it is today's price.
    op.execute("UPDATE slots SET confirmed_price_minor = (SELECT price_cents FROM products "
               "WHERE products.sku = slots.product_sku), confirmed_currency = (SELECT "
               "currency FROM products WHERE products.sku = slots.product_sku)")

    with op.batch_alter_table('orders') as batch_op:
        batch_op.add_column(sa.Column('product_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('product_brand', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('pack_amount', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('pack_unit', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('currency', sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column('consent_reason', sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column('confirmed_price_minor', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orders') as batch_op:
        for name in ('confirmed_price_minor', 'consent_reason', 'currency', 'pack_unit',
                     'pack_amount', 'product_brand', 'product_name'):
            batch_op.drop_column(name)
    with op.batch_alter_table('slots') as batch_op:
        for name in ('target_level', 'min_level', 'confirmed_currency',
                     'confirmed_price_minor'):
            batch_op.drop_column(name)
    with op.batch_alter_table('households') as batch_op:
        for name in ('price_tolerance_pct', 'timezone', 'locale'):
            batch_op.drop_column(name)
    with op.batch_alter_table('products') as batch_op:
        batch_op.drop_constraint('uq_products_gtin', type_='unique')
        for name in ('updated_at', 'available', 'image_url', 'gtin', 'currency', 'brand'):
            batch_op.drop_column(name)
