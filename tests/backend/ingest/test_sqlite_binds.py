"""The batch's SQLite bind processors write what SQLAlchemy's own would, byte for byte."""

import sqlite3
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine

from backend.ingest import sqlite_binds
from backend.storage.models import Device, Event, Slot


class _Moment(datetime):
    """A datetime subclass: not the plain case, goes to SQLAlchemy's processor."""


VALUES = [
    None,
    datetime(2026, 12, 4, 18, 5, 57, 105542),
    datetime(2026, 12, 4, 18, 5, 57),  # microsecond 0: SQLAlchemy still writes .000000
    datetime(2026, 1, 2, 3, 4, 5, 6),
    datetime(2026, 12, 31, 23, 59, 59, 999999),
    datetime(999, 1, 1, 0, 0, 0, 1),  # a year below 1000, zero-padded to four digits
    datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59, 999999),
    datetime(2026, 12, 4, 18, 5, 57, 5, tzinfo=timezone.utc),  # the offset is dropped
    datetime(2026, 12, 4, 18, 5, 57, tzinfo=timezone(timedelta(hours=-5))),
    date(2026, 12, 4),
    _Moment(2026, 12, 4, 18, 5, 57),
]


@pytest.fixture(scope="module")
def dialect():
    return create_engine("sqlite://").dialect


@pytest.mark.parametrize("column", [Device.__table__.c.last_seen_at,
                                    Device.__table__.c.created_at,
                                    Event.__table__.c.received_at])
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_datetime_text_is_sqlalchemys(dialect, column, value):
    ours = sqlite_binds.bind_processor(column, dialect)
    theirs = column.type.dialect_impl(dialect).bind_processor(dialect)
    assert ours is not theirs  # the fast one is in use
    assert ours(value) == theirs(value)


def test_what_sqlalchemy_refuses_it_refuses(dialect):
    process = sqlite_binds.bind_processor(Event.__table__.c.received_at, dialect)
    with pytest.raises(TypeError):
        process("2026-12-04 18:05:57")


def test_blobs_stored_alike_without_sqlite3_binary(dialect):
    """The tag goes to the driver as bytes, not wrapped in sqlite3.Binary: the same
    BLOB in the database."""
    column = Event.__table__.c.tag
    assert sqlite_binds.bind_processor(column, dialect) is None
    theirs = column.type.dialect_impl(dialect).bind_processor(dialect)
    tag = bytes(range(32))
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (n INTEGER, tag BLOB)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(1, tag), (2, theirs(tag))])
    rows = db.execute("SELECT n, typeof(tag), tag FROM t ORDER BY n").fetchall()
    assert rows == [(1, "blob", tag), (2, "blob", tag)]
    assert db.execute("SELECT count(DISTINCT tag) FROM t").fetchone() == (1,)


def test_other_columns_and_postgresql_keep_sqlalchemys(dialect):
    boolean = Device.__table__.c.test_mode
    ours = sqlite_binds.bind_processor(boolean, dialect)
    assert [ours(v) for v in (True, False, None)] == [1, 0, None]
    assert sqlite_binds.bind_processor(Slot.__table__.c.index, dialect) is None
    from sqlalchemy.dialects import postgresql
    pg = postgresql.psycopg.dialect()
    assert sqlite_binds.bind_processor(Event.__table__.c.received_at, pg) is None


def test_batch_insert_stores_what_sqlalchemy_stores(tmp_path):
    """An event row through the batch's INSERT and the same row through SQLAlchemy
    leave the same stored values (as SQLite holds them: text, blob, integer); the
    row misses its optional columns, and its time has no microseconds."""
    from sqlalchemy import insert, text

    from backend.ingest import batch_sql
    from tests import migrated

    url = f"sqlite:///{tmp_path / 'binds.db'}"
    migrated.migrate(url)
    engine = create_engine(url)
    row = dict(device_pk=1, seq=7, kind=1, slot=0, tag=bytes(range(32)), result=1,
               received_at=datetime(2026, 12, 4, 18, 5, 57))
    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
        connection.execute(insert(Event), [row])
        cursor = connection.connection.cursor()
        batch_sql.for_dialect(engine.dialect).insert_events(cursor, [dict(row, seq=8)])
        stored = connection.execute(text(
            "SELECT seq, received_at, typeof(received_at), tag, typeof(tag), qty, "
            "order_id, order_state FROM events ORDER BY seq")).all()
    assert stored[0][1] == "2026-12-04 18:05:57.000000"
    assert stored[0][1:] == stored[1][1:]
