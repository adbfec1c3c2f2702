"""A slot's page: for a sensor, the level history and forecast chart; for any slot,
its recent orders."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, render_template
from sqlalchemy import select

from backend.errors import NotFound
from backend.orders import sensors
from backend.storage.db import utcnow
from backend.storage.models import Order, Product
from backend.web.chart import OrderMark, level_chart
from backend.web.pages import db, household_required, locale_and_zone
from backend.web.pages.devices import owned

bp = Blueprint("sensor", __name__)

RECENT_ORDERS = 20


@bp.get("/devices/<device_id>/slots/<int(max=255):index>")
@household_required
def slot(device_id: str, index: int):
    device = owned(device_id)
    found = next((s for s in device.slots if s.index == index), None)
    if found is None:
        raise NotFound(f"slot {index} of this device is not configured")
    now = utcnow()
    readings = sensors.readings(db(), device, found, now)
    estimate = sensors.forecast_for(db(), device, found, now=now)
    since = readings[0].at if readings else now - timedelta(days=sensors.HISTORY_DAYS)
    rows = list(db().scalars(
        select(Order).where(Order.device_pk == device.id, Order.slot_index == index,
                            Order.household_id == device.household_id,
                            Order.created_at >= since)
        .order_by(Order.id.desc()).limit(RECENT_ORDERS)))
    product = db().get(Product, found.product_sku)
    unit = product.unit if product else ""
    where, zone = locale_and_zone()
    chart = level_chart(readings, estimate,
                        [OrderMark(o.id, o.created_at, o.state) for o in reversed(rows)],
                        now, unit, zone, where) if found.kind == "sensor" else None
    return render_template("household/slot.html", device=device, slot=found, product=product,
                           unit=unit, estimate=estimate, chart=chart, orders=rows,
                           readings=readings[-10:][::-1],
                           latest=sensors.latest_reading(readings),
                           explanation=sensors.explain(estimate, found, product, readings,
                                                       where, zone))
