"""device writes stay in place: no index on last_seen_at; devices leave room per page

Every event writes its device's last_seq and last_seen_at. ix_devices_offline_watch
(offline_notified, last_seen_at) made each of those writes a new row version with an
entry in all six of the table's indexes on PostgreSQL (no HOT update) and an index
update on SQLite. The order worker now finds silent devices by sweeping the table by
id (backend/orders/worker.py); PostgreSQL keeps 30 % of each page free so that the
new version fits beside the old one (HOT needs both). Pages already full gain room
only when rewritten (VACUUM FULL devices).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 01:40:00
"""

from alembic import op


revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Written here, not imported: a migration keeps meaning what it meant when it was written.
_FILLFACTOR = 70


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index('ix_devices_offline_watch')
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE devices SET (fillfactor = {_FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE devices RESET (fillfactor)")
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.create_index('ix_devices_offline_watch', ['offline_notified', 'last_seen_at'],
                              unique=False)
