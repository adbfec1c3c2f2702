"""Turn one authenticated event into a recorded decision (no I/O besides the session).

`decide` runs inside the caller's transaction; the group-commit pipeline
(backend/ingest/pipeline.py) commits many decisions at once and only then answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from backend import protocol
from backend.accounts.keys import Keyring
from backend.config import DEFAULTS
from backend.errors import ConfigError, MalformedEvent
from backend.ingest.lookups import Lookups
from backend.ingest.reply import Reply
from backend.orders import consent, notifications, policies, sensors
from backend.protocol import Answer, Kind, Result
from backend.storage.db import utcnow
from backend.storage.models import Device

log = logging.getLogger(__name__)


UNAUTHORIZED_TEXT = "unknown device or bad MAC"


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
        if (seq := protocol.event_seq(signed.payload)) is None:
            return Reply.text(Result.BAD_REQUEST, str(err))
        # The device signed it: a signed 4.00 is an answer it can trust, so it drops
        # the event rather than resend it forever (a newer kind, a bug). Nothing changes.
        body = protocol.encode_answer(key, signed.tag, Answer(seq=seq,
                                                                result=Result.BAD_REQUEST))
        return Reply(Result.BAD_REQUEST, body, True)

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

    # One timestamp per event (seen, recorded, its status row, the forecast's "now"):
    # utcnow() three or four times was a few per cent of the writer's CPU.
    now = utcnow()
    device.last_seen_at = now
    device.offline_notified = False
    if event.battery_mv is not None:
        device.battery_mv = event.battery_mv
        _watch_battery(session, device, config)
    if event.fw is not None:
        device.fw_version = event.fw
    if event.dropped is not None:
        device.dropped_events = event.dropped
    update = lookups.on_event(session, device, event, now)  # status history, update reports

    result, order, blocked = _order_decision(session, device, event, lookups, now)
    state = order.state if order else None
    lookups.record(session, dict(
        device_pk=device.id, seq=event.seq, kind=int(event.kind), slot=event.slot,
        qty=event.qty, remaining=event.remaining, battery_mv=event.battery_mv,
        tag=signed.tag, result=int(result), order_id=order.id if order else None,
        order_state=state, blocked=blocked, received_at=now,
    ))
    if log.isEnabledFor(logging.DEBUG):  # its arguments alone cost a few us per event
        log.debug("device %s seq %d %s: %s %s%s", device_id, event.seq,
                  event.kind.name.lower(), result.dotted, result.outcome,
                  f" (order {order.id})" if order else "")
    return answer(result=result, order=order.id if order else None, state=state,
                  blocked=blocked, update=update)


@dataclass(frozen=True)
class IngestConfig:
    """What `decide` needs of the settings."""

    low_battery_mv: int = DEFAULTS.low_battery_mv


def _watch_battery(session: Session, device: Device, config: IngestConfig) -> None:
    """Tell the household once when the battery runs low (not on every heartbeat).
    Only claimed devices get here: an unclaimed one was answered 4.03."""
    low = device.battery_mv < config.low_battery_mv
    if low and not device.low_battery_notified:
        device.low_battery_notified = True
        notifications.notify(session, device.household_id, "low_battery",
                             f"{device.name or device.serial}: battery low "
                             f"({device.battery_mv} mV), replace it soon.",
                             device_pk=device.id)
    elif device.battery_mv >= config.low_battery_mv + _BATTERY_HYSTERESIS_MV:
        device.low_battery_notified = False  # new batteries: warn again next time


_BATTERY_HYSTERESIS_MV = 200


def _order_decision(session: Session, device: Device, event: protocol.WireEvent,
                    lookups: Lookups, now: datetime):
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
        if not lookups.wants_order(session, device, slot, event.remaining, now):
            return Result.CHANGED, None, None
        source = "sensor"
    else:
        if open_order is not None and not household.allow_multiple_open:
            return Result.VALID, open_order, None
        source = "press"
    product = lookups.product(session, slot.product_sku)
    quantity = (sensors.order_quantity(slot, product, event.remaining) if source == "sensor"
                else event.qty or slot.quantity)
    fields = consent.order_fields(product, slot, household, quantity)
    blocked = policies.blocked(session, household, fields["total_cents"], now)
    if blocked is not None:
        notifications.notify(session, household.id, "order_blocked",
                             f"{device.name or device.serial}: no order for "
                             f"{quantity} x {fields['product_name']}, "
                             f"{blocked.name.lower().replace('_', ' ')} reached.",
                             device_pk=device.id)
        return Result.CHANGED, None, int(blocked)
    # Dearer than confirmed, or unavailable: created in awaiting_consent (the household
    # decides; the device's answer carries that state, docs/protocol.md).
    order = lookups.create_order(
        session, actor=f"device:{device.device_id}", hold_window_s=household.hold_window_s,
        household_id=household.id, device_pk=device.id, slot_index=slot.index,
        source=source, is_test=device.test_mode, **fields,
    )
    return Result.CREATED, order, None
