"""Shared fixtures: settings on a temporary database, a running backend, a household."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from backend.accounts import devices, households
from backend.config import Settings, SimulatorSettings
from backend.storage import db
from backend.storage.models import Batch, Device
from tests import migrated

if TYPE_CHECKING:  # imported where used: tests that start no backend load neither
    # (aiocoap, Flask: about a second of each `make mutate` test run)
    from backend.runtime import Backend
    from provisioning.batch import ProvisionedDevice

DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server():
    from devtools.postgres import ExternalPostgres, PostgresServer

    if os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        yield ExternalPostgres(os.environ["DATABASE_URL"])
        return
    server = PostgresServer()
    server.start()  # holds its port until it listens (devtools/postgres.py)
    yield server
    server.stop()


@pytest.fixture(params=DATABASES)
def db_url(request, tmp_path):
    """Every test that touches the database runs on SQLite and on PostgreSQL.

    PostgreSQL is a throwaway server started for the session, or the server named by
    DATABASE_URL (a fresh database is created there for each test)."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_server").new_database()
    return f"sqlite:///{tmp_path / 'replenish.db'}"


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    migrated.migrate(db_url)
    return Settings(
        data_dir=tmp_path,
        database_url=db_url,
        coap_host="127.0.0.1",
        coap_port=0,  # port 0 everywhere: the backend reports what it got
        http_host="127.0.0.1",
        http_port=0,
        kek_hex=secrets.token_hex(32),
        simulator=SimulatorSettings(step_s=0.2, poll_s=0.05),
    )


@pytest.fixture
def sessions(settings):
    """Sessions on the test's database, for tests that call the backend's functions
    directly (no backend started)."""
    engine = db.make_engine(settings.db_url)
    yield db.make_sessionmaker(engine)
    engine.dispose()


class BackendThread:
    """The real backend on its own event loop in a thread, as `replenish run` has it."""

    def __init__(self, settings: Settings):
        from backend.runtime import Backend

        self.backend = Backend(settings)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Backend:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.backend.start(), self.loop).result(30)
        return self.backend

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.backend.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def backend(settings):
    with BackendThread(settings) as running:
        yield running


@dataclass
class World:
    """A household with claimed, configured buttons and one unclaimed button."""

    settings: Settings
    coap_port: int
    http_port: int
    household_id: int
    token: str
    buttons: list[ProvisionedDevice]
    unclaimed: ProvisionedDevice

    @property
    def event_url(self) -> str:
        return f"coap://127.0.0.1:{self.coap_port}/ev"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/api/v1"


def make_world(backend: Backend, out: Path, buttons: int = 2, hold_window_s: int = 0) -> World:
    from provisioning.batch import provision_batch

    s = backend.settings.with_(coap_port=backend.coap_port, http_port=backend.http_port)
    with backend.writer_sessions() as session, session.begin():
        made = provision_batch(session, backend.keyring, model="button", count=buttons + 1,
                               out=out, coap_host="127.0.0.1", coap_port=backend.coap_port,
                               name=f"test-{secrets.token_hex(3)}")
        household, token = households.create(session, "Test household")
        household.hold_window_s = hold_window_s  # tests of policies set their own
        household.max_orders_per_day = None
        for device in made[:buttons]:
            claimed = devices.claim(session, household, device.claim_code)
            devices.configure_slot(session, claimed, 0, "DETERGENT-1L", 2)
        household_id = household.id
    return World(s, backend.coap_port, backend.http_port, household_id, token, made[:buttons], made[buttons])


def household_with_device(session, name: str, device_id: str) -> tuple[int, int]:
    """A household owning one device (with a stand-in key): (household id, device pk).
    For tests of orders and the outbox that need rows, not a working device."""
    household, _ = households.create(session, name)
    batch = Batch(name=name, model="button", count=1, firmware_version="0",
                  created_by="test")
    session.add(batch)
    session.flush()
    device = Device(device_id=device_id, serial=f"{name}-00001", model="button",
                    batch_id=batch.id, wrapped_key=b"\x01" * 45,
                    claim_code_sha256=device_id * 4, household_id=household.id)
    session.add(device)
    session.flush()
    return household.id, device.id


@pytest.fixture
def world(backend, tmp_path) -> World:
    return make_world(backend, tmp_path / "bundles")
