"""The order state machine: every change validated, attributed and written to the audit
trail, with its side effects (notifications, fulfillment requests) in the same transaction.

    pending ──hold window──▶ confirmed ──merchant──▶ placed ──▶ shipped ──▶ delivered
       │                        │   └──▶ backordered ──┘ (restocked)      │
       └──▶ cancelled           └──▶ failed (declined, out of stock,     └──▶ failed
                                      merchant unreachable)                   (delivery)
"""

from __future__ import annotations

import enum
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from backend.errors import Conflict
from backend.orders import notifications, outbox
from backend.storage.db import utcnow
from backend.storage.models import Order, OrderTransition


class State(enum.StrEnum):
    PENDING = "pending"  # hold window: the household may still cancel
    CONFIRMED = "confirmed"  # hold over; being sent to the merchant
    PLACED = "placed"  # the merchant accepted it
    BACKORDERED = "backordered"  # accepted, waiting for stock
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    FAILED = "failed"


ALLOWED: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.CONFIRMED, State.CANCELLED}),
    State.CONFIRMED: frozenset({State.PLACED, State.BACKORDERED, State.FAILED}),
    State.PLACED: frozenset({State.SHIPPED, State.CANCELLED, State.FAILED}),
    State.BACKORDERED: frozenset({State.PLACED, State.SHIPPED, State.CANCELLED,
                                  State.FAILED}),
    State.SHIPPED: frozenset({State.DELIVERED, State.FAILED}),
    State.DELIVERED: frozenset(),
    State.CANCELLED: frozenset(),
    State.FAILED: frozenset(),
}
OPEN_STATES = frozenset(s for s, nexts in ALLOWED.items() if nexts)
CANCELLABLE_BY_HOUSEHOLD = frozenset({State.PENDING})

# Why an order failed: each failure path ends in FAILED with one of these.
FAILURE_REASONS = frozenset({"out_of_stock", "payment_declined", "merchant_unreachable",
                             "delivery_failed", "merchant_rejected"})

_NOTIFY = {
    State.CONFIRMED: ("order_placed", "Order {id}: {qty} x {sku} is being placed."),
    State.SHIPPED: ("order_shipped", "Order {id}: {qty} x {sku} has shipped."),
    State.DELIVERED: ("order_delivered", "Order {id}: {qty} x {sku} was delivered."),
    State.CANCELLED: ("order_cancelled", "Order {id}: {qty} x {sku} was cancelled."),
    State.FAILED: ("order_failed", "Order {id}: {qty} x {sku} failed ({reason})."),
    State.BACKORDERED: ("order_backordered",
                        "Order {id}: {qty} x {sku} is backordered; it ships when restocked."),
}


class IllegalTransition(Conflict):
    pass


def create(session: Session, *, actor: str, hold_window_s: int, **fields) -> Order:
    """A new order in PENDING; with no hold window it is confirmed at once."""
    now = utcnow()
    order = Order(state=State.PENDING, created_at=now, updated_at=now,
                  hold_until=now + timedelta(seconds=hold_window_s), **fields)
    session.add(order)
    session.flush()  # assigns the id the device is told
    session.add(OrderTransition(order_id=order.id, from_state=None, to_state=State.PENDING,
                                at=now, actor=actor))
    if hold_window_s <= 0:
        transition(session, order, State.CONFIRMED, actor=actor, reason="no hold window")
    return order


def transition(session: Session, order: Order, to: State, *, actor: str,
               reason: str | None = None) -> bool:
    """Move `order` to `to`. False when another worker changed it first.

    The UPDATE is guarded by the state we read, so two workers racing on one order
    (SQLite has no row locks) can never record the same step twice.
    """
    current = State(order.state)
    if to not in ALLOWED[current]:
        raise IllegalTransition(f"order {order.id} cannot go from {current} to {to}")
    if to is State.FAILED and reason not in FAILURE_REASONS:
        raise ValueError(f"a failed order needs one of {sorted(FAILURE_REASONS)}")
    now = utcnow()
    values = {"state": to, "updated_at": now}
    if to in (State.PLACED, State.BACKORDERED) and order.placed_at is None:
        values["placed_at"] = now
    if to is State.DELIVERED:
        values["delivered_at"] = now
    if to is State.FAILED:
        values["failure_reason"] = reason
    changed = session.execute(
        update(Order).where(Order.id == order.id, Order.state == current)
        .values(**values).execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        session.refresh(order)
        return False
    for name, value in values.items():
        setattr(order, name, value)
    session.add(OrderTransition(order_id=order.id, from_state=current, to_state=to,
                                at=now, actor=actor, reason=reason))
    _side_effects(session, order, to, reason)
    return True


def _side_effects(session: Session, order: Order, to: State, reason: str | None) -> None:
    if to is State.CONFIRMED:
        outbox.enqueue(session, "order.place", {"order_id": order.id},
                       key=f"order-{order.id}-place", order_id=order.id)
    if to in _NOTIFY:
        kind, text = _NOTIFY[to]
        notifications.notify(session, order.household_id, kind,
                             text.format(id=order.id, qty=order.quantity,
                                         sku=order.product_sku, reason=reason),
                             order_id=order.id, device_pk=order.device_pk)


def cancel_by_household(session: Session, order: Order, household_id: int) -> None:
    if State(order.state) not in CANCELLABLE_BY_HOUSEHOLD:
        raise IllegalTransition(
            f"order {order.id} is {order.state}: it can only be cancelled while pending")
    if not transition(session, order, State.CANCELLED, actor=f"household:{household_id}",
                      reason="cancelled by household"):
        raise IllegalTransition(f"order {order.id} changed meanwhile; reload and retry")
