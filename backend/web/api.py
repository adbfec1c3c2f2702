"""JSON API v1: a household's devices and orders, behind bearer-token auth."""

from __future__ import annotations

import functools

from flask import Blueprint, current_app, g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import devices, households
from backend.errors import NotFound, Unauthorized
from backend.models import Device, Order

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def db() -> Session:
    if "db" not in g:
        g.db = current_app.config["SESSIONS"]()
    return g.db


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
        "slots": [{"slot": s.index, "product_sku": s.product_sku, "quantity": s.quantity}
                  for s in device.slots],
    }


def order_json(order: Order, device_id: str) -> dict:
    return {
        "id": order.id,
        "device_id": device_id,
        "slot": order.slot_index,
        "product_sku": order.product_sku,
        "quantity": order.quantity,
        "state": order.state,
        "created_at": _iso(order.created_at),
        "history": [{"from": t.from_state, "to": t.to_state, "at": _iso(t.at),
                     "actor": t.actor} for t in order.history],
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
