"""JSON API v1: a household's devices and orders, behind bearer-token auth."""

from __future__ import annotations

import contextlib
import functools

from flask import Blueprint, current_app, g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import devices, households, orders, sensors
from backend.errors import NotFound, ReplenishError, Unauthorized
from backend.models import Device, Household, Notification, Order, Product, Slot

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def db() -> Session:
    if "db" not in g:
        g.db = current_app.config["SESSIONS"]()
    return g.db


@contextlib.contextmanager
def writing():
    """A writing transaction (BEGIN IMMEDIATE on SQLite) for endpoints that change things."""
    with current_app.config["WRITER_SESSIONS"]() as session, session.begin():
        yield session


def body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ReplenishError("send a JSON object")
    return data


def token_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send 'Authorization: Bearer <token>'")
        g.household = households.by_token(db(), token.strip())
        return view(*args, **kwargs)

    return wrapped


def device_json(device: Device) -> dict:
    return {
        "device_id": device.device_id,
        "serial": device.serial,
        "model": device.model,
        "name": device.name,
        "status": device.status,
        "last_seen_at": _iso(device.last_seen_at),
        "battery_mv": device.battery_mv,
        "fw_version": device.fw_version,
        "test_mode": device.test_mode,
        "dropped_events": device.dropped_events,
        "slots": [slot_json(s) for s in device.slots],
    }


def slot_json(slot: Slot) -> dict:
    return {"slot": slot.index, "product_sku": slot.product_sku, "quantity": slot.quantity,
            "kind": slot.kind, "safety_days": slot.safety_days}


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
        "created_at": _iso(order.created_at),
        "hold_until": _iso(order.hold_until),
        "cancellable": order.state in orders.CANCELLABLE_BY_HOUSEHOLD,
        "failure_reason": order.failure_reason,
        "history": [{"from": t.from_state, "to": t.to_state, "at": _iso(t.at),
                     "actor": t.actor, "reason": t.reason} for t in order.history],
    }


def _iso(value):
    return value.isoformat() + "Z" if value else None


@bp.get("/devices")
@token_required
def list_devices():
    return {"devices": [device_json(d) for d in devices.list_for(db(), g.household)]}


@bp.get("/devices/<device_id>")
@token_required
def get_device(device_id: str):
    return device_json(devices.owned(db(), g.household, device_id))


def _orders_query():
    return (select(Order, Device.device_id).join(Device, Device.id == Order.device_pk)
            .where(Order.household_id == g.household.id))


@bp.get("/orders")
@token_required
def list_orders():
    rows = db().execute(_orders_query().order_by(Order.id.desc())).all()
    return {"orders": [order_json(order, device_id) for order, device_id in rows]}


@bp.get("/orders/<int:order_id>")
@token_required
def get_order(order_id: int):
    row = db().execute(_orders_query().where(Order.id == order_id)).one_or_none()
    if row is None:
        raise NotFound(f"no order {order_id} in this household")
    return order_json(*row)


@bp.post("/orders/<int:order_id>/cancel")
@token_required
def cancel_order(order_id: int):
    with writing() as session:
        order = session.scalars(select(Order).where(
            Order.id == order_id, Order.household_id == g.household.id)).one_or_none()
        if order is None:
            raise NotFound(f"no order {order_id} in this household")
        orders.cancel_by_household(session, order, g.household.id)
        device_id = session.get(Device, order.device_pk).device_id
        return order_json(order, device_id)


@bp.get("/notifications")
@token_required
def list_notifications():
    rows = db().scalars(select(Notification).where(
        Notification.household_id == g.household.id).order_by(Notification.id.desc())
        .limit(200))
    return {"notifications": [
        {"id": n.id, "kind": n.kind, "message": n.message, "order_id": n.order_id,
         "created_at": _iso(n.created_at), "read": n.read_at is not None} for n in rows]}


_SETTINGS = {"hold_window_s": int, "allow_multiple_open": bool, "max_orders_per_day": int,
             "monthly_limit_cents": int, "webhook_url": str, "webhook_secret": str}
_NULLABLE = {"max_orders_per_day", "monthly_limit_cents", "webhook_url", "webhook_secret"}


def household_json(household: Household) -> dict:
    return {"id": household.id, "name": household.name,
            **{k: getattr(household, k) for k in _SETTINGS if k != "webhook_secret"},
            "webhook_secret_set": bool(household.webhook_secret)}


@bp.get("/household")
@token_required
def get_household():
    return household_json(g.household)


@bp.patch("/household")
@token_required
def update_household():
    changes = body()
    for name, value in changes.items():
        kind = _SETTINGS.get(name)
        if kind is None:
            raise ReplenishError(f"unknown setting {name!r}; known: {sorted(_SETTINGS)}")
        if value is None and name in _NULLABLE:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ReplenishError(f"{name} must be {kind.__name__}")
        if kind is int and value < 0:
            raise ReplenishError(f"{name} must not be negative")
    with writing() as session:
        household = session.get(Household, g.household.id)
        for name, value in changes.items():
            setattr(household, name, value)
        return household_json(household)


@bp.put("/devices/<device_id>/slots/<int:index>")
@token_required
def configure_slot(device_id: str, index: int):
    data = body()
    with writing() as session:
        device = devices.owned(session, g.household, device_id)
        slot = devices.configure_slot(session, device, index, str(data.get("product_sku", "")),
                                      _int(data.get("quantity", 1), "quantity"),
                                      kind=str(data.get("kind", "button")),
                                      safety_days=float(data.get("safety_days", 2.0)))
        return slot_json(slot)


@bp.patch("/devices/<device_id>")
@token_required
def update_device(device_id: str):
    data = body()
    with writing() as session:
        device = devices.owned(session, g.household, device_id)
        if "name" in data:
            device.name = str(data["name"])[:200] or None
        if "test_mode" in data:
            if not isinstance(data["test_mode"], bool):
                raise ReplenishError("test_mode must be true or false")
            device.test_mode = data["test_mode"]
        return device_json(device)


@bp.get("/devices/<device_id>/slots/<int:index>/forecast")
@token_required
def slot_forecast(device_id: str, index: int):
    device = devices.owned(db(), g.household, device_id)
    slot = next((s for s in device.slots if s.index == index), None)
    if slot is None:
        raise NotFound(f"slot {index} is not configured")
    estimate = sensors.forecast_for(db(), device, slot)
    return {"device_id": device_id, "slot": index, "product_sku": slot.product_sku,
            "rate_per_day": estimate.rate_per_day, "remaining": estimate.remaining,
            "run_out_at": _iso(estimate.run_out_at),
            "lead_time_days": estimate.lead_time_days,
            "safety_stock": estimate.safety_stock, "reorder_point": estimate.reorder_point,
            "should_order": estimate.should_order,
            "last_refill_at": _iso(estimate.last_refill_at),
            "readings_used": estimate.readings_used, "reason": estimate.reason}


@bp.get("/products")
@token_required
def list_products():
    rows = db().scalars(select(Product).order_by(Product.sku))
    return {"products": [{"sku": p.sku, "name": p.name, "unit": p.unit,
                          "package_amount": p.package_amount, "price_cents": p.price_cents}
                         for p in rows]}


def _int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReplenishError(f"{name} must be an integer")
    return value
