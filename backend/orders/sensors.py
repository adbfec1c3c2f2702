"""Sensor reordering: the slot's level history → forecast → order at the reorder point.

The estimate itself (robust rate, refills, knocks, gaps) is backend/orders/forecast.py; this
module feeds it from the database and learns the product's lead time from deliveries.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.orders import forecast
from backend.protocol import Kind
from backend.storage.db import utcnow
from backend.storage.models import Device, Event, Order, Product, Slot

HISTORY_DAYS = 60
HISTORY_MAX = 500
LEAD_TIME_SAMPLES = 50
_FALLBACK_LEAD_DAYS = 3.0


def lead_time_days(session: Session, sku: str) -> float:
    """From order to delivery, learned from the product's recent deliveries."""
    rows = session.execute(
        select(Order.created_at, Order.delivered_at)
        .where(Order.product_sku == sku, Order.delivered_at.is_not(None),
               Order.is_test.is_(False))
        .order_by(Order.delivered_at.desc()).limit(LEAD_TIME_SAMPLES)
    ).all()
    product = session.get(Product, sku)
    default = product.default_lead_days if product else _FALLBACK_LEAD_DAYS
    days = [(delivered - created).total_seconds() / 86400 for created, delivered in rows]
    return forecast.learn_lead_time(days, default)


def readings(session: Session, device: Device, slot: Slot, now: datetime,
             latest: int | None = None) -> list[forecast.Reading]:
    rows = session.execute(
        select(Event.received_at, Event.remaining)
        .where(Event.device_pk == device.id, Event.slot == slot.index,
               Event.kind == int(Kind.LEVEL),
               Event.received_at >= now - timedelta(days=HISTORY_DAYS))
        .order_by(Event.received_at.desc(), Event.seq.desc()).limit(HISTORY_MAX)
    ).all()
    history = [forecast.Reading(at, float(remaining)) for at, remaining in reversed(rows)]
    if latest is not None:  # the reading being decided is not flushed yet
        history.append(forecast.Reading(now, float(latest)))
    return history


def forecast_for(session: Session, device: Device, slot: Slot, *,
                 latest: int | None = None, now: datetime | None = None) -> forecast.Forecast:
    now = now or utcnow()
    return forecast.estimate(readings(session, device, slot, now, latest), now,
                             lead_time_days=lead_time_days(session, slot.product_sku),
                             safety_days=slot.safety_days)


def wants_order(session: Session, device: Device, slot: Slot, remaining: int, *,
                history: list[forecast.Reading] | None = None,
                lead_days: float | None = None) -> bool:
    """Is it time to order? Ingest's group commit passes the slot's `history` (the
    stored readings `readings` would return, without this one) and the product's
    `lead_days`, both read once per batch; without them they are read here."""
    if history is None and lead_days is None:
        return forecast_for(session, device, slot, latest=remaining).should_order
    now = utcnow()
    if history is None:
        history = readings(session, device, slot, now)
    if lead_days is None:
        lead_days = lead_time_days(session, slot.product_sku)
    return forecast.estimate([*history, forecast.Reading(now, float(remaining))], now,
                             lead_time_days=lead_days,
                             safety_days=slot.safety_days).should_order
