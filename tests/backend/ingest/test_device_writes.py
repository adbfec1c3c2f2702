"""An event's write of its device row adds no index entry (issue 18, migration 0012).

Every event writes its device's last_seq and last_seen_at. With an index on one of
the columns it writes, each write on PostgreSQL was a new row version with an entry
in every one of the devices table's indexes (not a HOT update), and on SQLite an index
rewrite. The offline watch that index served is now a sweep by id
(tests/backend/orders/test_worker.py).
"""

from __future__ import annotations

import secrets
import time

import pytest
from sqlalchemy import inspect, text

from backend.accounts.keys import Keyring
from backend.ingest import batch_sql
from backend.storage import db
from tests.backend.ingest.test_batch_paths import batched, build, requests
from tests.conftest import DATABASES


def _indexed_columns(url: str) -> set[str]:
    engine = db.make_engine(url)
    try:
        found = inspect(engine)
        columns = set(found.get_pk_constraint("devices")["constrained_columns"])
        for index in found.get_indexes("devices") + found.get_unique_constraints("devices"):
            columns.update(index["column_names"])
        return columns
    finally:
        engine.dispose()


def _device_updates(url: str) -> tuple[int, int]:
    """(updates, HOT updates) of the devices table, as PostgreSQL's statistics have them."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                "WHERE relname = 'devices'")).one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_the_columns_an_event_writes_are_in_no_index(db_url, settings, monkeypatch):
    keyring = Keyring(secrets.token_bytes(32))
    build(db_url, keyring)
    written: set[str] = set()
    update_devices = batch_sql.BatchStatements.update_devices

    def recording(self, cursor, columns, rows):
        written.update(columns)
        return update_devices(self, cursor, columns, rows)

    monkeypatch.setattr(batch_sql.BatchStatements, "update_devices", recording)
    earlier, mixed = requests()
    _replies, fallbacks = batched(db_url, keyring, [earlier, mixed])

    assert fallbacks == 0
    assert {"last_seq", "last_seen_at"} <= written, written
    assert not written & _indexed_columns(db_url), "an event's device write touches an index"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # HOT is PostgreSQL's
def test_an_events_device_write_stays_in_place_on_postgresql(db_url, settings):
    """HOT on PostgreSQL also needs room on the row's page: the table keeps some. The
    test's devices are on the table's first page, which 300 more devices fill up to
    the table's fill factor (all of it without one)."""
    keyring = Keyring(secrets.token_bytes(32))
    build(db_url, keyring)
    engine = db.make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO devices (device_id, serial, model, wrapped_key, "
                "claim_code_sha256, status, last_seq, created_at) SELECT 'filler' || n, "
                "'filler-' || n, 'button', '\\x00', md5(n::text), 'active', 0, now() "
                "FROM generate_series(1, 300) AS n"))
    finally:
        engine.dispose()
    earlier, _mixed = requests()
    assert _device_updates(db_url)[0] == 0  # build() only inserts
    batched(db_url, keyring, [earlier])  # two devices: a first press, a press after seq 5

    # The writer's backend hands its statistics over as its connection closes.
    deadline = time.monotonic() + 15
    while (updates := _device_updates(db_url))[0] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert updates == (2, 2), "(updates, HOT updates) of devices"
