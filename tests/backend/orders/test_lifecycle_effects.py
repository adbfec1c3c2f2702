"""What the order state machine does besides the state (backend/orders/lifecycle.py):
the first step chosen at creation, the timestamps and reasons each step writes, the
outbox item and notifications in the same transaction, and the household's cancel.
On SQLite and PostgreSQL, no backend started (`make mutate` runs these for the module)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from backend.orders import display
from backend.orders import lifecycle as orders
from backend.orders.lifecycle import IllegalTransition, State
from backend.storage.models import (Household, Notification, Order, OrderTransition,
                                    OutboxItem)
from tests.conftest import DATABASES, household_with_device

pytestmark = pytest.mark.parametrize("db_url", DATABASES, indirect=True)

LOCALE = "de"  # money reads "12,34\xa0€" here, "€12.34" in the default locale


@pytest.fixture
def home(sessions):
    with sessions() as session, session.begin():
        ids = household_with_device(session, "effects", "00112233445566ee")
        session.get(Household, ids[0]).locale = LOCALE
        return ids


def create(sessions, home, hold_window_s=900, **fields) -> int:
    with sessions() as session, session.begin():
        return orders.create(session, actor="test:create", hold_window_s=hold_window_s,
                             household_id=home[0], device_pk=home[1], slot_index=0,
                             product_sku="SKU-1", product_name="Soap", quantity=2,
                             total_cents=1234, currency="EUR", **fields).id


def order_row(sessions, order_id) -> Order:
    with sessions() as session:
        order = session.get(Order, order_id)
        session.expunge(order)
        return order


def steps(sessions, order_id) -> list[tuple]:
    with sessions() as session:
        return [(t.from_state, t.to_state, t.actor, t.reason) for t in session.scalars(
            select(OrderTransition).where(OrderTransition.order_id == order_id)
            .order_by(OrderTransition.id))]


def notes(sessions) -> list[tuple]:
    with sessions() as session:
        return [(n.household_id, n.kind, n.message, n.order_id, n.device_pk)
                for n in session.scalars(select(Notification).order_by(Notification.id))]


def outbox_items(sessions) -> list[tuple]:
    with sessions() as session:
        return [(i.kind, i.payload, i.idempotency_key, i.order_id)
                for i in session.scalars(select(OutboxItem).order_by(OutboxItem.id))]


def move(sessions, order_id, to, reason=None, actor="test:worker") -> bool:
    with sessions() as session, session.begin():
        return orders.transition(session, session.get(Order, order_id), to, actor=actor,
                                 reason=reason)


def line(order) -> str:
    localized = display.of_order(order, LOCALE)
    assert localized != display.of_order(order), "the household's locale shows"
    return localized


def test_a_hold_window_leaves_the_order_pending_until_its_end(sessions, home):
    order_id = create(sessions, home, hold_window_s=1)
    order = order_row(sessions, order_id)
    assert (order.state, order.hold_until) == ("pending",
                                               order.created_at + timedelta(seconds=1))
    assert steps(sessions, order_id) == [(None, "pending", "test:create", None)]
    assert notes(sessions) == [] and outbox_items(sessions) == []


def test_without_a_hold_window_it_is_confirmed_and_sent_at_once(sessions, home):
    order_id = create(sessions, home, hold_window_s=0)
    order = order_row(sessions, order_id)
    assert (order.state, order.hold_until, order.failure_reason) == (
        "confirmed", order.created_at, None)
    assert steps(sessions, order_id) == [(None, "pending", "test:create", None),
                                         ("pending", "confirmed", "test:create",
                                          "no hold window")]
    assert outbox_items(sessions) == [("order.place", f'{{"order_id": {order_id}}}',
                                       f"order-{order_id}-place", order_id)]
    assert notes(sessions) == [(home[0], "order_placed",
                                f"Order {order_id}: {line(order)} is being placed.",
                                order_id, home[1])]


@pytest.mark.parametrize("why, text", [
    ("price_increased",
     "the price is now 7,00\xa0€ a pack, above the 5,00\xa0€ you confirmed"),
    ("unavailable", "the product is not available at the moment"),
    ("currency_changed", "the price is now in another currency (7,00\xa0€)"),
])
def test_an_order_needing_consent_waits_and_the_household_is_asked(sessions, home, why,
                                                                   text):
    order_id = create(sessions, home, hold_window_s=0, consent_reason=why,
                      unit_price_cents=700, confirmed_price_minor=500)
    order = order_row(sessions, order_id)
    assert (order.state, order.hold_until) == ("awaiting_consent", None)
    assert steps(sessions, order_id) == [(None, "awaiting_consent", "test:create",
                                          why.replace("_", " "))]
    assert notes(sessions) == [(home[0], "order_awaiting_consent",
                                f"Order {order_id}: {line(order)} waits for you: {text}. "
                                "Confirm or decline it on the order's page.",
                                order_id, home[1])]
    assert outbox_items(sessions) == []
    assert move(sessions, order_id, State.CONFIRMED)
    assert [kind for _, kind, *_ in notes(sessions)] == ["order_awaiting_consent",
                                                         "order_placed"]


def test_each_step_writes_its_time_reason_and_notification(sessions, home):
    order_id = create(sessions, home, hold_window_s=0)
    order = order_row(sessions, order_id)
    assert move(sessions, order_id, State.BACKORDERED)
    backordered = order_row(sessions, order_id)
    assert backordered.placed_at == backordered.updated_at
    assert move(sessions, order_id, State.PLACED)
    placed = order_row(sessions, order_id)
    assert placed.placed_at == backordered.placed_at < placed.updated_at, "kept"
    assert placed.delivered_at is None and placed.failure_reason is None
    assert move(sessions, order_id, State.SHIPPED)
    assert move(sessions, order_id, State.DELIVERED)
    delivered = order_row(sessions, order_id)
    assert delivered.delivered_at == delivered.updated_at
    assert [(kind, text) for _, kind, text, *_ in notes(sessions)][1:] == [
        ("order_backordered",
         f"Order {order_id}: {line(order)} is backordered; it ships when restocked."),
        ("order_shipped", f"Order {order_id}: {line(order)} has shipped."),
        ("order_delivered", f"Order {order_id}: {line(order)} was delivered.")]
    assert len(outbox_items(sessions)) == 1, "only confirming sends to the merchant"


def test_a_negative_hold_window_is_no_hold_window(sessions, home):
    assert order_row(sessions, create(sessions, home, hold_window_s=-1)).state == "confirmed"


def test_a_placed_order_records_when_and_no_failure_whatever_the_reason(sessions, home):
    order_id = create(sessions, home, hold_window_s=0)
    assert move(sessions, order_id, State.PLACED, reason="merchant ref 42")
    placed = order_row(sessions, order_id)
    assert placed.placed_at == placed.updated_at
    assert placed.failure_reason is None
    assert len(notes(sessions)) == 1, "placing tells nobody (confirming did)"


def test_a_failure_needs_a_known_reason_and_records_it(sessions, home):
    order_id = create(sessions, home, hold_window_s=0)
    order = order_row(sessions, order_id)
    with pytest.raises(ValueError, match="failed order needs one of"):
        move(sessions, order_id, State.FAILED, reason="gremlins")
    with pytest.raises(ValueError):
        move(sessions, order_id, State.FAILED)
    assert order_row(sessions, order_id).state == "confirmed"
    assert orders.FAILURE_REASONS == {"out_of_stock", "payment_declined",
                                      "merchant_unreachable", "delivery_failed",
                                      "merchant_rejected"}
    assert move(sessions, order_id, State.FAILED, reason="out_of_stock")
    failed = order_row(sessions, order_id)
    assert (failed.state, failed.failure_reason, failed.placed_at) == (
        "failed", "out_of_stock", None)
    assert steps(sessions, order_id)[-1] == ("confirmed", "failed", "test:worker",
                                             "out_of_stock")
    assert notes(sessions)[-1][1:3] == (
        "order_failed", f"Order {order_id}: {line(order)} failed (out_of_stock).")


@pytest.mark.parametrize("start, reason", [(State.PENDING, "cancelled by household"),
                                           (State.AWAITING_CONSENT, "declined by household")])
def test_the_household_cancels_or_declines_while_it_may(sessions, home, start, reason):
    order_id = create(sessions, home, **({"consent_reason": "unavailable"}
                                         if start is State.AWAITING_CONSENT else {}))
    order = order_row(sessions, order_id)
    with sessions() as session, session.begin():
        orders.cancel_by_household(session, session.get(Order, order_id), home[0])
    assert steps(sessions, order_id)[-1] == (start, "cancelled", f"household:{home[0]}",
                                             reason)
    assert order_row(sessions, order_id).failure_reason is None
    assert notes(sessions)[-1][1:3] == (
        "order_cancelled", f"Order {order_id}: {line(order)} was cancelled.")


def test_the_household_cannot_cancel_once_confirmed_or_when_it_changed(sessions, home):
    assert orders.CANCELLABLE_BY_HOUSEHOLD == {State.PENDING, State.AWAITING_CONSENT}
    confirmed = create(sessions, home, hold_window_s=0)
    with sessions() as session, session.begin():
        with pytest.raises(IllegalTransition, match="only be cancelled while pending"):
            orders.cancel_by_household(session, session.get(Order, confirmed), home[0])
    pending = create(sessions, home)
    with sessions() as stale:
        with stale.begin():
            old = stale.get(Order, pending)
        with sessions() as other, other.begin():  # confirmed meanwhile, guard not passed
            other.execute(update(Order).where(Order.id == pending)
                          .values(state=State.CANCELLED))
        with stale.begin(), pytest.raises(IllegalTransition, match="changed meanwhile"):
            orders.cancel_by_household(stale, old, home[0])
    assert [to for _, to, _, _ in steps(sessions, pending)] == ["pending"]


def test_a_step_changes_only_its_order_and_only_from_the_state_read(sessions, home):
    """Three orders in the same state: the middle one moves, the others stay. A stale
    copy ("confirmed") of an order moved on to "placed" (a state that sorts after it)
    cannot fail it."""
    first, second, third = (create(sessions, home, hold_window_s=0) for _ in range(3))
    assert move(sessions, second, State.PLACED)
    assert [order_row(sessions, o).state for o in (first, second, third)] == [
        "confirmed", "placed", "confirmed"]
    second = third
    with sessions() as stale:
        with stale.begin():
            old = stale.get(Order, second)
        assert move(sessions, second, State.PLACED)
        with stale.begin():
            assert orders.transition(stale, old, State.FAILED, actor="test:late",
                                     reason="merchant_unreachable") is False
    assert order_row(sessions, second).state == "placed"
    assert [to for _, to, _, _ in steps(sessions, second)][-1] == "placed"
