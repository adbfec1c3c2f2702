"""Backups of the database while the server runs, and their restore.

SQLite: the online backup API (`sqlite3.Connection.backup`) copies a consistent
snapshot page by page while writers go on; the copy is written next to its target and
renamed into place, owner-only. PostgreSQL: `pg_dump --format=custom`, restored with
`pg_restore`. The key-encryption key is NOT in the backup: a backup that held the key
would undo the envelope encryption of the device keys. Keep the KEK file (or
REPLENISH_KEK) in a separate, safer place (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from backend.errors import ReplenishError

_PAGES_PER_STEP = 1024  # the writer gets the database between steps


class BackupError(ReplenishError):
    """A backup or restore cannot be made."""


def backup(db_url: str, out: Path, progress=None) -> str:
    """Write a backup of the database at `db_url` to `out` (which must not exist);
    return what was written, in words."""
    out = Path(out)
    if out.exists():
        raise BackupError(f"{out} exists already: choose a new file (nothing was written)")
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_backup(_sqlite_path(url), out, progress)
    if url.get_backend_name() == "postgresql":
        return _pg_dump(url, out)
    raise BackupError(f"no backup for {url.get_backend_name()} databases")


def restore(db_url: str, source: Path, force: bool = False) -> str:
    """Put the backup `source` in place of the database at `db_url` (stop the server
    first). An existing SQLite file is only replaced with `force`."""
    source = Path(source)
    if not source.is_file():
        raise BackupError(f"no backup file {source}")
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_restore(source, _sqlite_path(url), force)
    if url.get_backend_name() == "postgresql":
        return _pg_restore(url, source)
    raise BackupError(f"no restore for {url.get_backend_name()} databases")


# -- SQLite ------------------------------------------------------------------------
def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database has nothing to back up")
    return Path(url.database)


def _sqlite_backup(path: Path, out: Path, progress) -> str:
    if not path.exists():
        raise BackupError(f"no database at {path}")
    copy = _sibling_temp(out)
    try:
        with _closing(path) as source, _closing(copy) as target:
            source.backup(target, pages=_PAGES_PER_STEP,
                          progress=(lambda _s, left, total: progress(total - left, total))
                          if progress else None)
            # One self-contained file (the server's database runs in WAL mode).
            target.execute("PRAGMA journal_mode=DELETE")
            pages = target.execute("PRAGMA page_count").fetchone()[0]
            if target.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise BackupError("the copy does not pass SQLite's integrity check")
        os.replace(copy, out)
    finally:
        copy.unlink(missing_ok=True)
    return f"SQLite backup of {path}: {pages} pages, {out.stat().st_size} bytes in {out}"


def _sqlite_restore(source: Path, path: Path, force: bool) -> str:
    with _closing(source) as check:
        if check.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise BackupError(f"{source} does not pass SQLite's integrity check")
        if not check.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'"
                             ).fetchone():
            raise BackupError(f"{source} is not a Replenish database")
    if path.exists() and not force:
        raise BackupError(f"a database exists at {path}: stop the server and pass --force "
                          "to replace it (nothing was changed)")
    copy = _sibling_temp(path)
    try:
        shutil.copyfile(source, copy)
        for stale in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)  # the old database's log must not replay
        os.replace(copy, path)
    finally:
        copy.unlink(missing_ok=True)
    return f"restored {path} from {source}"


@contextlib.contextmanager
def _closing(path: Path):
    connection = sqlite3.connect(path)
    try:
        yield connection
    finally:
        connection.close()  # sqlite3's own context manager only commits


def _sibling_temp(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.fchmod(fd, 0o600)  # it holds webhook secrets and password hashes
    os.close(fd)
    return Path(name)


# -- PostgreSQL --------------------------------------------------------------------
def _libpq(url: URL) -> tuple[str, dict]:
    """The database as a libpq URI without the password, which goes by environment
    (PGPASSWORD), so that it never shows in the process list."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _program(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} is not installed (Debian: the postgresql-client package)")
    return found


def _pg_dump(url: URL, out: Path) -> str:
    target, env = _libpq(url)
    partial = _sibling_temp(out)
    try:
        done = subprocess.run([_program("pg_dump"), "--format=custom", "--no-owner",
                               "--file", str(partial), target],
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return f"PostgreSQL backup (pg_dump custom format), {out.stat().st_size} bytes in {out}"


def _pg_restore(url: URL, source: Path) -> str:
    target, env = _libpq(url)
    done = subprocess.run([_program("pg_restore"), "--clean", "--if-exists", "--no-owner",
                           "--single-transaction", "--dbname", target, str(source)],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"pg_restore failed: {done.stderr.strip()}")
    return f"restored the PostgreSQL database from {source}"
