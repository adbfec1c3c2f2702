"""Engine and session set-up, and Alembic migrations run from code."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

log = logging.getLogger(__name__)
_MIGRATIONS = Path(__file__).with_name("migrations")


def utcnow() -> datetime:
    """Naive UTC: stored the same way on SQLite and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


def _sqlite_pragmas(dbapi_connection, _record):
    # Let SQLAlchemy, not the sqlite3 module, begin transactions (see _sqlite_begin):
    # sqlite3's own handling breaks SAVEPOINT, which group commit relies on.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the web app read while ingest writes; NORMAL is durable in WAL mode
    # against process crashes, and group commit amortises the fsync.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(connection) -> None:
    # Writers take the write lock up front (waiting up to busy_timeout). A deferred
    # transaction that read first and writes later fails at once with "database is
    # locked" if another writer committed in between; readers stay deferred.
    immediate = connection.get_execution_options().get("sqlite_begin") == "immediate"
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True)


def make_sessionmaker(engine: Engine, writer: bool = False) -> sessionmaker:
    """Sessions for readers, or (writer=True) for components that write.

    On SQLite a writer's transaction begins IMMEDIATE; elsewhere the flag changes
    nothing (PostgreSQL locks rows as they are written).
    """
    if writer:
        engine = engine.execution_options(sqlite_begin="immediate")
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database schema to `revision` (creates the SQLite file if needed)."""
    make_engine(url).dispose()  # creates the data folder for SQLite
    command.upgrade(alembic_config(url), revision)


@contextlib.contextmanager
def transaction(url: str):
    """One writing transaction on a short-lived engine (CLI commands, the demo)."""
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine, writer=True)() as session, session.begin():
            yield session
    finally:
        engine.dispose()
