"""Turn one authenticated event into a recorded decision (no I/O besides the session).

`decide` runs inside the caller's transaction; the group-commit pipeline
(backend/ingest/pipeline.py) commits many decisions at once and only then answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import protocol
from backend.accounts.keys import Keyring
from backend.config import DEFAULTS
from backend.errors import ConfigError, MalformedEvent
from backend.fleet import offers as fleet
from backend.ingest import batch_sql
from backend.orders import lifecycle as orders
from backend.orders import notifications, policies, sensors
from backend.protocol import Answer, Kind, Result
from backend.storage.db import utcnow
from backend.storage.models import Device, Event, Household, Order, Product, Slot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """What the CoAP layer sends back: a code and an (authenticated or text) payload."""

    result: Result
    payload: bytes
    authenticated: bool

    @classmethod
    def text(cls, result: Result, message: str) -> Reply:
        return cls(result, message.encode(), False)


UNAUTHORIZED_TEXT = "unknown device or bad MAC"


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
        self._parsed = {request: _parsed_or_error(request) for request in requests}
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


def _parsed_or_error(request: bytes) -> protocol.SignedEvent | MalformedEvent:
    try:
        return protocol.parse_signed_event(request)
    except MalformedEvent as err:
        return err  # decide() refuses it


_PER_EVENT = Lookups()


def decide(session: Session, keyring: Keyring, request: bytes,
           config: IngestConfig | None = None, lookups: Lookups = _PER_EVENT) -> Reply:
    """Validate `request` (a COSE_Mac0 event) and record what it leads to."""
    config = config or IngestConfig()
    try:
        signed = lookups.parse(request)
    except MalformedEvent as err:
        log.warning("refused malformed event: %s", err)
        return Reply.text(Result.BAD_REQUEST, str(err))

    device_id = signed.kid.hex()
    device = lookups.device(session, device_id)
    if device is None:
        log.warning("refused event from unknown device %s", device_id)
        return Reply.text(Result.UNAUTHORIZED, UNAUTHORIZED_TEXT)
    try:
        key = keyring.unwrap(device.device_id, device.wrapped_key)
    except ConfigError:
        log.error("device %s: stored key does not unwrap", device_id)
        return Reply.text(Result.UNAVAILABLE, "server key error")
    if not signed.verify(key):
        log.warning("refused event from device %s: bad MAC", device_id)
        return Reply.text(Result.UNAUTHORIZED, UNAUTHORIZED_TEXT)

    try:
        event = protocol.decode_event(signed.payload)
    except MalformedEvent as err:
        log.warning("refused malformed event from device %s: %s", device_id, err)
        return Reply.text(Result.BAD_REQUEST, str(err))

    def answer(**fields) -> Reply:
        result = fields["result"]
        body = protocol.encode_answer(key, signed.tag, Answer(seq=event.seq, **fields))
        return Reply(result, body, True)

    if event.seq <= device.last_seq:
        earlier = lookups.earlier_event(session, device.id, event.seq)
        if earlier is not None and earlier.tag == signed.tag:
            log.info("device %s seq %d: retransmission, same answer", device_id, event.seq)
            return answer(result=Result(earlier.result), order=earlier.order_id,
                          state=earlier.order_state, blocked=earlier.blocked)
        log.warning("refused replayed event from device %s: seq %d <= last %d",
                    device_id, event.seq, device.last_seq)
        return answer(result=Result.CONFLICT, last_seq=device.last_seq)

    if device.status != "active":
        log.warning("refused event from revoked device %s", device_id)
        return answer(result=Result.FORBIDDEN)
    device.last_seq = event.seq  # consumed even when unclaimed: no replay after claim
    if device.household_id is None:
        log.warning("refused event from unclaimed device %s", device_id)
        return answer(result=Result.FORBIDDEN)

    device.last_seen_at = utcnow()
    device.offline_notified = False
    if event.battery_mv is not None:
        device.battery_mv = event.battery_mv
        _watch_battery(session, device, config)
    if event.fw is not None:
        device.fw_version = event.fw
    if event.dropped is not None:
        device.dropped_events = event.dropped
    update = fleet.on_event(session, device, event)  # status history, update reports

    result, order, blocked = _order_decision(session, device, event, lookups)
    state = order.state if order else None
    lookups.record(session, dict(
        device_pk=device.id, seq=event.seq, kind=int(event.kind), slot=event.slot,
        qty=event.qty, remaining=event.remaining, battery_mv=event.battery_mv,
        tag=signed.tag, result=int(result), order_id=order.id if order else None,
        order_state=state, blocked=blocked, received_at=utcnow(),
    ))
    log.debug("device %s seq %d %s: %s %s%s", device_id, event.seq, event.kind.name.lower(),
             result.dotted, result.outcome, f" (order {order.id})" if order else "")
    return answer(result=result, order=order.id if order else None, state=state,
                  blocked=blocked, update=update)


@dataclass(frozen=True)
class IngestConfig:
    """What `decide` needs of the settings."""

    low_battery_mv: int = DEFAULTS.low_battery_mv


def _watch_battery(session: Session, device: Device, config: IngestConfig) -> None:
    """Tell the household once when the battery runs low (not on every heartbeat)."""
    low = device.battery_mv < config.low_battery_mv
    if low and not device.low_battery_notified and device.household_id is not None:
        device.low_battery_notified = True
        notifications.notify(session, device.household_id, "low_battery",
                             f"{device.name or device.serial}: battery low "
                             f"({device.battery_mv} mV), replace it soon.",
                             device_pk=device.id)
    elif device.battery_mv >= config.low_battery_mv + _BATTERY_HYSTERESIS_MV:
        device.low_battery_notified = False  # new batteries: warn again next time


_BATTERY_HYSTERESIS_MV = 200


def _order_decision(session: Session, device: Device, event: protocol.Event,
                    lookups: Lookups):
    """(result, order, blocked reason) for an accepted event."""
    if event.kind not in (Kind.PRESS, Kind.LEVEL):
        return Result.CHANGED, None, None
    slot = lookups.slot(session, device.id, event.slot)
    if slot is None:
        return Result.CHANGED, None, None  # nothing configured on this slot
    household = lookups.household(session, device.household_id)
    open_order = lookups.open_order(session, device.id, slot.index)
    if event.kind is Kind.LEVEL:
        if slot.kind != "sensor" or open_order is not None:
            return Result.CHANGED, None, None  # never order while one is open
        if not sensors.wants_order(session, device, slot, event.remaining):
            return Result.CHANGED, None, None
        source = "sensor"
    else:
        if open_order is not None and not household.allow_multiple_open:
            return Result.VALID, open_order, None
        source = "press"
    product = session.get(Product, slot.product_sku)
    quantity = event.qty or slot.quantity
    price = product.price_cents if product else 0
    blocked = policies.blocked(session, household, price * quantity, utcnow())
    if blocked is not None:
        notifications.notify(session, household.id, "order_blocked",
                             f"{device.name or device.serial}: no order for "
                             f"{quantity} x {slot.product_sku}, "
                             f"{blocked.name.lower().replace('_', ' ')} reached.",
                             device_pk=device.id)
        return Result.CHANGED, None, int(blocked)
    order = orders.create(
        session, actor=f"device:{device.device_id}", hold_window_s=household.hold_window_s,
        household_id=household.id, device_pk=device.id, slot_index=slot.index,
        product_sku=slot.product_sku, quantity=quantity, source=source,
        is_test=device.test_mode, unit_price_cents=price, total_cents=price * quantity,
    )
    lookups.order_created(order)
    return Result.CREATED, order, None
