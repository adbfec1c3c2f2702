"""devices: why a device was revoked (the operator's words, asked for on the page)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 09:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("revoked_reason", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_column("revoked_reason")
