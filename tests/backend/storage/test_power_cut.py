"""Acknowledged means durable on SQLite too (issue 16, point 7): a power cut loses no
commit that returned.

A power cut loses whatever the operating system had not yet written to the disk: every
write since the file's last fsync. `PowerCutVFS` is a SQLite VFS written in Python
(apsw) that passes every call to the real files and keeps, per file, the image of its
last fsync; `cut()` puts each file back to that image, which is what the disk would
hold after the power came back (the worst case: no unsynced write happened to reach
it). The database is then opened the ordinary way and must hold every transaction
whose COMMIT returned, with the product's own connection settings
(`backend.storage.db.SQLITE_PRAGMAS`). Under `synchronous=NORMAL`, the setting before,
the same cut loses them (shown below, so the simulation is known to bite).

The stdlib sqlite3 module that the product uses cannot load a Python VFS, so the
commits here run through apsw's SQLite with the same statements; that the product's
own connections carry them is checked on its engine.
"""

from __future__ import annotations

import os
from pathlib import Path

import apsw
import pytest
from sqlalchemy import text

from backend.storage import db

GROUP_COMMITS = 40
EVENTS_PER_COMMIT = 8


class PowerCutVFS(apsw.VFS):
    def __init__(self, name: str = "powercut"):
        self.name = name
        self.synced: dict[str, bytes | None] = {}  # path -> image at its last fsync
        super().__init__(name, "")

    def xOpen(self, name, flags):
        path = name.filename() if isinstance(name, apsw.URIFilename) else name
        if path and path not in self.synced:
            existing = Path(path)
            self.synced[path] = existing.read_bytes() if existing.exists() else None
        return PowerCutFile(self, path, name, flags)

    def xDelete(self, name, syncdir):
        # A deleted file stays deleted (a rollback journal coming back from the dead
        # would be a "hot journal" and undo the WAL's header change: not the point here).
        self.synced.pop(name, None)
        return super().xDelete(name, syncdir)

    def cut(self) -> dict[str, int]:
        """The disk as the power left it: each file back to its last fsynced image."""
        sizes = {}
        for path, image in self.synced.items():
            if image is None:
                Path(path).unlink(missing_ok=True)
            else:
                Path(path).write_bytes(image)
            sizes[os.path.basename(path)] = -1 if image is None else len(image)
        return sizes


class PowerCutFile(apsw.VFSFile):
    def __init__(self, vfs: PowerCutVFS, path, name, flags):
        self._vfs, self._path = vfs, path
        super().__init__("", name, flags)

    def xSync(self, flags):
        super().xSync(flags)
        if self._path:
            self._vfs.synced[self._path] = Path(self._path).read_bytes()


def _commit_then_cut(path: Path, pragmas) -> tuple[int, dict]:
    """GROUP_COMMITS transactions through the power-cut VFS, then the cut; returns how
    many events the database holds afterwards, opened the ordinary way."""
    setup = apsw.Connection(str(path))  # the schema, on disk before the power cut
    setup.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, body BLOB)")
    setup.close()
    vfs = PowerCutVFS()
    try:
        connection = apsw.Connection(str(path), vfs=vfs.name)
        # One connection, no shared-memory wal-index file (the VFS above keeps images
        # of ordinary files only); the WAL itself works as with several connections.
        connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        for pragma in pragmas:
            connection.execute(pragma)
        for batch in range(GROUP_COMMITS):
            connection.execute("BEGIN IMMEDIATE")
            for n in range(EVENTS_PER_COMMIT):
                connection.execute("INSERT INTO events VALUES (?, ?)",
                                   (batch * EVENTS_PER_COMMIT + n, os.urandom(64)))
            connection.execute("COMMIT")  # returned: the devices are answered now
        images = dict(vfs.synced)  # the power goes off here
        connection.close()  # whatever this writes or syncs happens after the cut
        vfs.synced = images
        sizes = vfs.cut()
    finally:
        vfs.unregister()
    after = apsw.Connection(str(path))
    try:
        return after.execute("SELECT count(*) FROM events").fetchall()[0][0], sizes
    finally:
        after.close()


def test_every_returned_commit_survives_a_power_cut(tmp_path):
    survived, sizes = _commit_then_cut(tmp_path / "replenish.db", db.SQLITE_PRAGMAS)
    assert survived == GROUP_COMMITS * EVENTS_PER_COMMIT, sizes


def test_the_simulation_bites_under_synchronous_normal(tmp_path):
    """The setting before issue 16: the WAL is synced at checkpoints only, so the cut
    takes every commit since the last one with it."""
    normal = [p.replace("synchronous=FULL", "synchronous=NORMAL") for p in db.SQLITE_PRAGMAS]
    survived, sizes = _commit_then_cut(tmp_path / "replenish.db", normal)
    assert survived == 0, sizes  # every acknowledged event gone


@pytest.mark.parametrize("writer", [False, True])
def test_the_products_sqlite_connections_commit_with_full_sync(tmp_path, writer):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'replenish.db'}")
    try:
        with db.make_sessionmaker(engine, writer=writer)() as session:
            assert session.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()
