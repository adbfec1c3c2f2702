"""The order state machine: every change validated and written to the audit trail."""

from __future__ import annotations

import enum

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


def transition(session: Session, order: Order, to: State, *, actor: str) -> None:
    current = State(order.state)
    if to not in ALLOWED[current]:
        raise IllegalTransition(f"order {order.id} cannot go from {current} to {to}")
    now = utcnow()
    session.add(OrderTransition(order_id=order.id, from_state=current, to_state=to,
                                at=now, actor=actor))
    order.state = to
    order.updated_at = now
