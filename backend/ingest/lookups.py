"""The rows a decision reads, per event or for a whole batch (group commit)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from types import SimpleNamespace

import cbor2

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import protocol
from backend.errors import MalformedEvent
from backend.fleet import offers as fleet
from backend.ingest import batch_sql
from backend.orders import forecast, policies, sensors
from backend.orders import lifecycle as orders
from backend.orders.lifecycle import State
from backend.protocol import Kind
from backend.storage.db import utcnow
from backend.storage.models import Device, Event, Household, Order, Product, Slot


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

    def product(self, session: Session, sku: str) -> Product | None:
        return session.get(Product, sku)

    def wants_order(self, session: Session, device, slot, remaining: int,
                    now: datetime) -> bool:
        """Does this level report reach the slot's reorder point?"""
        return sensors.wants_order(session, device, slot, remaining, now=now)

    def on_event(self, session: Session, device, event: protocol.WireEvent,
                 now: datetime) -> int | None:
        """Status history and update reports; the release to offer (backend/fleet)."""
        return fleet.on_event(session, device, event, now=now)

    def create_order(self, session: Session, *, actor: str, hold_window_s: int,
                     **fields) -> Order:
        """A new order through the state machine (audit trail, outbox, notification)."""
        return orders.create(session, actor=actor, hold_window_s=hold_window_s, **fields)

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
    quarter of the writer's time. All its statements run on the driver itself
    (backend/ingest/batch_sql.py).

    For a fleet's day (issue 18) it also holds, per batch: the products and their
    learned lead times, the level history of the batch's sensors (one query; plus the
    batch's own earlier reports), the active releases per model (read only for a model
    that has one); heartbeats' status rows and new orders' first audit rows go in with
    one executemany each at `flush`, and a new order is one driver-level INSERT.
    tests/backend/ingest/test_batch_paths.py holds all of it to what the per-event
    path writes.
    """

    def __init__(self, session: Session, requests: list[bytes],
                 lead_times: LeadTimes | None = None):
        self._lead_times = lead_times or LeadTimes(0.0)
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
        if self._sql.pipelined:  # PostgreSQL: all of it in one round trip
            # From before any event's own time (taken later, in decide): each report
            # keeps only its own window of this (`wants_order`).
            since = utcnow() - timedelta(days=sensors.HISTORY_DAYS, minutes=1)
            (devices, households, slots, open_orders, history,
             self._active_models) = self._sql.read_batch(self._cursor, ids, since,
                                                         sensors.HISTORY_MAX)
        else:
            devices, households = self._sql.devices_and_households(self._cursor, ids)
            slots, open_orders = self._sql.slots_and_open_orders(
                self._cursor, [d.id for d in devices])
            history = None  # read at the batch's first level report
            self._active_models = None  # read at the batch's first heartbeat
        for device in devices:
            self._devices[device.device_id] = device
            self._before[device.device_id] = dict(vars(device))
        self._households = {h.id: h for h in households}
        self._slots = {(s.device_pk, s.index): s for s in slots}
        self._added: dict[tuple[int, int], SimpleNamespace] = {}
        self._rows: list[dict] = []
        self._open: dict[tuple[int, int], Order] = {}
        for order in open_orders:  # ascending id: the newest open order wins
            self._open[order.device_pk, order.slot_index] = order
        self._order_defaults = _ORDER_DEFAULTS
        self._products: dict[str, SimpleNamespace | None] = {}
        self._lead_days: dict[str, float] = {}
        self._history = self._by_slot(history) if history is not None else None
        self._levels: dict[tuple[int, int], list] = {}  # the batch's own, not inserted yet
        self._models: dict[str, list] = {}
        self._status_rows: list[dict] = []
        self._transitions: list[dict] = []
        self._new_orders: list[dict] = []
        self._ids: list[int] | None = None  # PostgreSQL: order ids taken ahead

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

    def product(self, session: Session, sku: str):
        # Held for the batch, read on the driver as a plain row: the ORM's session.get,
        # for the few orders a batch makes, was 4.5 % of the batch's samples in a py-spy
        # profile of the fleet-day mix (docs/performance.md).
        if sku not in self._products:
            rows = self._sql.products(self._cursor, [sku])
            self._products[sku] = rows[0] if rows else None
        return self._products[sku]

    def wants_order(self, session: Session, device, slot, remaining: int,
                    now: datetime) -> bool:
        """As `sensors.wants_order`, with the product's lead time read once per batch
        and the slot's level history read for all the batch's sensors in one query
        (plus the batch's own earlier reports, not inserted yet)."""
        if self._history is None:
            self._read_history(now)
        if slot.product_sku not in self._lead_days:
            self._lead_days[slot.product_sku] = self._lead_times.get(
                session, slot.product_sku)
        start = now - timedelta(days=sensors.HISTORY_DAYS)
        key = (device.id, slot.index)
        rows = [r for r in self._history.get(key, ()) if r[0] >= start]
        rows += self._levels.get(key, ())
        rows.sort(key=lambda r: (r[0], r[1]))
        history = [forecast.Reading(at, float(left)) for at, _seq, left in
                   rows[-sensors.HISTORY_MAX:]]
        return sensors.wants_order(session, device, slot, remaining, history=history,
                                   lead_days=self._lead_days[slot.product_sku], now=now)

    def _read_history(self, now) -> None:
        pks = sorted({s.device_pk for s in self._slots.values() if s.kind == "sensor"})
        self._history = self._by_slot(self._sql.level_history(
            self._cursor, pks, now - timedelta(days=sensors.HISTORY_DAYS),
            sensors.HISTORY_MAX) if pks else [])

    @staticmethod
    def _by_slot(rows) -> dict:
        history: dict = {}
        for row in rows:
            history.setdefault((row.device_pk, row.slot), []).append(
                (row.received_at, row.seq, row.remaining))
        return history

    def on_event(self, session: Session, device, event: protocol.WireEvent,
                 now: datetime) -> int | None:
        return fleet.on_event(session, device, event, now=now,
                              record_status=self._status_rows.append, releases=self._releases)

    def _releases(self, session: Session, model: str):
        if self._active_models is None:
            self._active_models = self._sql.active_models(self._cursor)
        if model not in self._models:
            self._models[model] = (fleet.active_releases(session, model)
                                   if model in self._active_models else [])
        return self._models[model]

    def create_order(self, session: Session, *, actor: str, hold_window_s: int,
                     **fields):
        """What `orders.create` writes, without the ORM: the order row at once (its
        id goes into the answer; the household's limits count it), its first audit
        row with the batch's (`flush`). An order confirmed at once (no hold window)
        then takes the state machine's own transition, as the per-event path does."""
        now = utcnow()
        # Dearer than confirmed or unavailable: it waits for the household, as
        # orders.create does (backend/orders/consent.py).
        waits = fields.get("consent_reason") is not None
        first = State.AWAITING_CONSENT if waits else State.PENDING
        row = dict(fields, state=first.value, created_at=now, updated_at=now,
                   hold_until=None if waits else now + timedelta(seconds=hold_window_s))
        for column in self._order_defaults:
            row.setdefault(column.name, column.default.arg)
        order_id = self._reserved_id()
        household = self._households.get(fields["household_id"])
        if (order_id is not None and not waits and hold_window_s > 0 and household is not None
                and household.max_orders_per_day is None
                and household.monthly_limit_cents is None):
            # Nothing reads it before the batch's flush (no limit counts it, no state
            # machine step follows): inserted with the batch's other new orders.
            row["id"] = order_id
            self._new_orders.append(row)
        elif order_id is not None:
            row["id"] = order_id
            self._sql.insert_orders(self._cursor, [row])
        else:
            row["id"] = self._sql.insert_order(self._cursor, row)
        order = SimpleNamespace(**row)
        self._transitions.append(dict(order_id=order.id, from_state=None,
                                      to_state=first.value, at=now, actor=actor,
                                      reason=order.consent_reason.replace("_", " ")
                                      if waits else None))
        self._open[order.device_pk, order.slot_index] = order
        if waits:
            self._flush_transitions()
            orders.ask_consent(session, order)
        elif hold_window_s <= 0:
            self._flush_transitions()  # the audit trail in order: pending, then confirmed
            orders.transition(session, order, State.CONFIRMED, actor=actor,
                              reason="no hold window")
        return order

    def _reserved_id(self) -> int | None:
        """PostgreSQL: an order id taken ahead from the sequence (one round trip per
        batch instead of an INSERT ... RETURNING per order), None elsewhere or when
        the batch's reserve is spent. At the batch's first new order the reserve is
        one id per press in the batch that could create one (a configured slot with
        no open order on an active, claimed device); an id not used is a gap in the
        sequence, nothing more."""
        if not self._sql.reserves_ids:
            return None
        if self._ids is None:
            self._ids = self._sql.reserve_order_ids(self._cursor, max(1, self._candidates()))
        return self._ids.pop(0) if self._ids else None  # ascending, as created

    def _candidates(self) -> int:
        count = 0
        for signed in self._parsed.values():
            if isinstance(signed, MalformedEvent):
                continue
            device = self._devices.get(signed.kid.hex())
            if device is None or device.status != "active" or device.household_id is None:
                continue
            try:
                fields = cbor2.loads(signed.payload)
                kind = fields.get(protocol.EventKey.KIND)
                slot = fields.get(protocol.EventKey.SLOT)
            except Exception:
                continue
            if (kind == Kind.PRESS and (device.id, slot) in self._slots
                    and (device.id, slot) not in self._open):
                count += 1
        return count

    def _flush_orders(self) -> None:
        if self._new_orders:
            self._sql.insert_orders(self._cursor, self._new_orders)
            self._new_orders = []

    def _flush_transitions(self) -> None:
        self._flush_orders()  # the audit rows refer to them
        if self._transitions:
            self._sql.insert_transitions(self._cursor, self._transitions)
            self._transitions = []

    def record(self, session: Session, event: dict) -> None:
        self._rows.append(event)
        self._added[event["device_pk"], event["seq"]] = SimpleNamespace(**event)
        if event["kind"] == Kind.LEVEL and event["remaining"] is not None:
            self._levels.setdefault((event["device_pk"], event["slot"]), []).append(
                (event["received_at"], event["seq"], event["remaining"]))

    def parse(self, request: bytes) -> protocol.SignedEvent:
        parsed = self._parsed.get(request)
        if isinstance(parsed, MalformedEvent):
            raise parsed
        return parsed if parsed is not None else protocol.parse_signed_event(request)

    def flush(self, session: Session) -> None:
        # One pass over the devices: which changed, and the union of what changed.
        names: set[str] = set()
        touched = []
        for device_id, before in self._before.items():
            now = vars(self._devices[device_id])
            differ = [name for name, value in before.items() if now[name] != value]
            if differ:
                names.update(differ)
                touched.append(now)
        with self._sql.writes(self._cursor):
            if touched:
                changed = tuple(sorted(names))
                self._sql.update_devices(self._cursor, changed, [
                    {"pk": now["id"], **{n: now[n] for n in changed}} for now in touched])
            self._before = {}
            self._flush_transitions()
            if self._status_rows:
                self._sql.insert_status(self._cursor, self._status_rows)
                self._status_rows = []
            if self._rows:
                self._sql.insert_events(self._cursor, self._rows)
                self._rows = []


class LeadTimes:
    """Products' learned lead times, kept `max_age_s` by the writer across batches.

    The estimate reads a product's last 50 deliveries; a delivery moves it by hours
    at most, and a sensor orders days ahead. Read once per batch it was still 18 % of
    the writer on the fleet day (a batch of a few events at moderate load pays it
    whole); a minute's staleness changes no decision that matters."""

    def __init__(self, max_age_s: float = 60.0):
        self._max_age_s = max_age_s
        self._known: dict[str, tuple[float, float]] = {}

    def get(self, session: Session, sku: str) -> float:
        now = time.monotonic()
        known = self._known.get(sku)
        if known is None or now - known[1] >= self._max_age_s:
            known = self._known[sku] = (sensors.lead_time_days(session, sku), now)
        return known[0]


_ORDER_DEFAULTS = [c for c in Order.__table__.c
                   if c.default is not None and c.default.is_scalar]


def parsed_or_error(request: bytes) -> protocol.SignedEvent | MalformedEvent:
    try:
        return protocol.parse_signed_event(request)
    except MalformedEvent as err:
        return err  # decide() refuses it
