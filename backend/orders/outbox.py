"""Transactional outbox: side effects written with the change that causes them, delivered
by workers with retries, exponential backoff with jitter, and an idempotency key each.

Claiming is a guarded UPDATE (lease with owner and expiry): two workers never hold the
same item, and an item whose worker died is taken again when its lease runs out. The
receiving side deduplicates by the idempotency key, so a retry after a lost answer
does not act twice.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from backend.config import DEFAULTS
from backend.storage.db import utcnow
from backend.storage.models import OutboxItem

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BASE_DELAY_S = 1.0
MAX_DELAY_S = 300.0


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    payload: dict
    idempotency_key: str
    attempts: int


def enqueue(session: Session, kind: str, payload: dict, *, key: str,
            order_id: int | None = None) -> None:
    session.add(OutboxItem(kind=kind, payload=json.dumps(payload, sort_keys=True),
                           idempotency_key=key, order_id=order_id, status="pending",
                           next_attempt_at=utcnow()))


def backoff_s(attempts: int, rng: random.Random = random._inst) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^attempts)] (spreads retries out)."""
    return rng.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2 ** attempts))


def _unleased(now: datetime):
    return or_(OutboxItem.locked_until.is_(None), OutboxItem.locked_until < now)


def due_query(now: datetime):
    """Ids of the items due now and not leased to a worker."""
    return select(OutboxItem.id).where(OutboxItem.status == "pending",
                                       OutboxItem.next_attempt_at <= now, _unleased(now))


def claim(session: Session, worker: str, limit: int = 10, now: datetime | None = None,
          lease_s: float = DEFAULTS.outbox_lease_s,
          kinds: tuple[str, ...] | None = None,
          other_than: tuple[str, ...] = ()) -> list[Claimed]:
    """Lease up to `limit` due items (of `kinds` if given, of none of `other_than`) to
    `worker` for `lease_s` (commit the session to publish it)."""
    now = now or utcnow()
    due = _unleased(now)
    query = due_query(now)
    if kinds is not None:
        query = query.where(OutboxItem.kind.in_(kinds))
    if other_than:
        query = query.where(OutboxItem.kind.not_in(other_than))
    ids = session.scalars(
        query.order_by(OutboxItem.id).limit(limit).with_for_update(skip_locked=True)
    ).all()
    claimed = []
    for item_id in ids:
        taken = session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == item_id, OutboxItem.status == "pending", due)
            .values(locked_by=worker, locked_until=now + timedelta(seconds=lease_s),
                    attempts=OutboxItem.attempts + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if taken == 1:
            item = session.get(OutboxItem, item_id, populate_existing=True)
            claimed.append(Claimed(item.id, item.kind, json.loads(item.payload),
                                   item.idempotency_key, item.attempts))
    return claimed


def _still_mine(session: Session, item_id: int, worker: str) -> OutboxItem | None:
    return session.scalars(
        select(OutboxItem).where(OutboxItem.id == item_id, OutboxItem.locked_by == worker,
                                 OutboxItem.status == "pending")
        .with_for_update()
    ).one_or_none()


def complete(session: Session, item_id: int, worker: str) -> bool:
    item = _still_mine(session, item_id, worker)
    if item is None:
        log.warning("outbox item %d: lease lost before completion", item_id)
        return False
    item.status, item.done_at, item.locked_by, item.locked_until = "done", utcnow(), None, None
    return True


def depth(session: Session) -> list[tuple[str, str, int, datetime]]:
    """(kind, status, items, oldest created_at) of the items not done (metrics)."""
    return [tuple(row) for row in session.execute(
        select(OutboxItem.kind, OutboxItem.status, func.count(),
               func.min(OutboxItem.created_at))
        .where(OutboxItem.status != "done")
        .group_by(OutboxItem.kind, OutboxItem.status))]


def defer(session: Session, item_id: int, worker: str, wait_s: float) -> bool:
    """Give a claimed item back untried, due again in `wait_s` (its destination or
    household is busy, or the destination's circuit is open): no attempt is counted."""
    item = _still_mine(session, item_id, worker)
    if item is None:
        return False
    item.attempts = max(0, item.attempts - 1)
    item.locked_by = item.locked_until = None
    item.next_attempt_at = utcnow() + timedelta(seconds=wait_s)
    return True


def retry_later(session: Session, item_id: int, worker: str, error: str) -> str:
    """Schedule another attempt; after MAX_ATTEMPTS the item is dead. Returns the status."""
    item = _still_mine(session, item_id, worker)
    if item is None:
        return "lost"
    item.last_error = error[:500]
    item.locked_by = item.locked_until = None
    if item.attempts >= MAX_ATTEMPTS:
        item.status = "dead"
        log.error("outbox item %d (%s) dead after %d attempts: %s", item.id, item.kind,
                  item.attempts, error)
    else:
        item.next_attempt_at = utcnow() + timedelta(seconds=backoff_s(item.attempts))
        log.warning("outbox item %d (%s) attempt %d failed, retrying: %s", item.id,
                    item.kind, item.attempts, error)
    return item.status
