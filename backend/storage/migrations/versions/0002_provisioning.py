"""provisioning: board and firmware digest per batch; flash, key-rotation and
revocation times per device

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("board", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("firmware_sha256", sa.String(length=64), nullable=True))

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flashed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("flashed_firmware", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("key_rotated_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("key_rotated_at")
        batch_op.drop_column("flashed_firmware")
        batch_op.drop_column("flashed_at")

    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("firmware_sha256")
        batch_op.drop_column("board")
