"""fleet: status history, signed firmware releases and their files, per-device update
state (docs/fleet.md)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 02:00:00
"""

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'device_status',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('device_pk', sa.Integer(), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('received_at', sa.DateTime(), nullable=False),
        sa.Column('battery_mv', sa.Integer(), nullable=True),
        sa.Column('fw_version', sa.String(length=50), nullable=True),
        sa.Column('rssi_dbm', sa.Integer(), nullable=True),
        sa.Column('queued', sa.Integer(), nullable=True),
        sa.Column('dropped', sa.Integer(), nullable=True),
        sa.Column('wakes', sa.BigInteger(), nullable=True),
        sa.Column('ota', sa.Integer(), nullable=True),
        sa.Column('release_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['device_pk'], ['devices.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_device_status_device_at', 'device_status',
                    ['device_pk', 'received_at'], unique=False)
    op.create_table(
        'releases',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('model', sa.String(length=50), nullable=False),
        sa.Column('version', sa.String(length=50), nullable=False),
        sa.Column('build', sa.Integer(), nullable=False),
        sa.Column('manifest', sa.LargeBinary(), nullable=False),
        sa.Column('manifest_sha256', sa.String(length=64), nullable=False),
        sa.Column('batch_id', sa.Integer(), nullable=True),
        sa.Column('percent', sa.Integer(), server_default='100', nullable=False),
        sa.Column('state', sa.String(length=20), server_default='active', nullable=False),
        sa.Column('paused_reason', sa.String(length=200), nullable=True),
        sa.Column('max_failures', sa.Integer(), server_default='3', nullable=False),
        sa.Column('min_battery_mv', sa.Integer(), server_default='2600', nullable=False),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('model', 'build'),
    )
    op.create_table(
        'release_files',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('release_id', sa.Integer(), nullable=False),
        sa.Column('path', sa.String(length=200), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('content', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['release_id'], ['releases.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('release_id', 'path'),
    )
    op.create_table(
        'device_updates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('release_id', sa.Integer(), nullable=False),
        sa.Column('device_pk', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('offers', sa.Integer(), nullable=False),
        sa.Column('offered_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['device_pk'], ['devices.id'], ),
        sa.ForeignKeyConstraint(['release_id'], ['releases.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('release_id', 'device_pk'),
    )
    op.create_index(op.f('ix_device_updates_device_pk'), 'device_updates', ['device_pk'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_device_updates_device_pk'), table_name='device_updates')
    op.drop_table('device_updates')
    op.drop_table('release_files')
    op.drop_table('releases')
    op.drop_index('ix_device_status_device_at', table_name='device_status')
    op.drop_table('device_status')
