"""The webhook merchant: signed requests out, signed status callbacks in."""

import time

import pytest
from sqlalchemy import select

from backend.storage.models import MerchantCallback, Order
from devtools.merchant_server import FakeMerchant, send_callback
from devtools.net import coap_post
from tests.backend.ingest.test_ingest import answer_of, press
from tests.worker_helpers import LOOPBACK_ALLOWED, Backends, path_of, until

SECRET = "merchant-shared-secret"


@pytest.fixture
def merchant():
    with FakeMerchant(SECRET) as running:
        yield running


@pytest.fixture
def shop(settings, tmp_path, merchant):
    backends = Backends(settings, tmp_path)
    backend, world = backends.start(merchant_url=merchant.url, merchant_secret=SECRET,
                                    **LOOPBACK_ALLOWED)
    yield backend, world
    backends.close()


def placed_order(shop):
    backend, world = shop
    request = press(world.buttons[0], 1)
    order_id = answer_of(world.buttons[0], request, coap_post(world.event_url, request)).order
    until(backend, lambda s: s.get(Order, order_id).state == "placed")
    return order_id


def test_order_goes_to_the_merchant_signed_and_callbacks_deliver_it(shop, merchant):
    backend, world = shop
    order_id = placed_order(shop)
    assert merchant.bad_signatures == 0
    (sent,) = merchant.orders.values()
    assert (sent["order_id"], sent["sku"], sent["quantity"]) == (order_id, "DETERGENT-1L", 2)
    # The price the household agreed to (the order's snapshot), for the merchant to honour.
    with backend.sessions() as session:
        order = session.get(Order, order_id)
        agreed = (order.unit_price_cents, order.currency, order.total_cents)
    assert agreed[0] > 0 and agreed[2] == 2 * agreed[0]
    assert (sent["unit_price_minor"], sent["currency"], sent["total_minor"]) == agreed
    with backend.sessions() as session:
        order = session.get(Order, order_id)
        assert (order.merchant, order.merchant_ref) == ("webhook", "M-1")

    for event_id, status in (("e1", "shipped"), ("e2", "delivered")):
        code, body = send_callback(world.api_url, SECRET, {
            "event_id": event_id, "order_id": order_id, "status": status})
        assert code == 200 and body["state"] == status
    assert path_of(backend, order_id) == ["pending", "confirmed", "placed", "shipped",
                                          "delivered"]
    with backend.sessions() as session:
        actors = [t.actor for t in session.get(Order, order_id).history]
    assert actors[-2:] == ["merchant:webhook", "merchant:webhook"]


@pytest.mark.parametrize("tamper, expected", [
    ({"signature": "v1=" + "0" * 64}, "signature does not match"),
    ({"timestamp": time.time() - 3600}, "outside the tolerance window"),
])
def test_bad_or_stale_callbacks_are_refused_and_change_nothing(shop, tamper, expected,
                                                               caplog):
    backend, world = shop
    order_id = placed_order(shop)
    code, body = send_callback(world.api_url, SECRET, {
        "event_id": "x", "order_id": order_id, "status": "shipped"}, **tamper)
    assert code == 401 and expected in body["error"]["message"]
    assert path_of(backend, order_id)[-1] == "placed"
    assert "refused merchant callback" in caplog.text


def test_a_replayed_callback_is_refused(shop):
    backend, world = shop
    order_id = placed_order(shop)
    event = {"event_id": "same", "order_id": order_id, "status": "shipped"}
    assert send_callback(world.api_url, SECRET, event)[0] == 200
    code, body = send_callback(world.api_url, SECRET, event)
    assert code == 409 and "already applied" in body["error"]["message"]
    with backend.sessions() as session:
        assert len(session.scalars(select(MerchantCallback)).all()) == 1
    assert path_of(backend, order_id).count("shipped") == 1


def test_callbacks_that_do_not_fit_are_refused(shop):
    backend, world = shop
    order_id = placed_order(shop)
    code, _ = send_callback(world.api_url, SECRET, {
        "event_id": "a", "order_id": order_id, "status": "delivered"})  # not shipped yet
    assert code == 409
    code, _ = send_callback(world.api_url, SECRET, {
        "event_id": "b", "order_id": 99999, "status": "shipped"})
    assert code == 404
    code, body = send_callback(world.api_url, SECRET, {"event_id": "c"})
    assert code == 400 and "needs event_id" in body["error"]["message"]
    assert path_of(backend, order_id)[-1] == "placed"


def test_a_failing_merchant_is_retried_with_the_same_key_and_acts_once(shop, merchant,
                                                                      monkeypatch):
    from backend.orders import outbox

    monkeypatch.setattr(outbox, "BASE_DELAY_S", 0.01)
    merchant.fail_next = 2
    order_id = placed_order(shop)
    assert len(merchant.requests) == 3 and len(set(merchant.requests)) == 1
    assert len(merchant.orders) == 1
    assert path_of(shop[0], order_id).count("placed") == 1


def test_merchant_declines_end_the_order_failed(shop, merchant):
    backend, world = shop
    merchant.answer = {"status": "declined", "reason": "out_of_stock"}
    request = press(world.buttons[0], 1)
    order_id = answer_of(world.buttons[0], request, coap_post(world.event_url, request)).order
    until(backend, lambda s: s.get(Order, order_id).state == "failed")
    with backend.sessions() as session:
        assert session.get(Order, order_id).failure_reason == "out_of_stock"
