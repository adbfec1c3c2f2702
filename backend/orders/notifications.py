"""Household notifications: an in-app list, and an optional signed household webhook
delivered through the outbox."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.orders import outbox
from backend.storage.db import utcnow
from backend.storage.models import Household, Notification


def notify(session: Session, household_id: int, kind: str, message: str, *,
           order_id: int | None = None, device_pk: int | None = None) -> Notification:
    note = Notification(household_id=household_id, kind=kind, message=message,
                        order_id=order_id, device_pk=device_pk)
    session.add(note)
    session.flush()
    household = session.get(Household, household_id)
    if household is not None and household.webhook_url:
        outbox.enqueue(session, "household.webhook", {"notification_id": note.id},
                       key=f"notification-{note.id}-webhook")
    return note


def unread_count(session: Session, household_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Notification).where(
        Notification.household_id == household_id, Notification.read_at.is_(None)))


def mark_all_read(session: Session, household_id: int) -> int:
    """Mark every unread notification of the household read; returns how many."""
    return session.execute(
        update(Notification)
        .where(Notification.household_id == household_id, Notification.read_at.is_(None))
        .values(read_at=utcnow()).execution_options(synchronize_session=False)
    ).rowcount
