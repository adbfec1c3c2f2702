"""The order state machine: every change validated, attributed and written to the audit
trail, with its side effects (notifications, fulfillment requests) in the same transaction.

    pending ──hold window──▶ confirmed ──merchant──▶ placed ──▶ shipped ──▶ delivered
       │                        │   └──▶ backordered ──┘ (restocked)      │
       └──▶ cancelled           └──▶ failed (declined, out of stock,     └──▶ failed
                                      merchant unreachable)                   (delivery)
    awaiting_consent ──household confirms──▶ confirmed
       └──household declines (or the worker, after REPLENISH_CONSENT_EXPIRE_S)──▶ cancelled

An order starts in awaiting_consent instead of pending when its price is above what the
household confirmed for the slot or the product is unavailable (backend/orders/consent.py):
nothing is sent to a merchant until the household says yes.
"""

from __future__ import annotations

import enum
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from backend.errors import Conflict
from backend.orders import display, notifications, outbox
from backend.storage.db import utcnow
from backend.storage.models import Household, Order, OrderTransition


class State(enum.StrEnum):
    AWAITING_CONSENT = "awaiting_consent"  # dearer or unavailable: the household decides
    PENDING = "pending"  # hold window: the household may still cancel
    CONFIRMED = "confirmed"  # hold over; being sent to the merchant
    PLACED = "placed"  # the merchant accepted it
    BACKORDERED = "backordered"  # accepted, waiting for stock
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    FAILED = "failed"


ALLOWED: dict[State, frozenset[State]] = {
    State.AWAITING_CONSENT: frozenset({State.CONFIRMED, State.CANCELLED}),
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
CANCELLABLE_BY_HOUSEHOLD = frozenset({State.PENDING, State.AWAITING_CONSENT})

# Why an order failed: each failure path ends in FAILED with one of these.
FAILURE_REASONS = frozenset({"out_of_stock", "payment_declined", "merchant_unreachable",
                             "delivery_failed", "merchant_rejected"})

_NOTIFY = {
    State.CONFIRMED: ("order_placed", "Order {id}: {line} is being placed."),
    State.SHIPPED: ("order_shipped", "Order {id}: {line} has shipped."),
    State.DELIVERED: ("order_delivered", "Order {id}: {line} was delivered."),
    State.CANCELLED: ("order_cancelled", "Order {id}: {line} was cancelled."),
    State.FAILED: ("order_failed", "Order {id}: {line} failed ({reason})."),
    State.BACKORDERED: ("order_backordered",
                        "Order {id}: {line} is backordered; it ships when restocked."),
}
_WHY_CONSENT = {
    "price_increased": "the price is now {price} a pack, above the {confirmed} you "
                       "confirmed",
    "unavailable": "the product is not available at the moment",
    "currency_changed": "the price is now in another currency ({price})",
}


class IllegalTransition(Conflict):
    pass


def create(session: Session, *, actor: str, hold_window_s: int, **fields) -> Order:
    """A new order in PENDING; with no hold window it is confirmed at once.

    With `consent_reason` set (backend/orders/consent.py) it starts in AWAITING_CONSENT
    instead, and the household is asked."""
    now = utcnow()
    waits = fields.get("consent_reason") is not None
    first = State.AWAITING_CONSENT if waits else State.PENDING
    order = Order(state=first, created_at=now, updated_at=now,
                  hold_until=None if waits else now + timedelta(seconds=hold_window_s),
                  **fields)
    session.add(order)
    session.flush()  # assigns the id the device is told
    session.add(OrderTransition(order_id=order.id, from_state=None, to_state=first,
                                at=now, actor=actor,
                                reason=order.consent_reason.replace("_", " ") if waits
                                else None))
    if waits:
        ask_consent(session, order)
    elif hold_window_s <= 0:
        transition(session, order, State.CONFIRMED, actor=actor, reason="no hold window")
    return order


def _household_locale(session: Session, household_id: int) -> str | None:
    household = session.get(Household, household_id)
    return household.locale if household is not None else None


def ask_consent(session: Session, order: Order) -> None:
    where = _household_locale(session, order.household_id)
    why = _WHY_CONSENT[order.consent_reason].format(
        price=display.money(order.unit_price_cents, order.currency, where),
        confirmed=display.money(order.confirmed_price_minor, order.currency, where))
    notifications.notify(session, order.household_id, "order_awaiting_consent",
                         f"Order {order.id}: {display.of_order(order, where)} waits for "
                         f"you: {why}. Confirm or decline it on the order's page.",
                         order_id=order.id, device_pk=order.device_pk)


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
        where = _household_locale(session, order.household_id)
        notifications.notify(session, order.household_id, kind,
                             text.format(id=order.id, line=display.of_order(order, where),
                                         reason=reason),
                             order_id=order.id, device_pk=order.device_pk)


def cancel_by_household(session: Session, order: Order, household_id: int) -> None:
    if State(order.state) not in CANCELLABLE_BY_HOUSEHOLD:
        raise IllegalTransition(
            f"order {order.id} is {order.state}: it can only be cancelled while pending")
    reason = ("declined by household" if order.state == State.AWAITING_CONSENT
              else "cancelled by household")
    if not transition(session, order, State.CANCELLED, actor=f"household:{household_id}",
                      reason=reason):
        raise IllegalTransition(f"order {order.id} changed meanwhile; reload and retry")
