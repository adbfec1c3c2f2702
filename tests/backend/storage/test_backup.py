"""`replenish backup` while the server takes events, and `replenish restore`, on SQLite
and PostgreSQL: the restored database holds what the backup saw, passes the migrations'
check, and the backend runs on it. Unhappy paths: an existing target, a file that is no
Replenish database, a restore over a database without --force."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading

import pytest
from sqlalchemy import func, select

from backend.storage import db
from backend.storage.models import Device, Event, Household, Order
from devtools.net import coap_post
from tests.backend.ingest.test_ingest import press
from tests.backend.test_cli import Cli
from tests.conftest import DATABASES, BackendThread, make_world

pytestmark = pytest.mark.parametrize("db_url", DATABASES, indirect=True)

TABLES = (Household, Device, Event, Order)


def counts(url: str) -> dict[str, int]:
    engine = db.make_engine(url)
    try:
        with db.make_sessionmaker(engine)() as session:
            return {t.__name__: session.scalar(select(func.count()).select_from(t))
                    for t in TABLES}
    finally:
        engine.dispose()


def cli_for(tmp_path, url: str) -> Cli:
    cli = Cli(tmp_path / "data")
    cli.env["DATABASE_URL"] = url
    return cli


def test_a_backup_taken_under_load_restores_to_a_working_database(
        settings, tmp_path, request):
    target = tmp_path / "backup.db"
    with BackendThread(settings) as backend:
        world = make_world(backend, tmp_path / "fleet", buttons=2)
        stop = threading.Event()

        def keep_pressing():  # writes go on while the backup copies
            seq = 1
            while not stop.is_set() and seq < 400:
                coap_post(world.event_url, press(world.buttons[seq % 2], seq))
                seq += 1

        presser = threading.Thread(target=keep_pressing)
        presser.start()
        try:
            coap_post(world.event_url, press(world.buttons[0], 1000))
            done = cli_for(tmp_path, settings.db_url)("backup", str(target))
        finally:
            stop.set()
            presser.join(60)
        assert "backup" in done.stdout
        live = counts(settings.db_url)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    if settings.db_url.startswith("sqlite"):
        restored_url = f"sqlite:///{tmp_path / 'restored' / 'replenish.db'}"
        os.makedirs(tmp_path / "restored")
    else:
        restored_url = request.getfixturevalue("postgres_server").new_database()
    cli_for(tmp_path, restored_url)("restore", str(target))
    restored = counts(restored_url)
    assert restored["Household"] == live["Household"] and restored["Device"] == live["Device"]
    assert 1 <= restored["Event"] <= live["Event"]  # a snapshot from during the load
    assert restored["Order"] >= 1
    cli_for(tmp_path, restored_url)("db", "upgrade")  # already at the newest schema
    with BackendThread(settings.with_(database_url=restored_url)) as backend:
        answer = coap_post(f"coap://127.0.0.1:{backend.coap_port}/ev",
                           press(world.buttons[1], 5000))
        assert answer.code.is_successful()


def test_backup_and_restore_refuse_what_would_destroy_or_mislead(settings, tmp_path):
    cli = cli_for(tmp_path, settings.db_url)
    existing = tmp_path / "existing.bak"
    existing.write_text("keep me")
    refused = cli("backup", str(existing), ok=False)
    assert refused.returncode == 1 and "exists already" in refused.stderr
    assert existing.read_text() == "keep me"
    if not settings.db_url.startswith("sqlite"):
        return  # what follows is about SQLite files
    stranger = tmp_path / "stranger.db"
    with sqlite3.connect(stranger) as conn:
        conn.execute("CREATE TABLE t (x)")
    refused = cli("restore", str(stranger), "--force", ok=False)
    assert refused.returncode == 1 and "not a Replenish database" in refused.stderr
    good = tmp_path / "good.bak"
    cli("backup", str(good))
    before = counts(settings.db_url)
    refused = cli("restore", str(good), ok=False)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert counts(settings.db_url) == before
