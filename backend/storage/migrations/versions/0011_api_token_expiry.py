"""api tokens expire: expires_at per token (issue 16); tokens issued before get the
default lifetime from this upgrade on

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 09:55:00
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Written here, not imported: a migration keeps meaning what it meant when it was written.
_LEGACY_LIFETIME = timedelta(days=90)


def upgrade() -> None:
    with op.batch_alter_table('api_tokens') as batch:
        batch.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))
    now = datetime.now(UTC).replace(tzinfo=None)
    op.execute(sa.text("UPDATE api_tokens SET expires_at = :at").bindparams(
        at=now + _LEGACY_LIFETIME))


def downgrade() -> None:
    with op.batch_alter_table('api_tokens') as batch:
        batch.drop_column('expires_at')
