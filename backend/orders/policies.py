"""Household order policies, checked before an order is created (docs/orders.md)."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.orders.lifecycle import OPEN_STATES, State
from backend.storage.models import Household, Order


class Blocked(enum.IntEnum):
    """Why a press or sensor reading did not become an order (answer key 6)."""

    DAILY_LIMIT = 1
    MONTHLY_LIMIT = 2


_NOT_COUNTED = (State.CANCELLED, State.FAILED)


def open_order(session: Session, device_pk: int, slot_index: int) -> Order | None:
    return session.scalars(
        select(Order).where(Order.device_pk == device_pk, Order.slot_index == slot_index,
                            Order.state.in_(OPEN_STATES))
        .order_by(Order.id.desc()).limit(1)
    ).first()


def blocked(session: Session, household: Household, total_cents: int,
            now: datetime) -> Blocked | None:
    """The first limit this order would break, or None."""
    if household.max_orders_per_day is None and household.monthly_limit_cents is None:
        return None  # no limits: nothing to read (ingest asks for every new order)
    counted = (Order.household_id == household.id, Order.state.not_in(_NOT_COUNTED))
    if household.max_orders_per_day is not None:
        today = session.scalar(select(func.count()).select_from(Order).where(
            *counted, Order.created_at > now - timedelta(days=1)))
        if today >= household.max_orders_per_day:
            return Blocked.DAILY_LIMIT
    if household.monthly_limit_cents is not None:
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        spent = session.scalar(select(func.coalesce(func.sum(Order.total_cents), 0)).where(
            *counted, Order.created_at >= month_start))
        if spent + total_cents > household.monthly_limit_cents:
            return Blocked.MONTHLY_LIMIT
    return None
