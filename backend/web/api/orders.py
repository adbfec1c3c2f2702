"""A household's orders with their status timeline, and cancelling while on hold."""

from __future__ import annotations

from flask import g
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from backend.errors import NotFound
from backend.orders import lifecycle as orders
from backend.storage.models import Device, Order
from backend.web.api.common import ID, bp, db, household_required, iso, page, writing
from backend.web.api.validation import query_text

STATES = tuple(s.value for s in orders.State)


def order_json(order: Order, device_id: str) -> dict:
    return {
        "id": order.id,
        "device_id": device_id,
        "slot": order.slot_index,
        "product_sku": order.product_sku,
        "quantity": order.quantity,
        "state": order.state,
        "source": order.source,
        "test": order.is_test,
        "total_cents": order.total_cents,
        "created_at": iso(order.created_at),
        "hold_until": iso(order.hold_until),
        "cancellable": order.state in orders.CANCELLABLE_BY_HOUSEHOLD,
        "failure_reason": order.failure_reason,
        "history": [{"from": t.from_state, "to": t.to_state, "at": iso(t.at),
                     "actor": t.actor, "reason": t.reason} for t in order.history],
    }


def _orders():
    return (select(Order, Device.device_id).join(Device, Device.id == Order.device_pk)
            .where(Order.household_id == g.household.id)
            .options(selectinload(Order.history)))


@bp.get("/orders")
@household_required
def list_orders():
    query = _orders()
    state = query_text("state", 20, STATES)
    if state is not None:
        query = query.where(Order.state == state)
    return page(db(), query, Order.id, "orders", order_json)


@bp.get(f"/orders/<{ID}:order_id>")
@household_required
def get_order(order_id: int):
    row = db().execute(_orders().where(Order.id == order_id)).one_or_none()
    if row is None:
        raise NotFound(f"no order {order_id} in this household")
    return order_json(*row)


@bp.post(f"/orders/<{ID}:order_id>/cancel")
@household_required
def cancel_order(order_id: int):
    with writing() as session:
        row = session.execute(_orders().where(Order.id == order_id)).one_or_none()
        if row is None:
            raise NotFound(f"no order {order_id} in this household")
        orders.cancel_by_household(session, row[0], g.household.id)
        session.flush()
        session.expire(row[0], ["history"])  # loaded before the cancel added a step
        return order_json(*row)
