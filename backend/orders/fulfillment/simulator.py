"""A warehouse and carrier in a box: stock per product, backorders, configurable timing.

It behaves like a merchant living in the same database: `place` records the order on
the warehouse side (idempotent per key), `advance` ships, delivers and restocks as time
passes and reports each step back through `apply_status`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.config import SimulatorSettings
from backend.orders.fulfillment.base import (
    Fulfillment,
    Placement,
    PlaceRequest,
    apply_status,
    state_for,
)
from backend.storage.db import utcnow
from backend.storage.models import Order, SimOrder, SimStock

log = logging.getLogger(__name__)
ACTOR = "fulfillment:simulator"


class SimulatedWarehouse(Fulfillment):
    name = "simulator"
    MOVING = ("accepted", "backordered", "shipped")  # what `advance` moves on

    def __init__(self, settings: SimulatorSettings):
        self.settings = settings
        self._step = timedelta(seconds=settings.step_s)

    def _stock(self, session: Session, sku: str) -> SimStock:
        stock = session.get(SimStock, sku, with_for_update=True)
        if stock is None:
            # Two placements of a new product at once (the order lane runs several):
            # one insert wins, the other takes the row it made.
            try:
                with session.begin_nested():
                    session.add(SimStock(sku=sku, on_hand=self.settings.initial_stock))
            except IntegrityError:
                pass
            stock = session.get(SimStock, sku, with_for_update=True, populate_existing=True)
        return stock

    def place(self, request: PlaceRequest, sessions: sessionmaker) -> Placement:
        with sessions() as session, session.begin():
            known = session.get(SimOrder, request.idempotency_key)
            if known is None:
                known = self._accept(session, request)
            status = "declined" if known.status == "declined" else (
                "backordered" if known.status == "backordered" else "accepted")
            reason = "payment_declined" if status == "declined" else None
            return Placement(status, reason, merchant_ref=f"SIM-{request.order_id}")

    def _accept(self, session: Session, request: PlaceRequest) -> SimOrder:
        now = utcnow()
        if request.sku in self.settings.decline_skus:
            status = "declined"
        else:
            stock = self._stock(session, request.sku)
            if stock.on_hand >= request.quantity:
                stock.on_hand -= request.quantity
                status = "accepted"
            else:
                status = "backordered"
                stock.restock_at = stock.restock_at or now + timedelta(
                    seconds=self.settings.restock_s)
        record = SimOrder(idempotency_key=request.idempotency_key, order_id=request.order_id,
                          sku=request.sku, quantity=request.quantity, status=status,
                          updated_at=now)
        session.add(record)
        log.info("warehouse: order %d %s (%d x %s)", request.order_id, status,
                 request.quantity, request.sku)
        return record

    def advance(self, session: Session, now: datetime) -> int:
        moved = self._restock(session, now)
        rows = session.execute(
            select(SimOrder, Order).join(Order, Order.id == SimOrder.order_id)
            .where(SimOrder.status.in_(self.MOVING))
            .order_by(SimOrder.order_id)
        ).all()
        for record, order in rows:
            moved += self._advance_one(session, record, order, now)
        return moved

    def _restock(self, session: Session, now: datetime) -> int:
        due = session.scalars(select(SimStock).where(SimStock.restock_at <= now)).all()
        for stock in due:
            stock.on_hand += self.settings.restock_amount
            stock.restock_at = None
            log.info("warehouse: restocked %s to %d", stock.sku, stock.on_hand)
        return len(due)

    def _advance_one(self, session: Session, record: SimOrder, order: Order,
                     now: datetime) -> int:
        if order.state in ("cancelled", "failed", "delivered"):
            return 0
        if record.status == "backordered":
            stock = self._stock(session, record.sku)
            if stock.on_hand < record.quantity:
                return 0
            moved = self._step_to(session, record, order, "accepted", now)
            if record.status == "accepted":  # taken from stock only when it moved on
                stock.on_hand -= record.quantity
            return moved
        if record.updated_at > now - self._step or order.state in ("pending", "confirmed"):
            return 0
        if record.status == "accepted":
            return self._step_to(session, record, order, "shipped", now)
        lost = record.sku in self.settings.lost_skus
        return self._step_to(session, record, order, "failed" if lost else "delivered", now)

    def _step_to(self, session, record, order, status, now) -> int:
        reason = "delivery_failed" if status == "failed" else None
        moved = apply_status(session, order, status, actor=ACTOR, reason=reason)
        if not moved and order.state != state_for(status):
            # The order changed in another transaction since it was read (the placing
            # lane recording "backordered"): the warehouse keeps its record as it was
            # and the next round decides again, so the two never drift apart.
            return 0
        record.status, record.updated_at = status, now
        return int(moved)
