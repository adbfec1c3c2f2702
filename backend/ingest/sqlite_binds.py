"""Faster stand-ins for SQLAlchemy's SQLite bind processors, for the batch's writes.

SQLAlchemy formats a datetime for SQLite with a `%` format over a dict of its seven
fields, and wraps bytes in `sqlite3.Binary`; at a batch of 64 the writer called them
about twice per event (the device write-back, the events' and status rows' INSERTs).
The text written must stay byte for byte what SQLAlchemy writes (SQLite compares and
orders datetimes as text), so anything outside the plain case goes to SQLAlchemy's own
processor (tests/backend/ingest/test_sqlite_binds.py holds the two together).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, LargeBinary
from sqlalchemy.dialects.sqlite import DATETIME
from sqlalchemy.engine import Dialect


def datetime_text(fallback):
    """SQLAlchemy's DATETIME storage format, "YYYY-MM-DD HH:MM:SS.ffffff" (microseconds
    always written, the timezone never): `isoformat` gives it for a naive datetime;
    an aware one (isoformat would add its offset), a date or a subclass goes to
    `fallback`, SQLAlchemy's processor."""

    def process(value):
        if type(value) is datetime and value.tzinfo is None:
            return value.isoformat(" ", "microseconds")
        return fallback(value)

    return process


def bind_processor(column, dialect: Dialect):
    """The processor to apply to `column`'s values before the sqlite3 driver, or None."""
    impl = column.type.dialect_impl(dialect)
    processor = impl.bind_processor(dialect)
    if processor is None or dialect.name != "sqlite":
        return processor
    if (isinstance(column.type, DateTime)
            and getattr(impl, "_storage_format", None) == DATETIME._storage_format):
        return datetime_text(processor)
    if isinstance(column.type, LargeBinary):
        # sqlite3.Binary is memoryview: the driver stores bytes as the same BLOB
        # (SQLAlchemy's own comment says sqlite3 does not need it).
        return None
    return processor
