"""The fulfillment interface and how a merchant's answer moves an order."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from backend.orders import catalogue
from backend.orders import lifecycle as orders
from backend.orders.lifecycle import State
from backend.storage.models import Order


@dataclass(frozen=True)
class PlaceRequest:
    order_id: int
    sku: str
    quantity: int
    household_id: int
    idempotency_key: str
    is_test: bool
    # What the household agreed to pay (the order's snapshot, minor units of `currency`):
    # the merchant must not charge more (docs/merchant-webhooks.md).
    unit_price_minor: int
    currency: str | None


@dataclass(frozen=True)
class Placement:
    status: str  # accepted | backordered | declined
    reason: str | None = None  # for declined: payment_declined | out_of_stock | ...
    merchant_ref: str | None = None


class MerchantUnreachable(Exception):
    """No usable answer (network, timeout, 5xx): the outbox retries later."""


class Fulfillment(abc.ABC):
    name: str

    @abc.abstractmethod
    def place(self, request: PlaceRequest, sessions: sessionmaker) -> Placement:
        """Ask the merchant to fulfil the order. Idempotent per request.idempotency_key."""

    def advance(self, session: Session, now: datetime) -> int:
        """Move orders on from the merchant's side (in-process merchants only)."""
        return 0


CatalogueUpdate = catalogue.MerchantUpdate


def update_catalogue(session: Session, merchant: str,
                     updates: list[CatalogueUpdate]) -> tuple[int, list[str]]:
    """A merchant adapter's prices and availability for listed products (the webhook
    merchant's signed POST /api/v1/merchant/catalogue; an in-process merchant calls it
    directly). Returns (changed, unknown SKUs). Orders already made keep their price;
    a press above a slot's confirmed price waits for the household."""
    return catalogue.apply_merchant_updates(session, merchant, updates)


# A merchant status (from a placement, a callback or the simulator) -> order state.
_STATUS_TO_STATE = {
    "accepted": State.PLACED,
    "backordered": State.BACKORDERED,
    "declined": State.FAILED,
    "shipped": State.SHIPPED,
    "delivered": State.DELIVERED,
    "failed": State.FAILED,
    "cancelled": State.CANCELLED,
}
MERCHANT_STATUSES = frozenset(_STATUS_TO_STATE)


def state_for(status: str) -> State:
    """The order state a merchant status leads to."""
    return _STATUS_TO_STATE[status]


def apply_status(session: Session, order: Order, status: str, *, actor: str,
                 reason: str | None = None, merchant_ref: str | None = None) -> bool:
    """Apply what the merchant says; False if it does not fit the order's state."""
    to = _STATUS_TO_STATE[status]
    if to is State.FAILED and reason not in orders.FAILURE_REASONS:
        reason = "delivery_failed" if status == "failed" else "merchant_rejected"
    if merchant_ref and not order.merchant_ref:
        order.merchant_ref = merchant_ref
    if order.state == to:
        return False  # already there (a repeated callback)
    if to not in orders.ALLOWED[State(order.state)]:
        raise orders.IllegalTransition(f"order {order.id} is {order.state}; merchant "
                                       f"status {status!r} does not apply")
    return orders.transition(session, order, to, actor=actor, reason=reason)
