"""The batch path's INSERTs (backend/ingest/batch_sql.py `_Insert`): on PostgreSQL a
batch's rows go as one statement from one array per column, a single row as VALUES.
Either way the rows stored are the rows given, NULLs and timestamps included, and a
value too long for its column is refused as a plain INSERT refuses it (a cast to the
column's VARCHAR(n) would have cut it short)."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from backend.accounts.keys import Keyring
from backend.ingest.batch_sql import for_dialect
from backend.storage import db
from backend.storage.models import Device, DeviceStatus
from tests.backend.ingest.test_batch_paths import build
from tests.conftest import DATABASES

COLUMNS = ("device_pk", "seq", "received_at", "battery_mv", "fw_version", "rssi_dbm",
           "queued", "dropped", "wakes", "ota", "release_id")


def _status(device_pk: int, seq: int, **values) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(device_pk=device_pk, seq=seq, received_at=db.utcnow().replace(microsecond=seq),
               **values)
    return row


def _insert(engine, rows: list[dict]) -> None:
    statements = for_dialect(engine.dialect)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        statements.insert_status(cursor, rows)
        raw.commit()
    finally:
        raw.close()


def _stored(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            select(*(DeviceStatus.__table__.c[name] for name in COLUMNS))
            .order_by(DeviceStatus.seq))]


@pytest.fixture
def world(db_url, settings):
    """(an engine on the test's database, a device's pk to write statuses of)."""
    build(db_url, Keyring(secrets.token_bytes(32)))
    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        pk = conn.execute(select(Device.id).limit(1)).scalar_one()
    yield engine, pk
    engine.dispose()


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_rows_inserted_together_or_alone_are_stored_as_given(world):
    engine, pk = world
    several = [_status(pk, 1, battery_mv=2900, fw_version="1.0.3", wakes=7),
               _status(pk, 2, rssi_dbm=-61, queued=0, dropped=3),  # fw NULL here
               _status(pk, 3, battery_mv=2100, fw_version="x" * 50, ota=1)]
    alone = _status(pk, 4, fw_version="2.0")
    _insert(engine, several)
    _insert(engine, [alone])
    assert _stored(engine) == [tuple(row[name] for name in COLUMNS)
                               for row in several + [alone]]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite keeps any length
def test_a_value_too_long_for_its_column_is_refused_not_cut(world):
    from psycopg.errors import StringDataRightTruncation

    engine, pk = world
    with pytest.raises(StringDataRightTruncation):
        _insert(engine, [_status(pk, 1), _status(pk, 2, fw_version="x" * 51)])
    assert _stored(engine) == []
