"""The transactional outbox: two workers, a dead worker, backoff, household webhooks."""

import json
import random
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select, update

from backend.accounts import households, signing
from backend.orders import lifecycle as orders
from backend.orders import outbox
from backend.orders.fulfillment import PlaceRequest
from backend.orders.worker import OrderWorker
from backend.storage import db
from backend.storage.db import utcnow
from backend.storage.models import Notification, Order, OrderTransition, OutboxItem
from devtools.merchant_server import FakeMerchant
from tests.conftest import household_with_device
from tests.worker_helpers import LOOPBACK_ALLOWED

SECRET = "outbox-merchant"


@pytest.fixture
def sessions(settings):
    engine = db.make_engine(settings.db_url)
    yield db.make_sessionmaker(engine, writer=True)
    engine.dispose()


def confirmed_orders(sessions, count: int) -> list[int]:
    """`count` orders past their hold window: each has an order.place outbox item."""
    with sessions() as session, session.begin():
        household_id, device_pk = household_with_device(session, "outbox",
                                                        "00aa00aa00aa00aa")
        made = [orders.create(session, actor="test", hold_window_s=0,
                              household_id=household_id, device_pk=device_pk,
                              slot_index=i, product_sku="DETERGENT-1L", quantity=1).id
                for i in range(count)]
    return made


def test_two_workers_never_deliver_the_same_item(settings, sessions):
    ids = confirmed_orders(sessions, 30)
    with FakeMerchant(SECRET) as merchant:
        shop = replace(settings, merchant_url=merchant.url, merchant_secret=SECRET,
                       **LOOPBACK_ALLOWED)
        workers = [OrderWorker(sessions, shop, name=f"worker-{n}") for n in "ab"]
        handled = {w.name: 0 for w in workers}

        def run(worker):
            # Bounded by time, not by rounds: one household's calls run two at a time,
            # so a third claimed item waits out the lane's busy wait (0.5 s). 200 quick
            # rounds once ended before the last such wait did, with 2 items undelivered.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                count = worker.deliver_outbox(limit=3)
                handled[worker.name] += count
                assert worker.wait_idle(30), "the calls it started ended"
                with sessions() as session:
                    if not session.scalar(select(func.count()).select_from(OutboxItem)
                                          .where(OutboxItem.status == "pending")):
                        return
                if not count:
                    time.sleep(0.01)  # what is left waits out a busy wait

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert sorted(merchant.requests) == sorted(set(merchant.requests)), "a key sent twice"
    assert len(merchant.requests) == 30 and sum(handled.values()) == 30
    with sessions() as session:
        placed = session.scalar(select(func.count()).select_from(OrderTransition)
                                .where(OrderTransition.to_state == "placed"))
        assert placed == 30
        assert {o.state for o in session.scalars(select(Order).where(Order.id.in_(ids)))} \
            == {"placed"}


def test_a_worker_that_dies_mid_delivery_loses_nothing_and_doubles_nothing(settings,
                                                                          sessions):
    (order_id,) = confirmed_orders(sessions, 1)
    with FakeMerchant(SECRET) as merchant:
        shop = replace(settings, merchant_url=merchant.url, merchant_secret=SECRET,
                       **LOOPBACK_ALLOWED)
        doomed, survivor = (OrderWorker(sessions, shop, name=n) for n in ("doomed", "next"))
        with sessions() as session, session.begin():
            (item,) = outbox.claim(session, doomed.name)
        # The doomed worker reaches the merchant, then dies before recording anything.
        doomed.merchant.place(PlaceRequest(order_id, "DETERGENT-1L", 1, 1,
                                           item.idempotency_key, False, 899, "EUR"),
                                sessions)
        assert survivor.deliver_outbox() == 0, "the lease still protects the item"
        with sessions() as session, session.begin():  # time passes: the lease runs out
            session.execute(update(OutboxItem).values(locked_until=utcnow()))
        assert survivor.deliver_outbox() == 1
        assert survivor.wait_idle(30), "the call it started ended"
    assert merchant.requests == [item.idempotency_key] * 2
    assert len(merchant.orders) == 1, "the merchant acted once"
    with sessions() as session:
        assert session.get(Order, order_id).state == "placed"
        done = session.scalars(select(OutboxItem)).one()
        assert (done.status, done.attempts) == ("done", 2)


def test_backoff_is_exponential_with_full_jitter():
    rng = random.Random(7)
    for attempts in range(1, 12):
        cap = min(outbox.MAX_DELAY_S, outbox.BASE_DELAY_S * 2 ** attempts)
        samples = [outbox.backoff_s(attempts, rng) for _ in range(200)]
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.8 and min(samples) < cap * 0.2  # spread out
    assert max(outbox.backoff_s(30, rng) for _ in range(500)) <= outbox.MAX_DELAY_S


def test_backoff_grows_from_one_second_to_the_cap():
    class Top:  # the largest draw: the bound itself
        def uniform(self, low, high):
            assert low == 0
            return high

    assert [outbox.backoff_s(n, Top()) for n in (0, 1, 2, 8, 9)] == [1, 2, 4, 256, 300]
    assert outbox.MAX_DELAY_S == 300


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        signing.verify("household-secret", self.headers, body)
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()


def test_notifications_reach_the_household_webhook_signed(settings, sessions):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []
    try:
        with sessions() as session, session.begin():
            household, _ = households.create(session, "Hooked")
            household.webhook_url = f"http://127.0.0.1:{server.server_address[1]}/hook"
            household.webhook_secret = "household-secret"
            session.flush()
            from backend.orders import notifications

            notifications.notify(session, household.id, "low_battery", "Battery low.")
        engine = OrderWorker(sessions, replace(settings, **LOOPBACK_ALLOWED), name="hooks")
        assert engine.deliver_outbox() == 1
        assert engine.wait_idle(30), "the webhook call ended"
    finally:
        server.shutdown()
        server.server_close()
    assert [(n["kind"], n["message"]) for n in _Hook.received] == [("low_battery",
                                                                     "Battery low.")]
    with sessions() as session:
        assert session.scalars(select(Notification)).one().kind == "low_battery"
        assert session.scalars(select(OutboxItem)).one().status == "done"
