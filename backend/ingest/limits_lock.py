"""PostgreSQL: a batch locks the households whose order limits it may count.

Why: a household's daily and monthly limits (backend/orders/policies.py) count the
household's orders, and two of its devices can be decided at the same time, in two
batches in flight (writer lanes, backend/ingest/writer_process.py) or two ingest
processes. Each batch locks only its own devices, so without this both would count
the orders committed before either began, and both could order: the limit broken by
one. With it, the second batch waits for the household's row until the first commits;
its counts are later statements (READ COMMITTED: a new snapshot each), so they see
the first batch's order.

Only households that have a limit are locked (nothing is read for one without: the
fleet's common case costs no statement), after the batch's devices and in id order,
so every writer takes them in the same order. `FOR NO KEY UPDATE`: rows that only
reference the household (orders, notifications: `FOR KEY SHARE`) are not held up.
SQLite has one write lock: nothing to do there.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.errors import MalformedEvent
from backend.ingest.lookups import Lookups
from backend.storage.models import Household

_LOCK = (f"SELECT id FROM {Household.__tablename__} WHERE id = ANY(%s) ORDER BY id "
         "FOR NO KEY UPDATE")


def lock_limited_households(session: Session, lookups: Lookups,
                            requests: list[bytes]) -> None:
    """Lock the batch's households that have a limit (call before deciding: with
    `BatchLookups` after it has locked the devices; with plain `Lookups` this locks
    each device first, in the same sorted order)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    device_ids = set()
    for request in requests:
        try:
            device_ids.add(lookups.parse(request).kid.hex())
        except MalformedEvent:
            continue  # answered 4.00 by `decide`; it orders nothing
    limited = set()
    for device_id in sorted(device_ids):
        device = lookups.device(session, device_id)
        if device is None or device.household_id is None:
            continue
        household = lookups.household(session, device.household_id)
        if (household.max_orders_per_day is not None
                or household.monthly_limit_cents is not None):
            limited.add(household.id)
    if limited:
        # On the driver, as the batch's other statements (batch_sql.py): building it
        # through SQLAlchemy cost more CPU than PostgreSQL took to run it.
        session.connection().exec_driver_sql(_LOCK, (sorted(limited),))
