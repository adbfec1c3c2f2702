"""The order engine's worker: ends hold windows, delivers the outbox, lets the
simulator advance, and watches devices (offline). One round = a few short transactions.

Several engine workers may run at once (several processes on PostgreSQL): holds and
simulator steps are guarded UPDATEs, outbox items are leased.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.request
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from backend.accounts import signing
from backend.config import Settings
from backend.orders import lifecycle as orders
from backend.orders import notifications, outbox
from backend.orders.fulfillment import (
    Fulfillment,
    PlaceRequest,
    SimulatedWarehouse,
    WebhookMerchant,
)
from backend.orders.fulfillment.base import apply_status
from backend.orders.lifecycle import State
from backend.storage.db import utcnow
from backend.storage.models import Device, Household, Notification, Order, SimOrder, SimStock

log = logging.getLogger(__name__)


class OrderEngine:
    def __init__(self, sessions: sessionmaker, settings: Settings, name: str | None = None,
                 readers: sessionmaker | None = None):
        self._sessions = sessions
        self._readers = readers or sessions
        self._settings = settings
        self.name = name or f"engine-{os.getpid()}-{id(self) & 0xffff:x}"
        self.simulator = SimulatedWarehouse(settings.simulator)
        self.merchant: Fulfillment | None = (
            WebhookMerchant(settings.merchant_url, settings.merchant_secret)
            if settings.merchant_url else None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._settings.worker_poll_s):
            try:
                self.run_once()
            except Exception:  # the next round retries; nothing is lost
                log.exception("order engine round failed")

    def run_once(self) -> int:
        """One round of everything that has work; returns how many things happened.

        Which steps have work is read first, in one reading transaction: on SQLite an
        idle step would otherwise take the single write lock (BEGIN IMMEDIATE) four
        times a round, queueing behind the ingest writer's group commits and delaying
        them in turn."""
        due = self._due()
        return ((self.release_holds() if due["holds"] else 0)
                + (self.deliver_outbox() if due["outbox"] else 0)
                + (self.advance_simulator() if due["simulator"] else 0)
                + (self.check_offline() if due["offline"] else 0))

    def _due(self) -> dict[str, bool]:
        now = utcnow()
        silent_since = now - timedelta(seconds=self._settings.offline_after_s)
        probes = {
            "holds": select(Order.id).where(Order.state == State.PENDING,
                                            Order.hold_until <= now),
            "outbox": outbox.due_query(now),
            "simulator": select(SimOrder.order_id).where(
                SimOrder.status.in_(SimulatedWarehouse.MOVING)),
            "restock": select(SimStock.sku).where(SimStock.restock_at <= now),
            "offline": select(Device.id).where(Device.household_id.is_not(None),
                                               Device.last_seen_at < silent_since,
                                               Device.offline_notified.is_(False)),
        }
        with self._readers() as session:
            due = {name: session.execute(query.limit(1)).first() is not None
                   for name, query in probes.items()}
        due["simulator"] = due["simulator"] or due.pop("restock")
        return due

    # -- steps -----------------------------------------------------------------------
    def release_holds(self) -> int:
        with self._sessions() as session, session.begin():
            due = session.scalars(
                select(Order).where(Order.state == State.PENDING,
                                    Order.hold_until <= utcnow())
                .order_by(Order.id).with_for_update(skip_locked=True, key_share=True)
            ).all()
            return sum(orders.transition(session, order, State.CONFIRMED,
                                         actor=f"worker:{self.name}",
                                         reason="hold window over") for order in due)

    def advance_simulator(self) -> int:
        with self._sessions() as session, session.begin():
            return self.simulator.advance(session, utcnow())

    def check_offline(self) -> int:
        limit = utcnow() - timedelta(seconds=self._settings.offline_after_s)  # as in _due
        with self._sessions() as session, session.begin():
            silent = session.scalars(
                select(Device).where(Device.household_id.is_not(None),
                                     Device.last_seen_at < limit,
                                     Device.offline_notified.is_(False))
                .with_for_update(skip_locked=True, key_share=True)
            ).all()
            for device in silent:
                device.offline_notified = True
                notifications.notify(
                    session, device.household_id, "device_offline",
                    f"{device.name or device.serial} has not been heard from since "
                    f"{device.last_seen_at:%Y-%m-%d %H:%M} UTC.", device_pk=device.id)
            return len(silent)

    def deliver_outbox(self, limit: int = 20) -> int:
        with self._sessions() as session, session.begin():
            claimed = outbox.claim(session, self.name, limit,
                                   lease_s=self._settings.outbox_lease_s)
        for item in claimed:
            try:
                self._deliver(item)
            except Exception as err:  # MerchantUnreachable, network, a bug: retry later
                self._failed(item, f"{type(err).__name__}: {err}")
        return len(claimed)

    # -- outbox handlers ---------------------------------------------------------------
    def _deliver(self, item: outbox.Claimed) -> None:
        if item.kind == "order.place":
            self._place(item)
        elif item.kind == "household.webhook":
            self._household_webhook(item)
        else:
            raise ValueError(f"unknown outbox kind {item.kind!r}")

    def adapter_for(self, order: Order) -> Fulfillment:
        # Test-mode orders never reach a real merchant.
        return self.merchant if (self.merchant and not order.is_test) else self.simulator

    def _place(self, item: outbox.Claimed) -> None:
        with self._sessions() as session:
            order = session.get(Order, item.payload["order_id"])
            adapter = self.adapter_for(order)
            request = PlaceRequest(order.id, order.product_sku, order.quantity,
                                   order.household_id, item.idempotency_key, order.is_test)
            state = order.state
        placement = None
        if state == State.CONFIRMED:  # cancelled or already answered: nothing to send
            placement = adapter.place(request, self._sessions)
        with self._sessions() as session, session.begin():
            if outbox.complete(session, item.id, self.name) and placement is not None:
                order = session.get(Order, request.order_id, with_for_update=True)
                order.merchant = adapter.name
                if order.state == State.CONFIRMED:
                    apply_status(session, order, placement.status,
                                 actor=f"fulfillment:{adapter.name}",
                                 reason=placement.reason, merchant_ref=placement.merchant_ref)

    def _household_webhook(self, item: outbox.Claimed) -> None:
        with self._sessions() as session:
            note = session.get(Notification, item.payload["notification_id"])
            household = session.get(Household, note.household_id)
            url, secret = household.webhook_url, household.webhook_secret or ""
            body = json.dumps({"id": note.id, "kind": note.kind, "message": note.message,
                               "order_id": note.order_id,
                               "created_at": note.created_at.isoformat() + "Z"}).encode()
        if url:
            headers = {**signing.sign_headers(secret, body),
                       "Idempotency-Key": item.idempotency_key}
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=10):
                pass
        with self._sessions() as session, session.begin():
            outbox.complete(session, item.id, self.name)

    def _failed(self, item: outbox.Claimed, error: str) -> None:
        with self._sessions() as session, session.begin():
            status = outbox.retry_later(session, item.id, self.name, error)
            if status == "dead" and item.kind == "order.place":
                order = session.get(Order, item.payload["order_id"], with_for_update=True)
                if order.state == State.CONFIRMED:
                    orders.transition(session, order, State.FAILED,
                                      actor=f"worker:{self.name}",
                                      reason="merchant_unreachable")

