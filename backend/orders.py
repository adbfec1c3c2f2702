"""The order state machine: every change validated and written to the audit trail."""

from __future__ import annotations

import enum

from sqlalchemy import update
from sqlalchemy.orm import Session

from backend.db import utcnow
from backend.errors import Conflict
from backend.models import Order, OrderTransition


class State(enum.StrEnum):
    PENDING = "pending"  # accepted from the device, not yet at the merchant
    PLACED = "placed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    FAILED = "failed"


ALLOWED: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.PLACED, State.CANCELLED, State.FAILED}),
    State.PLACED: frozenset({State.SHIPPED, State.CANCELLED, State.FAILED}),
    State.SHIPPED: frozenset({State.DELIVERED, State.FAILED}),
    State.DELIVERED: frozenset(),
    State.CANCELLED: frozenset(),
    State.FAILED: frozenset(),
}
OPEN_STATES = frozenset(s for s, nexts in ALLOWED.items() if nexts)


class IllegalTransition(Conflict):
    pass


def create(session: Session, *, actor: str, **fields) -> Order:
    now = utcnow()
    order = Order(state=State.PENDING, created_at=now, updated_at=now, **fields)
    session.add(order)
    session.flush()  # assigns the id the device is told
    session.add(OrderTransition(order_id=order.id, from_state=None, to_state=State.PENDING,
                                at=now, actor=actor))
    return order


def transition(session: Session, order: Order, to: State, *, actor: str) -> bool:
    """Move `order` to `to`. False when another worker changed it first.

    The UPDATE is guarded by the state we read, so two workers racing on one order
    (SQLite has no row locks) can never record the same step twice.
    """
    current = State(order.state)
    if to not in ALLOWED[current]:
        raise IllegalTransition(f"order {order.id} cannot go from {current} to {to}")
    now = utcnow()
    changed = session.execute(
        update(Order).where(Order.id == order.id, Order.state == current)
        .values(state=to, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        session.refresh(order)
        return False
    order.state, order.updated_at = to, now
    session.add(OrderTransition(order_id=order.id, from_state=current, to_state=to,
                                at=now, actor=actor))
    return True
