"""The Alembic migration builds exactly the schema the models describe, both ways."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from backend.storage import db
from backend.storage.models import Base
from tests.conftest import DATABASES

pytestmark = pytest.mark.parametrize("db_url", DATABASES, indirect=True)

MODEL_TABLES = set(Base.metadata.tables)


def tables(url: str) -> set[str]:
    engine = db.make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def differences(url: str) -> list:
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_from_empty_creates_the_schema(db_url):
    assert tables(db_url) == set()
    db.upgrade(db_url)
    assert tables(db_url) == MODEL_TABLES
    assert MODEL_TABLES >= {"households", "api_tokens", "batches", "devices", "slots",
                            "events", "orders", "order_transitions"}
    assert current_revision(db_url) is not None


def test_migration_matches_the_models(db_url):
    db.upgrade(db_url)
    assert differences(db_url) == []


def test_the_comparison_notices_a_schema_drift(db_url):
    """Guards the check above: a schema that differs from the models is reported."""
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP INDEX ix_orders_state"))
    finally:
        engine.dispose()
    drift = differences(db_url)
    assert [d[0] for d in drift] == ["add_index"], drift


def test_downgrade_to_base_then_upgrade_again(db_url):
    db.upgrade(db_url)
    head = current_revision(db_url)
    command.downgrade(db.alembic_config(db_url), "base")
    assert tables(db_url) == set()
    assert current_revision(db_url) is None
    db.upgrade(db_url)
    assert tables(db_url) == MODEL_TABLES
    assert current_revision(db_url) == head
    assert differences(db_url) == []


def test_0010_keeps_existing_slots_confirmed_at_todays_price(db_url):
    """A slot configured before consent existed is treated as chosen at today's price
    (so its next press is placed, not held), and the seeded names lose their pack."""
    db.upgrade(db_url, "0007")
    engine = db.make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO households (name, created_at, hold_window_s, "
                "allow_multiple_open) VALUES ('h', '2026-01-01 00:00:00', 0, false)"))
            connection.execute(text(
                "INSERT INTO devices (device_id, serial, model, wrapped_key, "
                "claim_code_sha256, status, last_seq, created_at, test_mode, "
                "low_battery_notified, offline_notified) VALUES ('0011223344556677', 's', "
                "'button', :key, 'c', 'active', 0, '2026-01-01 00:00:00', false, false, "
                "false)"), {"key": b"k"})
            connection.execute(text(
                "INSERT INTO slots (device_pk, index, product_sku, quantity, kind, "
                "safety_days) SELECT id, 0, 'COFFEE-BEANS-1KG', 1, 'button', 2.0 "
                "FROM devices".replace("index", '"index"')))
        db.upgrade(db_url)
        with engine.connect() as connection:
            assert connection.execute(text(
                "SELECT confirmed_price_minor, confirmed_currency FROM slots")).one() == (
                1899, "EUR")
            assert connection.execute(text(
                "SELECT name, brand, currency, available FROM products "
                "WHERE sku = 'COFFEE-BEANS-1KG'")).one() == (
                "Coffee beans", "Replenish Roasters", "EUR", True)
    finally:
        engine.dispose()
