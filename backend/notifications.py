"""Household notifications: an in-app list, and an optional signed household webhook
delivered through the outbox."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend import outbox
from backend.models import Household, Notification


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
