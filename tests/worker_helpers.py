"""Helpers for order-worker tests: backends with their own settings, bounded waits."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

from sqlalchemy import func, select

from backend.storage import db
from backend.storage.models import Event, Notification, Order
from tests.conftest import BackendThread, make_world

# Outbound calls to loopback are refused unless allowed (docs/security.md): the tests
# that stand up a merchant or a webhook receiver on loopback allow it, explicitly.
LOOPBACK_ALLOWED = {"webhook_allow_networks": ("127.0.0.0/8", "::1/128")}


class Backends:
    """Start backends on the test's database with changed settings."""

    def __init__(self, settings, tmp_path):
        self._settings = settings
        self._tmp = tmp_path
        self._stack = contextlib.ExitStack()
        self._count = 0

    def start(self, *, world_options: dict | None = None, simulator: dict | None = None,
              **changes):
        if simulator:
            changes["simulator"] = replace(self._settings.simulator, **simulator)
        backend = self._stack.enter_context(
            BackendThread(replace(self._settings, **changes)))
        self._count += 1
        world = make_world(backend, self._tmp / f"world{self._count}", **(world_options or {}))
        return backend, world

    def close(self):
        self._stack.close()


def until(backend, predicate, rounds: int = 400, pause_s: float = 0.02):
    """Run order worker rounds until predicate(session) holds (bounded); return its value."""
    for _ in range(rounds):
        backend.order_worker.run_once()
        with backend.sessions() as session:
            value = predicate(session)
            if value:
                return value
        time.sleep(pause_s)
    raise AssertionError("condition not reached within the bounded wait")


def order_state(backend, order_id: int) -> str:
    with backend.sessions() as session:
        return session.get(Order, order_id).state


def path_of(backend, order_id: int) -> list[str]:
    with backend.sessions() as session:
        return [t.to_state for t in session.get(Order, order_id).history]


def notification_kinds(backend, household_id: int) -> list[str]:
    with backend.sessions() as session:
        return list(session.scalars(select(Notification.kind).where(
            Notification.household_id == household_id).order_by(Notification.id)))


def events_and_orders(db_url: str) -> tuple[int, int]:
    """How many events and orders the database holds."""
    with db.transaction(db_url) as session:
        return (session.scalar(select(func.count()).select_from(Event)),
                session.scalar(select(func.count()).select_from(Order)))
