"""Order policies, hold window, test mode and every failure path, on the real backend."""

import pytest
from sqlalchemy import select

from backend.protocol import Result
from backend.storage.models import Household, Order, OutboxItem, SimOrder
from devtools.merchant_server import FakeMerchant
from devtools.net import api, coap_post
from tests.backend.ingest.test_ingest import answer_of, press
from tests.worker_helpers import (
    LOOPBACK_ALLOWED,
    Backends,
    notification_kinds,
    order_state,
    path_of,
    until,
)


@pytest.fixture
def backends(settings, tmp_path):
    made = Backends(settings, tmp_path)
    yield made
    made.close()


def send_press(world, button, seq, **extra):
    request = press(button, seq, **extra)
    return answer_of(button, request, coap_post(world.event_url, request))


def set_household(backend, world, **values):
    with backend.writer_sessions() as session, session.begin():
        household = session.get(Household, world.household_id)
        for name, value in values.items():
            setattr(household, name, value)


def test_hold_window_lets_the_household_cancel(backends):
    backend, world = backends.start(world_options={"hold_window_s": 900})
    button = world.buttons[0]
    answer = send_press(world, button, 1)
    assert answer.result is Result.CREATED and answer.state == "pending"
    backend.order_worker.run_once()
    assert order_state(backend, answer.order) == "pending", "the hold window is 15 min"

    status, body = api("POST", f"{world.api_url}/orders/{answer.order}/cancel", world.token)
    assert status == 200 and body["state"] == "cancelled" and not body["cancellable"]
    assert body["history"][-1]["actor"] == f"household:{world.household_id}"
    backend.order_worker.run_once()
    with backend.sessions() as session:
        assert session.scalars(select(SimOrder)).all() == [], "never reached the warehouse"
        assert session.scalar(select(OutboxItem.id)) is None
    assert "order_cancelled" in notification_kinds(backend, world.household_id)
    # The slot is free again: the next press orders anew.
    again = send_press(world, button, 2)
    assert again.result is Result.CREATED and again.order != answer.order


def test_cancel_is_refused_after_the_hold_window_and_for_strangers(backends):
    backend, world = backends.start(world_options={"hold_window_s": 1})
    answer = send_press(world, world.buttons[0], 1)
    # Placed or past it: the simulator ships an order 0.2 s after accepting it.
    until(backend, lambda s: s.get(Order, answer.order).state in
          ("placed", "shipped", "delivered"))
    status, body = api("POST", f"{world.api_url}/orders/{answer.order}/cancel", world.token)
    assert status == 409 and "only be cancelled while pending" in body["error"]["message"]
    assert path_of(backend, answer.order)[:3] == ["pending", "confirmed", "placed"]

    _stranger_backend, stranger = backends.start()
    status, _ = api("POST", f"{world.api_url}/orders/{answer.order}/cancel", stranger.token)
    assert status == 404


def test_one_open_order_per_slot_unless_the_household_allows_more(backends):
    backend, world = backends.start()
    button = world.buttons[0]
    assert send_press(world, button, 1).result is Result.CREATED
    assert send_press(world, button, 2).result is Result.VALID
    set_household(backend, world, allow_multiple_open=True)
    assert send_press(world, button, 3).result is Result.CREATED
    with backend.sessions() as session:
        assert len(session.scalars(select(Order)).all()) == 2


def _add_slot(backend, button, index, sku="DETERGENT-1L", quantity=1):
    from backend.accounts import devices
    from backend.storage.models import Device

    with backend.writer_sessions() as session, session.begin():
        device = session.scalars(select(Device).where(
            Device.device_id == button.device_id)).one()
        devices.configure_slot(session, device, index, sku, quantity)


def test_one_open_order_per_slot_on_a_two_slot_device(backends):
    """Slot 1 of a device orders while slot 0 has an open order; each slot's further
    presses join that slot's order (over the batch path: each press its own batch)."""
    backend, world = backends.start()
    button = world.buttons[0]
    _add_slot(backend, button, 1)
    first0 = send_press(world, button, 1, slot=0)
    first1 = send_press(world, button, 2, slot=1)
    assert (first0.result, first1.result) == (Result.CREATED, Result.CREATED)
    assert first1.order != first0.order
    again0, again1 = send_press(world, button, 3, slot=0), send_press(world, button, 4, slot=1)
    assert (again0.result, again0.order) == (Result.VALID, first0.order)
    assert (again1.result, again1.order) == (Result.VALID, first1.order)
    with backend.sessions() as session:
        assert sorted((o.slot_index, o.id) for o in session.scalars(select(Order))) == [
            (0, first0.order), (1, first1.order)]


def test_one_open_order_per_slot_on_the_per_event_path(backends):
    """The same rule through decide()'s per-event lookups (the savepoint fallback)."""
    from backend.ingest.decide import decide

    backend, world = backends.start()
    button = world.buttons[0]
    _add_slot(backend, button, 1)
    results = []
    for seq, slot in ((1, 0), (2, 1), (3, 0), (4, 1)):
        with backend.writer_sessions() as session, session.begin():
            reply = decide(session, backend.keyring, press(button, seq, slot=slot))
            results.append(reply.result)
    assert results == [Result.CREATED, Result.CREATED, Result.VALID, Result.VALID]
    with backend.sessions() as session:
        assert sorted(o.slot_index for o in session.scalars(select(Order))) == [0, 1]


def test_daily_limit_blocks_the_order_and_tells_the_household(backends):
    backend, world = backends.start()
    set_household(backend, world, max_orders_per_day=1)
    first, second = world.buttons
    assert send_press(world, first, 1).result is Result.CREATED
    request = press(second, 1)
    blocked = answer_of(second, request, coap_post(world.event_url, request))
    assert blocked.result is Result.CHANGED and blocked.blocked == 1 and blocked.order is None
    again = answer_of(second, request, coap_post(world.event_url, request))
    assert again == blocked, "a retransmission gets the same answer"
    assert "order_blocked" in notification_kinds(backend, world.household_id)
    with backend.sessions() as session:
        assert len(session.scalars(select(Order)).all()) == 1


def test_monthly_spending_limit(backends):
    backend, world = backends.start()
    set_household(backend, world, monthly_limit_cents=2 * 899)  # one order of 2 x 8.99
    first, second = world.buttons
    assert send_press(world, first, 1).result is Result.CREATED
    blocked = send_press(world, second, 1)
    assert blocked.result is Result.CHANGED and blocked.blocked == 2
    with backend.sessions() as session:
        (order,) = session.scalars(select(Order)).all()
        assert order.total_cents == 1798


def test_test_mode_orders_never_reach_the_merchant(backends):
    with FakeMerchant("merchant-secret") as merchant:
        backend, world = backends.start(merchant_url=merchant.url,
                                        merchant_secret="merchant-secret", **LOOPBACK_ALLOWED)
        test_button, real_button = world.buttons
        status, body = api("PATCH", f"{world.api_url}/devices/{test_button.device_id}",
                           world.token, {"test_mode": True})
        assert status == 200 and body["test_mode"] is True
        test_order = send_press(world, test_button, 1).order
        real_order = send_press(world, real_button, 1).order
        until(backend, lambda s: s.get(Order, test_order).state in ("placed", "shipped")
              and s.get(Order, real_order).state == "placed")
        with backend.sessions() as session:
            test, real = session.get(Order, test_order), session.get(Order, real_order)
            assert (test.is_test, test.merchant) == (True, "simulator")
            assert (real.is_test, real.merchant) == (False, "webhook")
        assert [o["order_id"] for o in merchant.orders.values()] == [real_order]


def test_payment_declined_ends_failed_with_a_notification(backends):
    backend, world = backends.start(simulator={"decline_skus": frozenset({"DETERGENT-1L"})})
    order_id = send_press(world, world.buttons[0], 1).order
    until(backend, lambda s: s.get(Order, order_id).state == "failed")
    with backend.sessions() as session:
        assert session.get(Order, order_id).failure_reason == "payment_declined"
    assert "order_failed" in notification_kinds(backend, world.household_id)


def test_out_of_stock_backorders_then_ships_when_restocked(backends):
    backend, world = backends.start(simulator={"initial_stock": 0, "restock_s": 0.3})
    order_id = send_press(world, world.buttons[0], 1).order
    until(backend, lambda s: s.get(Order, order_id).state == "delivered")
    assert path_of(backend, order_id) == ["pending", "confirmed", "backordered", "placed",
                                          "shipped", "delivered"]
    assert "order_backordered" in notification_kinds(backend, world.household_id)


def test_delivery_failure_ends_failed(backends):
    backend, world = backends.start(simulator={"lost_skus": frozenset({"DETERGENT-1L"})})
    order_id = send_press(world, world.buttons[0], 1).order
    until(backend, lambda s: s.get(Order, order_id).state == "failed")
    assert path_of(backend, order_id)[-2:] == ["shipped", "failed"]
    with backend.sessions() as session:
        assert session.get(Order, order_id).failure_reason == "delivery_failed"


def test_unreachable_merchant_ends_failed_after_retries(backends, monkeypatch):
    import socket

    from backend.orders import outbox

    monkeypatch.setattr(outbox, "MAX_ATTEMPTS", 3)
    monkeypatch.setattr(outbox, "BASE_DELAY_S", 0.01)
    # The merchant's port is bound by this test and never listens (connections are
    # refused) until the order has failed: a port only probed free could be taken
    # meanwhile by another worker's server, which would answer.
    with socket.socket() as unreachable:
        unreachable.bind(("127.0.0.1", 0))
        backend, world = backends.start(
            merchant_url=f"http://127.0.0.1:{unreachable.getsockname()[1]}",
            merchant_secret="s", **LOOPBACK_ALLOWED)
        order_id = send_press(world, world.buttons[0], 1).order
        until(backend, lambda s: s.get(Order, order_id).state == "failed")
    with backend.sessions() as session:
        assert session.get(Order, order_id).failure_reason == "merchant_unreachable"
        item = session.scalars(select(OutboxItem)).one()
        assert (item.status, item.attempts) == ("dead", 3) and "Error" in item.last_error
    assert "order_failed" in notification_kinds(backend, world.household_id)


def test_low_battery_is_notified_once(backends):
    backend, world = backends.start()
    button = world.buttons[0]
    for seq in (1, 2, 3):
        send_press(world, button, seq, battery_mv=2100)
    assert notification_kinds(backend, world.household_id).count("low_battery") == 1


def test_household_settings_through_the_api(backends):
    _backend, world = backends.start(**LOOPBACK_ALLOWED)
    status, body = api("PATCH", f"{world.api_url}/household", world.token,
                       {"hold_window_s": 0, "max_orders_per_day": 3,
                        "webhook_secret": "shh", "webhook_url": "http://127.0.0.1:9/x"})
    assert status == 200 and body["max_orders_per_day"] == 3
    assert body["webhook_secret_set"] is True and "shh" not in str(body)
    status, body = api("PATCH", f"{world.api_url}/household", world.token,
                       {"hold_window_s": -5})
    assert status == 400 and "negative" in body["error"]["message"]
    status, body = api("PATCH", f"{world.api_url}/household", world.token, {"colour": "red"})
    assert status == 400 and "unknown setting" in body["error"]["message"]


def test_a_silent_device_is_reported_offline_once(backends):
    from datetime import timedelta

    from backend.storage.db import utcnow
    from backend.storage.models import Device

    backend, world = backends.start(offline_after_s=3600)
    button = world.buttons[0]
    send_press(world, button, 1)
    with backend.writer_sessions() as session, session.begin():
        device = session.scalars(select(Device).where(
            Device.device_id == button.device_id)).one()
        device.last_seen_at = utcnow() - timedelta(hours=2)
    for _ in range(3):
        backend.order_worker.run_once()
    assert notification_kinds(backend, world.household_id).count("device_offline") == 1
    send_press(world, button, 2)  # heard from again: a later silence is reported anew
    with backend.sessions() as session:
        assert session.scalars(select(Device).where(
            Device.device_id == button.device_id)).one().offline_notified is False


def test_the_offline_sweep_reads_a_span_of_ids_a_round_and_starts_again(backends):
    """No index finds silent devices (migration 0012): each round reads the next span
    of device ids, one id here. Every silent claimed device is reported once, when its
    id comes round; after the highest id the sweep starts again from the lowest."""
    from datetime import timedelta

    from backend.orders.worker import OrderWorker
    from backend.storage.db import utcnow
    from backend.storage.models import Device

    backend, world = backends.start(world_options={"buttons": 3})  # and one unclaimed
    watch = OrderWorker(backend.writer_sessions, backend.settings.with_(offline_after_s=3600),
                        readers=backend.sessions, offline_sweep_ids=1)

    def silence(*device_pks):
        with backend.writer_sessions() as session, session.begin():
            for device in session.scalars(select(Device).where(Device.id.in_(device_pks))):
                device.last_seen_at = utcnow() - timedelta(hours=2)
                device.offline_notified = False

    with backend.sessions() as session:
        devices = session.execute(select(Device.id, Device.household_id).order_by(Device.id)).all()
    claimed = [pk for pk, household in devices if household is not None]
    highest = devices[-1].id
    assert len(claimed) == 3 and len(devices) == 4
    silence(*(pk for pk, _ in devices))

    assert [watch.check_offline() for _ in range(highest)] == [
        int(pk in claimed) for pk in range(1, highest + 1)]
    assert notification_kinds(backend, world.household_id).count("device_offline") == 3

    silence(claimed[-1])  # heard from, then silent again: found when the sweep comes round
    assert [watch.check_offline() for _ in range(highest)] == [
        int(pk == claimed[-1]) for pk in range(1, highest + 1)]
    assert notification_kinds(backend, world.household_id).count("device_offline") == 4


def test_the_firmware_shows_limit_reached_when_a_policy_blocks(backends):
    from devtools import unix_device

    backend, world = backends.start()
    set_household(backend, world, max_orders_per_day=1)
    first, second = world.buttons
    assert unix_device.run_commands(first.bundle_dir, ["press"], ack_timeout_ms=300)[0] \
        .pattern == "ordered"
    report = unix_device.run_commands(second.bundle_dir, ["press"], ack_timeout_ms=300)[0]
    assert (report.pattern, report.result, report.order) == ("limit_reached", 68, None)
