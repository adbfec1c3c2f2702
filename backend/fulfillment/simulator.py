"""A warehouse and carrier in a box: orders advance one stage every `step_s`."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import orders
from backend.fulfillment.base import Fulfillment
from backend.models import Order
from backend.orders import State

log = logging.getLogger(__name__)

NEXT_STAGE = {State.PENDING: State.PLACED, State.PLACED: State.SHIPPED,
              State.SHIPPED: State.DELIVERED}


class SimulatedWarehouse(Fulfillment):
    name = "simulator"

    def __init__(self, step_s: float):
        self._step = timedelta(seconds=step_s)

    def advance(self, session: Session, now: datetime) -> int:
        due = session.scalars(
            select(Order)
            .where(Order.state.in_(list(NEXT_STAGE)), Order.updated_at <= now - self._step)
            .order_by(Order.id)
            .with_for_update(skip_locked=True, key_share=True)  # FK checks need not wait
        ).all()
        moved = 0
        for order in due:
            to = NEXT_STAGE[State(order.state)]
            if orders.transition(session, order, to, actor=f"fulfillment:{self.name}"):
                moved += 1
                log.info("order %d %s", order.id, to)
        return moved
