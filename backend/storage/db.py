"""Engine and session set-up, and Alembic migrations run from code."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import sessionmaker

from backend.errors import ConfigError

log = logging.getLogger(__name__)
_MIGRATIONS = Path(__file__).with_name("migrations")


def utcnow() -> datetime:
    """Naive UTC: stored the same way on SQLite and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


# Every SQLite connection's settings. WAL lets the web app read while ingest writes.
# synchronous=FULL: in WAL mode, each commit fsyncs the WAL before it returns, so a
# commit that answered a device survives a power cut of the server, not only a crash of
# the process (NORMAL syncs at checkpoints only: the last commits could roll back after
# the devices were told "done" and dropped their events; issue 16). Group commit pays
# that fsync once per batch (docs/performance.md, "Durable commits"). The power cut is
# simulated in tests/backend/storage/test_power_cut.py with these very statements.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
)


def _sqlite_pragmas(dbapi_connection, _record):
    # Let SQLAlchemy, not the sqlite3 module, begin transactions (see _sqlite_begin):
    # sqlite3's own handling breaks SAVEPOINT, which group commit relies on.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin(connection) -> None:
    # Writers take the write lock up front (waiting up to busy_timeout). A deferred
    # transaction that read first and writes later fails at once with "database is
    # locked" if another writer committed in between; readers stay deferred.
    # On the driver itself: through exec_driver_sql the BEGIN cost a third of an empty
    # transaction's CPU (execution context, events), paid by every group commit.
    immediate = connection.get_execution_options().get("sqlite_begin") == "immediate"
    connection.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for PostgreSQL or an in-memory one)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" else None


def private_dir(path: Path) -> None:
    """`path` made (mode 0700) or, if it exists with access for others, tightened to 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(mode & 0o700)
        log.warning("%s was open to other users (%o): now %o", path, mode, mode & 0o700)


def private_files(*paths: Path) -> None:
    """Each existing file of `paths` readable and writable by its owner only."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                path.chmod(mode & 0o700)
                log.warning("%s was readable by other users (%o): now %o", path, mode,
                            mode & 0o700)


def secure_data(settings) -> None:
    """The data folder 0700 and a SQLite database's files 0600 (tightened with a warning
    where an older version left them open to other users)."""
    if settings.data_dir.exists():
        private_dir(settings.data_dir)
    if (path := sqlite_path(settings.db_url)) is not None:
        private_files(*sqlite_files(path))


def sqlite_files(path: Path) -> tuple[Path, Path, Path]:
    return path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def make_engine(url: str, *, pre_ping: bool = True, generic_plans: bool = False) -> Engine:
    """An engine for `url`. `pre_ping` (PostgreSQL) tests each connection the pool hands
    out with a statement of its own; the group-commit writer turns it off (one round
    trip per batch): a connection that broke fails the batch's first statement with
    OperationalError, and BatchWriter decides that batch again on a new connection.

    `generic_plans` (PostgreSQL; the group-commit writer): statements psycopg keeps
    prepared run on one plan made once (`plan_cache_mode`). Under the default, the
    batch's reads and device UPDATE were planned again for every batch, because the
    length of their arrays changes the estimate: at batches of 8, planning was 34 us of
    PostgreSQL's 180 us per event; at 64, the custom plan of the level-history read
    cost 11 us per event against the generic plan's 3 (docs/performance.md)."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None and not path.exists():
            # Created here, owner-only: SQLite gives its -wal and -shm files the main
            # file's mode, so webhook secrets and password hashes stay private.
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    options = {"options": "-c plan_cache_mode=force_generic_plan"} if generic_plans else {}
    return create_engine(url, pool_pre_ping=pre_ping, connect_args=options)


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
    make_engine(url).dispose()  # creates the data folder (0700) and file (0600) for SQLite
    command.upgrade(alembic_config(url), revision)


def check_schema(engine: Engine, url: str) -> None:
    """Refuse a database that is not at this software's newest schema: starting on one
    would answer every request with an error (issue 16: a traceback every round)."""
    scripts = ScriptDirectory.from_config(alembic_config(url))
    head = scripts.get_current_head()
    with engine.connect() as connection:
        # Read directly: alembic's MigrationContext would log two INFO lines each start.
        current = None
        if inspect(connection).has_table("alembic_version"):
            current = connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version").scalar()
    if current == head:
        return
    where = make_url(url).render_as_string(hide_password=True)
    known = {script.revision for script in scripts.walk_revisions()}
    if current is not None and current not in known:
        raise ConfigError(f"the database at {where} has schema revision {current}, which "
                          f"this version of Replenish does not know (newest here: {head}): "
                          "run the version that upgraded it, or a newer one")
    state = "has no schema yet" if current is None else f"is at schema revision {current}"
    raise ConfigError(f"the database at {where} {state}, not {head}: run "
                      "`replenish db upgrade` first")


@contextlib.contextmanager
def transaction(url: str):
    """One writing transaction on a short-lived engine (CLI commands, the demo)."""
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine, writer=True)() as session, session.begin():
            yield session
    finally:
        engine.dispose()
