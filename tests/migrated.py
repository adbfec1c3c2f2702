"""Databases at the head revision for tests, copied from one migrated template.

Running the migrations costs 0.3-0.5 s per database and about 600 tests need a fresh
one; each test process migrates one template per database kind instead and copies it:
a file copy on SQLite, `CREATE DATABASE ... TEMPLATE` on PostgreSQL (a server-side copy).
The migrations themselves are still tested from empty (tests/backend/storage/test_migrations.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

from backend.storage import db

_sqlite_template: Path | None = None
_postgres_templates: set[tuple] = set()


def migrate(url: str) -> None:
    """Bring the database at `url` to head: a copy of the template when it is new and
    empty, the migrations otherwise."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_sqlite(), path)
            return
    elif url.startswith("postgresql") and _postgres_is_empty(url):
        _postgres_recreate_from_template(url)
        return
    db.upgrade(url)


# A template migrated once for many test processes (`make mutate` runs one per mutant,
# and migrating was a third of a fast selection's run); nothing checks it is at head.
SHARED_SQLITE_TEMPLATE = "REPLENISH_TEST_SQLITE_TEMPLATE"


def _sqlite() -> Path:
    global _sqlite_template
    if _sqlite_template is None and os.environ.get(SHARED_SQLITE_TEMPLATE):
        _sqlite_template = Path(os.environ[SHARED_SQLITE_TEMPLATE])
    if _sqlite_template is None:
        path = Path(tempfile.mkdtemp(prefix="replenish-template-")) / "head.db"
        db.upgrade(f"sqlite:///{path}")
        _sqlite_template = path
    return _sqlite_template


def _admin(url: str) -> str:
    """A psycopg connection string for the server's maintenance database."""
    parsed = make_url(url)
    return (parsed.set(drivername="postgresql", database="postgres")
            .render_as_string(hide_password=False))


def _postgres_is_empty(url: str) -> bool:
    import psycopg

    parsed = make_url(url)
    target = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(target) as conn:
        return conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                            ).fetchone()[0] == 0


def _postgres_recreate_from_template(url: str) -> None:
    import psycopg

    parsed = make_url(url)
    server = (parsed.host, parsed.port, parsed.username)
    template = f"replenish_head_{os.getpid()}"
    with psycopg.connect(_admin(url), autocommit=True) as conn:
        if server not in _postgres_templates:
            conn.execute(f'DROP DATABASE IF EXISTS "{template}"')
            conn.execute(f'CREATE DATABASE "{template}"')
            db.upgrade(parsed.set(database=template).render_as_string(hide_password=False))
            _postgres_templates.add(server)
        conn.execute(f'DROP DATABASE "{parsed.database}"')
        conn.execute(f'CREATE DATABASE "{parsed.database}" TEMPLATE "{template}"')
