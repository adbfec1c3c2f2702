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
