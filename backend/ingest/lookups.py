"""The rows a decision reads, per event or for a whole batch (group commit)."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import protocol
from backend.errors import MalformedEvent
from backend.ingest import batch_sql
from backend.orders import policies
from backend.storage.models import Device, Event, Household, Order, Slot


class Lookups:
    """Per-event queries for the rows a decision reads (device, slot, open order)."""

    def device(self, session: Session, device_id: str) -> Device | None:
        return session.scalars(
            select(Device).where(Device.device_id == device_id).with_for_update()
        ).one_or_none()

    def slot(self, session: Session, device_pk: int, index: int) -> Slot | None:
        return session.scalars(
            select(Slot).where(Slot.device_pk == device_pk, Slot.index == index)
        ).one_or_none()

    def open_order(self, session: Session, device_pk: int, index: int) -> Order | None:
        return policies.open_order(session, device_pk, index)

    def household(self, session: Session, household_id: int) -> Household:
        return session.get(Household, household_id)

    def earlier_event(self, session: Session, device_pk: int, seq: int) -> Event | None:
        return session.scalars(
            select(Event).where(Event.device_pk == device_pk, Event.seq == seq)
        ).one_or_none()

    def order_created(self, order: Order) -> None:
        pass

    def record(self, session: Session, event: dict) -> None:
        """Store the event row (`event` holds its columns)."""
        session.add(Event(**event))

    def parse(self, request: bytes) -> protocol.SignedEvent:
        return protocol.parse_signed_event(request)

    def flush(self, session: Session) -> None:
        """Write what `record` held back (nothing here: the session has it)."""


class BatchLookups(Lookups):
    """The same rows for a whole batch, read with one query each (group commit).

    Per-event ORM queries were most of the writer's time. Valid only inside the batch's
    transaction, and only while no savepoint is rolled back (a rolled-back order would
    stay in `_open`): the pipeline's per-event fallback uses plain `Lookups`.

    The pipeline decides a shared batch without autoflush (one flush at commit instead
    of one per event), and the batch's event rows go in as one multi-row INSERT from
    `flush()`; until then a retransmission that arrives in the same batch as its
    original finds the original's row in `_added`. Slots and open orders are read as
    plain rows (they are only read here), not as ORM objects: loading those was a
    quarter of the writer's time. All six statements run on the driver itself
    (backend/ingest/batch_sql.py).
    """

    def __init__(self, session: Session, requests: list[bytes]):
        self._parsed = {request: parsed_or_error(request) for request in requests}
        ids = sorted({signed.kid.hex() for signed in self._parsed.values()
                      if not isinstance(signed, MalformedEvent)})
        # Devices as plain attribute bags written back in one UPDATE per batch (`flush`):
        # ORM loading and per-object flushing of them cost more than all the crypto.
        connection = session.connection()
        self._sql = batch_sql.for_dialect(connection.dialect)
        self._cursor = connection.connection.cursor()  # the transaction's own
        self._devices: dict[str, SimpleNamespace] = {}
        self._before: dict[str, dict] = {}
        for device in self._sql.devices(self._cursor, ids):
            self._devices[device.device_id] = device
            self._before[device.device_id] = dict(vars(device))
        pks = [d.id for d in self._devices.values()]
        self._slots = {(s.device_pk, s.index): s for s in self._sql.slots(self._cursor, pks)}
        self._households = {h.id: h for h in self._sql.households(self._cursor, sorted(
            {d.household_id for d in self._devices.values() if d.household_id is not None}))}
        self._added: dict[tuple[int, int], SimpleNamespace] = {}
        self._rows: list[dict] = []
        self._open: dict[tuple[int, int], Order] = {}
        for order in self._sql.open_orders(self._cursor, pks):
            self._open[order.device_pk, order.slot_index] = order

    def device(self, session: Session, device_id: str):
        return self._devices.get(device_id)

    def slot(self, session: Session, device_pk: int, index: int) -> Slot | None:
        return self._slots.get((device_pk, index))

    def open_order(self, session: Session, device_pk: int, index: int) -> Order | None:
        return self._open.get((device_pk, index))

    def household(self, session: Session, household_id: int):
        return self._households.get(household_id) or session.get(Household, household_id)

    def earlier_event(self, session: Session, device_pk: int, seq: int):
        return self._added.get((device_pk, seq)) or super().earlier_event(session, device_pk, seq)

    def order_created(self, order: Order) -> None:
        self._open[order.device_pk, order.slot_index] = order

    def record(self, session: Session, event: dict) -> None:
        self._rows.append(event)
        self._added[event["device_pk"], event["seq"]] = SimpleNamespace(**event)

    def parse(self, request: bytes) -> protocol.SignedEvent:
        parsed = self._parsed.get(request)
        if isinstance(parsed, MalformedEvent):
            raise parsed
        return parsed if parsed is not None else protocol.parse_signed_event(request)

    def flush(self, session: Session) -> None:
        changed = tuple(sorted({name for device_id, before in self._before.items()
                                for name, value in before.items()
                                if getattr(self._devices[device_id], name) != value}))
        if changed:
            rows = [{"pk": device.id, **{n: getattr(device, n) for n in changed}}
                    for device_id, device in self._devices.items()
                    if any(getattr(device, n) != self._before[device_id][n] for n in changed)]
            self._sql.update_devices(self._cursor, changed, rows)
            self._before = {}
        if self._rows:
            self._sql.insert_events(self._cursor, self._rows)
            self._rows = []


def parsed_or_error(request: bytes) -> protocol.SignedEvent | MalformedEvent:
    try:
        return protocol.parse_signed_event(request)
    except MalformedEvent as err:
        return err  # decide() refuses it
