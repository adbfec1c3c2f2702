"""Sensor reordering: the slot's level history → forecast → order at the reorder point.

The estimate itself (robust rate, refills, knocks, gaps) is backend/orders/forecast.py; this
module feeds it from the database and learns the product's lead time from deliveries.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.orders import display, forecast
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


def below_floor(slot: Slot, latest: float | None, estimate: forecast.Forecast,
                previous: float | None = None) -> bool:
    """The slot's floor is crossed: the latest reading is below it and it is the first
    reading, or the one before was below too, or so is the robust level. A new sensor
    that first reports 15 % orders at once; one knock (a lifted bottle) never does."""
    if slot.min_level is None or latest is None or latest >= slot.min_level:
        return False
    return (previous is None or previous < slot.min_level
            or (estimate.remaining is not None and estimate.remaining < slot.min_level))


def wants_order(session: Session, device: Device, slot: Slot, remaining: int, *,
                history: list[forecast.Reading] | None = None,
                lead_days: float | None = None, now: datetime | None = None) -> bool:
    """Order now: the forecast says so, or the level fell below the slot's floor (which
    works from the first reading, before the forecast has data). Ingest's group commit
    passes the slot's `history` (the stored readings, without this one) and the
    product's `lead_days`, both read once per batch; without them they are read here.
    `now`: the event's time, as ingest recorded it."""
    now = now or utcnow()
    if history is None:
        history = readings(session, device, slot, now)
    if lead_days is None:
        lead_days = lead_time_days(session, slot.product_sku)
    previous = history[-1].remaining if history else None
    estimate = forecast.estimate([*history, forecast.Reading(now, float(remaining))], now,
                                 lead_time_days=lead_days, safety_days=slot.safety_days)
    return estimate.should_order or below_floor(slot, remaining, estimate, previous)


QUANTITY_MAX = 100  # as a slot's quantity


def order_quantity(slot: Slot, product: Product | None, remaining: int | None) -> int:
    """Packs to order: enough whole packs to bring the level up to the slot's target
    (at least one), or the slot's fixed quantity when it has no target."""
    if slot.target_level is None or product is None or remaining is None:
        return slot.quantity
    missing = slot.target_level - max(0, remaining)
    packs = -(-missing // max(1, product.package_amount))  # ceiling
    return max(1, min(QUANTITY_MAX, packs))


def explain(estimate: forecast.Forecast, slot: Slot, product: Product | None,
            history: list[forecast.Reading], where: str | None = None,
            zone: str | None = None) -> str:
    """The forecast in words a household reads (its locale, zone and the product's unit)."""
    unit = product.unit if product else None

    def amt(value):
        return display.amount(value, unit, where)

    floor = (f" It also orders whenever the level falls below {amt(slot.min_level)}."
             if slot.min_level is not None else "")
    target = ""
    if slot.target_level is not None and product is not None:
        target = (f" An order brings it back up to {amt(slot.target_level)} in whole packs "
                  f"of {display.pack(product.package_amount, unit, where)}.")
    if not history:
        return ("No level reports yet." + floor + target).strip()
    if estimate.rate_per_day is None:
        span_days = (history[-1].at - history[0].at).total_seconds() / 86400
        learning = (f"Still learning how fast it is used: {len(history)} "
                    f"reading{'s' if len(history) != 1 else ''} so far over "
                    f"{display.duration(span_days)}; a forecast needs {forecast.MIN_READINGS} "
                    "over at least a day.")
        until = (f" Until then it orders when the level falls below {amt(slot.min_level)}."
                 if slot.min_level is not None else
                 " Set a minimum level to have it order before then.")
        return learning + until + target
    # "Left" is the latest reading, as the page's "left now": the explanation never
    # contradicts it. Only a reading far off the robust level (a knock?) is called out.
    latest = history[-1].remaining
    robust = estimate.remaining if estimate.remaining is not None else latest
    left = amt(latest)
    knock = ""
    if abs(latest - robust) > max(0.1 * robust, 1.0):
        knock = (f" The latest reading, {left}, is far from the readings before it (the "
                 f"container lifted or knocked?); the forecast goes by about {amt(robust)}.")
        left = amt(robust)
        latest = robust
    if estimate.rate_per_day == 0.0:
        return f"No use measured lately; {left} left." + knock + floor + target
    days_left = latest / estimate.rate_per_day
    point = estimate.lead_time_days + slot.safety_days
    text = (f"Using about {amt(estimate.rate_per_day)} a day, the {left} left last about "
            f"{display.duration(days_left)}")
    if estimate.run_out_at is not None:
        text += f" (until about {display.day(estimate.run_out_at, where, zone)})"
    text += (f". It reorders when {display.duration(point)} are left: "
             f"{display.duration(estimate.lead_time_days)} for delivery and "
             f"{display.duration(slot.safety_days)} to spare")
    text += ", which is now." if estimate.should_order else "."
    if "holding" in estimate.reason:
        text += " It waits for one more reading: the level just jumped up, maybe a refill."
    return text + knock + floor + target


def latest_reading(history: list[forecast.Reading]) -> forecast.Reading | None:
    """What "left now" shows: the newest reading itself, not a smoothed level."""
    return history[-1] if history else None
