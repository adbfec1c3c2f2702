"""A household's orders with their status timeline, and cancelling while on hold."""

from __future__ import annotations

from flask import Blueprint, g, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from backend.errors import NotFound
from backend.orders import consent, display
from backend.orders import lifecycle as orders
from backend.storage.models import Device, Order, Product
from backend.web.api.common import ID, db, household_required, iso, page, writing
from backend.web.api.validation import INT32_MAX, Body, Field, query_text

bp = Blueprint("orders", __name__)

STATES = tuple(s.value for s in orders.State)


CONFIRM = Body({
    "unit_price_minor": Field(int, "The most per pack the household agrees to (minor "
                              "units of the order's currency); left out: the price the "
                              "order shows. If the catalogue's price is higher now, 409.",
                              minimum=0, maximum=INT32_MAX),
}, example={"unit_price_minor": 2099})


def order_json(order: Order, device_id: str) -> dict:
    where = g.household.locale if getattr(g, "household", None) else None
    waiting = order.state == orders.State.AWAITING_CONSENT
    product = db().get(Product, order.product_sku) if waiting else None
    return {
        "id": order.id,
        "device_id": device_id,
        "slot": order.slot_index,
        "product_sku": order.product_sku,
        "product": {"name": order.product_name or order.product_sku,
                    "brand": order.product_brand, "package_amount": order.pack_amount,
                    "unit": order.pack_unit},
        "quantity": order.quantity,
        "line": display.of_order(order, where),
        "state": order.state,
        "source": order.source,
        "test": order.is_test,
        "currency": order.currency,
        "unit_price_minor": order.unit_price_cents,
        "total_cents": order.total_cents,
        "created_at": iso(order.created_at),
        "hold_until": iso(order.hold_until),
        "cancellable": order.state in orders.CANCELLABLE_BY_HOUSEHOLD,
        "consent": None if order.consent_reason is None else {
            "reason": order.consent_reason,
            "confirmed_price_minor": order.confirmed_price_minor,
            "current_price_minor": product.price_cents if product else None,
            "available": bool(product and product.available) if waiting else None,
            "waiting": waiting,
        },
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


@bp.post(f"/orders/<{ID}:order_id>/confirm")
@household_required
def confirm_order(order_id: int):
    """Say yes to an order awaiting consent: it is placed at today's price if that is
    at most the price agreed to."""
    agreed = CONFIRM.parse().get("unit_price_minor") if request.content_length else None
    with writing() as session:
        row = session.execute(_orders().where(Order.id == order_id)).one_or_none()
        if row is None:
            raise NotFound(f"no order {order_id} in this household")
        consent.confirm(session, row[0], g.household.id, agreed)
        session.flush()
        session.expire(row[0], ["history"])
        return order_json(*row)


@bp.post(f"/orders/<{ID}:order_id>/decline")
@household_required
def decline_order(order_id: int):
    """Say no to an order awaiting consent: it is cancelled, nothing is bought."""
    with writing() as session:
        row = session.execute(_orders().where(Order.id == order_id)).one_or_none()
        if row is None:
            raise NotFound(f"no order {order_id} in this household")
        if row[0].state != orders.State.AWAITING_CONSENT:
            raise orders.IllegalTransition(f"order {order_id} is {row[0].state}: only an "
                                           "order awaiting consent can be declined")
        orders.cancel_by_household(session, row[0], g.household.id)
        session.flush()
        session.expire(row[0], ["history"])
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
