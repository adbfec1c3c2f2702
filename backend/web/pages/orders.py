"""A household's orders (with the status timeline and cancel) and notifications."""

from __future__ import annotations

import logging

from flask import Blueprint, g, redirect, render_template, request, url_for
from sqlalchemy import select

from backend.errors import NotFound, ReplenishError
from backend.orders import consent
from backend.orders import lifecycle as order_service
from backend.orders import notifications as notification_service
from backend.storage.models import Device, Notification, Order, Product
from backend.web.pages import (
    ID,
    db,
    form_error,
    household_required,
    paginate,
    whole_number,
    writing,
)

bp = Blueprint("orders", __name__)

log = logging.getLogger(__name__)


def _owned_order(session, order_id: int) -> Order:
    order = session.scalars(select(Order).where(
        Order.id == order_id, Order.household_id == g.user.household_id)).one_or_none()
    if order is None:
        raise NotFound(f"no order {order_id} in this household")
    return order


def _devices_by_pk(pks) -> dict[int, Device]:
    rows = db().scalars(select(Device).where(Device.id.in_(set(pks)),
                                             Device.household_id == g.user.household_id))
    return {d.id: d for d in rows}


def cancellable(order: Order) -> bool:
    return order.state in order_service.CANCELLABLE_BY_HOUSEHOLD


@bp.get("/orders")
@household_required
def orders():
    page = paginate(select(Order).where(Order.household_id == g.user.household_id)
                    .order_by(Order.id.desc()))
    return render_template("household/orders.html", page=page, cancellable=cancellable,
                           devices=_devices_by_pk(o.device_pk for o in page.items))


def _order_context(order_id: int) -> dict:
    order = _owned_order(db(), order_id)
    return {"order": order, "cancellable": cancellable(order),
            "device": _devices_by_pk([order.device_pk]).get(order.device_pk),
            "product": db().get(Product, order.product_sku)}


@bp.get(f"/orders/<{ID}:order_id>")
@household_required
def order(order_id: int):
    return render_template("household/order.html", **_order_context(order_id))


@bp.post(f"/orders/<{ID}:order_id>/confirm")
@household_required
def confirm(order_id: int):
    """Yes to an order awaiting consent, at the price the page showed (a hidden field):
    if the price rose again meanwhile, the page says so and nothing is bought."""
    agreed = whole_number(request.form.get("unit_price_minor"))
    try:
        with writing() as s:
            consent.confirm(s, _owned_order(s, order_id), g.user.household_id, agreed)
    except NotFound:
        raise
    except ReplenishError as err:
        return form_error("household/order.html", err, **_order_context(order_id))
    log.info("household %d confirmed order %d", g.user.household_id, order_id)
    return redirect(url_for("pages.orders.order", order_id=order_id))


@bp.post(f"/orders/<{ID}:order_id>/decline")
@household_required
def decline(order_id: int):
    try:
        with writing() as s:
            order = _owned_order(s, order_id)
            if order.state != order_service.State.AWAITING_CONSENT:
                raise order_service.IllegalTransition(
                    f"order {order_id} is {order.state}: only an order awaiting consent "
                    "can be declined")
            order_service.cancel_by_household(s, order, g.user.household_id)
    except NotFound:
        raise
    except ReplenishError as err:
        return form_error("household/order.html", err, **_order_context(order_id))
    log.info("household %d declined order %d", g.user.household_id, order_id)
    return redirect(url_for("pages.orders.order", order_id=order_id))


@bp.post(f"/orders/<{ID}:order_id>/cancel")
@household_required
def cancel(order_id: int):
    try:
        with writing() as s:
            order_service.cancel_by_household(s, _owned_order(s, order_id),
                                              g.user.household_id)
    except NotFound:
        raise
    except ReplenishError as err:  # no longer pending: say so on the order's page
        return form_error("household/order.html", err, **_order_context(order_id))
    log.info("household %d cancelled order %d", g.user.household_id, order_id)
    return redirect(url_for("pages.orders.order", order_id=order_id))


@bp.get("/notifications")
@household_required
def notifications():
    page = paginate(select(Notification)
                    .where(Notification.household_id == g.user.household_id)
                    .order_by(Notification.id.desc()))
    return render_template("household/notifications.html", page=page)


@bp.post("/notifications/read")
@household_required
def mark_read():
    with writing() as s:
        notification_service.mark_all_read(s, g.user.household_id)
    return redirect(url_for("pages.orders.notifications"))
