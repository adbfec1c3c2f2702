"""The order worker: ends hold windows, delivers the outbox, lets the simulator advance,
and watches devices (offline). One round = a few short transactions.

Several order workers may run at once (several processes on PostgreSQL): holds and
simulator steps are guarded UPDATEs, outbox items are leased.

The round never waits on the network: it claims outbox items and hands each to a lane
of `backend/orders/outbound/dispatch.py` (orders to the merchant or the simulator in
one lane, household webhooks in another), bounded per destination and per household
with a circuit breaker per destination. A finished call wakes the worker so that the
next items go out without waiting for the next round.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from backend.accounts import signing
from backend.config import Settings
from backend.metrics import Metrics
from backend.orders import lifecycle as orders
from backend.orders import display, notifications, outbox
from backend.orders.fulfillment import (
    Fulfillment,
    MerchantUnreachable,
    PlaceRequest,
    SimulatedWarehouse,
    WebhookMerchant,
)
from backend.orders.fulfillment.base import apply_status
from backend.orders.lifecycle import State
from backend.orders.outbound import (
    AddressPolicy,
    AddressRefused,
    Dispatcher,
    Job,
    Limits,
    Outbound,
    OutboundError,
    Timeouts,
)
from backend.orders.outbound.policy import key_of
from backend.storage.db import utcnow
from backend.storage.models import Device, Household, Notification, Order, SimOrder, SimStock

log = logging.getLogger(__name__)

WEBHOOK = "household.webhook"
STOP_GRACE_S = 1.0  # calls still running after this are cut off (their items are retried)
WEBHOOK_BUSY_S = 1.0  # a webhook whose household or destination is busy waits this long
# Device ids read per round by the offline sweep (`check_offline`): with the default
# round of 0.5 s, 1,000,000 devices are swept in 100 s.
OFFLINE_SWEEP_IDS = 5000


class OrderWorker:
    def __init__(self, sessions: sessionmaker, settings: Settings, name: str | None = None,
                 readers: sessionmaker | None = None, metrics: Metrics | None = None,
                 offline_sweep_ids: int = OFFLINE_SWEEP_IDS):
        self._sessions = sessions
        self._sweep_ids = offline_sweep_ids
        self._swept_to = 0  # the offline sweep goes on after this device id
        self._readers = readers or sessions
        self._settings = settings
        self.name = name or f"worker-{os.getpid()}-{id(self) & 0xffff:x}"
        self.simulator = SimulatedWarehouse(settings.simulator)
        self.metrics = metrics or Metrics()
        s = settings
        self.outbound = Outbound(AddressPolicy(s.webhook_allow_networks),
                                 Timeouts(s.outbound_connect_timeout_s, s.outbound_timeout_s))
        self.merchant: Fulfillment | None = (
            WebhookMerchant(s.merchant_url, s.merchant_secret, self.outbound)
            if s.merchant_url else None)
        self._stop = threading.Event()
        self._wake = threading.Event()  # a call finished: there is room for the next
        limits = dict(per_destination=s.outbound_per_destination,
                      per_household=s.outbound_per_household,
                      breaker_failures=s.outbound_breaker_failures,
                      breaker_open_s=s.outbound_breaker_open_s)
        # Orders: two destinations at most (the merchant, the simulator for test orders).
        self.placing = Dispatcher("orders", Limits(
            threads=2 * s.outbound_per_destination, busy_wait_s=s.worker_poll_s, **limits),
            on_done=self._wake.set, metrics=self.metrics)
        self.notifying = Dispatcher("webhooks", Limits(
            threads=s.outbound_threads, busy_wait_s=WEBHOOK_BUSY_S, **limits),
            on_done=self._wake.set, metrics=self.metrics)
        self.metrics.add_source(self._collect)
        if s.outbox_lease_s <= s.outbound_timeout_s:
            log.warning("REPLENISH_OUTBOX_LEASE_S (%g s) is not longer than "
                        "REPLENISH_OUTBOUND_TIMEOUT_S (%g s): a slow call's item may be "
                        "taken again before it ends", s.outbox_lease_s, s.outbound_timeout_s)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the rounds, then the calls: those still running after STOP_GRACE_S are
        cut off; their items are retried (by idempotency key) after a restart."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        for lane in (self.placing, self.notifying):
            lane.stop()
        if not self.wait_idle(STOP_GRACE_S):
            cut = self.outbound.abort_all()
            log.info("stopping: cut off %d outbound call(s) still running", cut)
            self.wait_idle(STOP_GRACE_S)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait (bounded) until no outbound call of this worker runs."""
        deadline = time.monotonic() + timeout_s
        return all(lane.wait_idle(max(0.0, deadline - time.monotonic()))
                   for lane in (self.placing, self.notifying))

    def _run(self) -> None:
        poll_s = self._settings.worker_poll_s
        next_round = time.monotonic() + poll_s
        while True:
            woke = self._wake.wait(max(0.0, next_round - time.monotonic()))
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                if time.monotonic() >= next_round:
                    next_round = time.monotonic() + poll_s
                    self.run_once()
                elif woke:
                    self._deliver_if_due()
            except Exception:  # the next round retries; nothing is lost
                log.exception("order worker round failed")

    def _deliver_if_due(self) -> int:
        with self._readers() as session:
            if session.execute(outbox.due_query(utcnow()).limit(1)).first() is None:
                return 0
        return self.deliver_outbox()

    def run_once(self) -> int:
        """One round of everything that has work; returns how many things happened.

        Which steps have work is read first, in one reading transaction: on SQLite an
        idle step would otherwise take the single write lock (BEGIN IMMEDIATE) four
        times a round, queueing behind the ingest writer's group commits and delaying
        them in turn. (The offline sweep reads its span first, the same way.)"""
        with self.metrics.worker_round_seconds.time():
            due = self._due()
            return ((self.release_holds() if due["holds"] else 0)
                    + (self.expire_consent() if due["consent"] else 0)
                    + (self.deliver_outbox() if due["outbox"] else 0)
                    + (self.advance_simulator() if due["simulator"] else 0)
                    + self.check_offline())

    def _due(self) -> dict[str, bool]:
        now = utcnow()
        probes = {
            "holds": select(Order.id).where(Order.state == State.PENDING,
                                            Order.hold_until <= now),
            "consent": select(Order.id).where(Order.state == State.AWAITING_CONSENT,
                                              Order.created_at <= self._unconfirmed_since(now)),
            "outbox": outbox.due_query(now),
            "simulator": select(SimOrder.order_id).where(
                SimOrder.status.in_(SimulatedWarehouse.MOVING)),
            "restock": select(SimStock.sku).where(SimStock.restock_at <= now),
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

    def _unconfirmed_since(self, now):
        return now - timedelta(seconds=self._settings.consent_expire_s)

    def expire_consent(self) -> int:
        """Orders the household neither confirmed nor declined in time are cancelled:
        nothing was spent, and the slot can order again."""
        waited = display.duration(self._settings.consent_expire_s / 86400)
        with self._sessions() as session, session.begin():
            due = session.scalars(
                select(Order).where(Order.state == State.AWAITING_CONSENT,
                                    Order.created_at <= self._unconfirmed_since(utcnow()))
                .order_by(Order.id).with_for_update(skip_locked=True, key_share=True)
            ).all()
            return sum(orders.transition(session, order, State.CANCELLED,
                                         actor=f"worker:{self.name}",
                                         reason=f"not confirmed within {waited}")
                       for order in due)

    def advance_simulator(self) -> int:
        with self._sessions() as session, session.begin():
            return self.simulator.advance(session, utcnow())

    def check_offline(self) -> int:
        """Report the claimed devices silent for offline_after_s among the next
        OFFLINE_SWEEP_IDS device ids; after the highest id the sweep starts again.

        A sweep, not an index: every event writes last_seen_at, and with an index on it
        each of those writes was a new row version in all of the devices table's
        indexes on PostgreSQL (migration 0012). A device falls silent over a day, so
        the sweep's few minutes of delay do not matter. Read first, as `_due` is: an
        idle sweep takes no write lock."""
        start, end = self._swept_to, self._swept_to + self._sweep_ids
        limit = utcnow() - timedelta(seconds=self._settings.offline_after_s)
        quiet = (Device.id > start, Device.id <= end, Device.household_id.is_not(None),
                 Device.last_seen_at < limit, Device.offline_notified.is_(False))
        with self._readers() as session:
            found = session.execute(select(Device.id).where(*quiet).limit(1)).first()
            highest = session.scalar(select(func.max(Device.id)))
        self._swept_to = end if highest is not None and end < highest else 0
        if found is None:
            return 0
        with self._sessions() as session, session.begin():
            silent = session.scalars(
                select(Device).where(*quiet).with_for_update(skip_locked=True, key_share=True)
            ).all()
            for device in silent:
                device.offline_notified = True
                notifications.notify(
                    session, device.household_id, "device_offline",
                    f"{device.name or device.serial} has not been heard from since "
                    f"{device.last_seen_at:%Y-%m-%d %H:%M} UTC.", device_pk=device.id)
            return len(silent)

    def deliver_outbox(self, limit: int = 20) -> int:
        """Claim what the lanes have room for and start it; returns how many items were
        started or found done (not those given back to wait). Never waits on a call
        (`wait_idle` does)."""
        lanes = [(self.placing, {"other_than": (WEBHOOK,)}),
                 (self.notifying, {"kinds": (WEBHOOK,)})]
        room = [min(limit, lane.free()) for lane, _ in lanes]
        if not any(room):
            return 0
        with self._sessions() as session, session.begin():
            claimed = [(lane, item) for (lane, which), n in zip(lanes, room) if n
                       for item in outbox.claim(session, self.name, n,
                                                lease_s=self._settings.outbox_lease_s,
                                                **which)]
        deferred = []
        for lane, item in claimed:
            try:
                job = self._job(item)
            except Exception as err:  # a bug or a vanished row: retry later
                self._failed(item, f"{type(err).__name__}: {err}")
                continue
            if job is not None and (wait := lane.try_start(job)) is not None:
                deferred.append((item.id, wait))
        if deferred:
            with self._sessions() as session, session.begin():
                for item_id, wait in deferred:
                    outbox.defer(session, item_id, self.name, wait)
        return len(claimed) - len(deferred)

    # -- outbox handlers ---------------------------------------------------------------
    def _job(self, item: outbox.Claimed) -> Job | None:
        """What to run for `item`, or None when it is done already (nothing to send)."""
        if item.kind == "order.place":
            return self._place_job(item)
        if item.kind == WEBHOOK:
            return self._webhook_job(item)
        raise ValueError(f"unknown outbox kind {item.kind!r}")

    def adapter_for(self, order: Order) -> Fulfillment:
        # Test-mode orders never reach a real merchant.
        return self.merchant if (self.merchant and not order.is_test) else self.simulator

    def _place_job(self, item: outbox.Claimed) -> Job | None:
        with self._sessions() as session:
            order = session.get(Order, item.payload["order_id"])
            adapter = self.adapter_for(order)
            request = PlaceRequest(order.id, order.product_sku, order.quantity,
                                   order.household_id, item.idempotency_key, order.is_test,
                                   order.unit_price_cents, order.currency)
            state = order.state
        if state != State.CONFIRMED:  # cancelled or already answered: nothing to send
            self._complete(item)
            return None
        destination = (key_of(self._settings.merchant_url) if adapter is self.merchant
                       else adapter.name)
        return Job(destination, request.household_id,
                   lambda: self._place(item, adapter, request), f"order {request.order_id}")

    def _place(self, item: outbox.Claimed, adapter: Fulfillment,
               request: PlaceRequest) -> bool:
        """Runs on a lane thread. True: the merchant answered."""
        started = time.perf_counter()
        try:
            placement = adapter.place(request, self._sessions)
        except MerchantUnreachable as err:
            self._took("orders", "error", started)
            self._failed(item, f"MerchantUnreachable: {err}")
            return False
        except Exception as err:  # a bug or the database, not the merchant: retry later
            log.exception("placing order %d failed", request.order_id)
            self._failed(item, f"{type(err).__name__}: {err}")
            return True
        self._took("orders", "ok", started)
        try:
            with self._sessions() as session, session.begin():
                if outbox.complete(session, item.id, self.name):
                    order = session.get(Order, request.order_id, with_for_update=True)
                    order.merchant = adapter.name
                    if order.state == State.CONFIRMED:
                        apply_status(session, order, placement.status,
                                     actor=f"fulfillment:{adapter.name}",
                                     reason=placement.reason,
                                     merchant_ref=placement.merchant_ref)
        except Exception as err:  # the merchant answered; recording it failed: retry
            self._failed(item, f"{type(err).__name__}: {err}")
        return True

    def _webhook_job(self, item: outbox.Claimed) -> Job | None:
        with self._sessions() as session:
            note = session.get(Notification, item.payload["notification_id"])
            household = session.get(Household, note.household_id)
            url, secret = household.webhook_url, household.webhook_secret or ""
            body = json.dumps({"id": note.id, "kind": note.kind, "message": note.message,
                               "order_id": note.order_id,
                               "created_at": note.created_at.isoformat() + "Z"}).encode()
        if not url:  # the household stopped its webhook meanwhile
            self._complete(item)
            return None
        return Job(key_of(url), note.household_id,
                   lambda: self._send_webhook(item, note.household_id, url, secret, body),
                   f"notification {note.id}")

    def _send_webhook(self, item: outbox.Claimed, household_id: int, url: str, secret: str,
                      body: bytes) -> bool:
        """Runs on a lane thread. True unless the destination failed to answer."""
        headers = {**signing.sign_headers(secret, body),
                   "Idempotency-Key": item.idempotency_key}
        started = time.perf_counter()
        try:
            answer = self.outbound.post(url, body, headers, what="webhook_url")
        except AddressRefused as err:  # not tried: says nothing about the destination
            self._took("webhooks", "refused", started)
            log.warning("household %d webhook not sent: %s", household_id, err)
            self._failed(item, f"refused: {err}")
            return True
        except OutboundError as err:
            self._took("webhooks", "error", started)
            self._failed(item, str(err))
            return False
        self._took("webhooks", "ok" if 200 <= answer.status < 300 else "rejected", started)
        if not 200 <= answer.status < 300:
            self._failed(item, f"webhook answered {answer.status}" + (
                "; redirects are not followed" if answer.redirect else ""))
            return answer.status < 500
        self._complete(item)
        return True

    def _took(self, lane: str, outcome: str, started: float) -> None:
        self.metrics.outbound_seconds.labels(lane, outcome).observe(
            time.perf_counter() - started)

    def _collect(self):
        """Scrape time: calls running and breakers open, per lane."""
        running = GaugeMetricFamily("replenish_outbound_in_flight", "Outbound calls "
                                    "running now", labels=["lane"])
        open_ = GaugeMetricFamily("replenish_outbound_breakers_open", "Destinations whose "
                                  "circuit breaker is open", labels=["lane"])
        for lane in (self.placing, self.notifying):
            running.add_metric([lane.name], lane.running())
            open_.add_metric([lane.name], lane.open_breakers())
        return [running, open_]

    def _complete(self, item: outbox.Claimed) -> None:
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
