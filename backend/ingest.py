"""Turn one authenticated event into a recorded decision (no I/O besides the session).

`decide` runs inside the caller's transaction; the group-commit pipeline
(backend/coap/pipeline.py) commits many decisions at once and only then answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import orders, protocol
from backend.db import utcnow
from backend.errors import ConfigError, MalformedEvent
from backend.keys import Keyring
from backend.models import Device, Event, Order, Slot
from backend.protocol import Answer, Kind, Result

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


def decide(session: Session, keyring: Keyring, request: bytes) -> Reply:
    """Validate `request` (a COSE_Mac0 event) and record what it leads to."""
    try:
        signed = protocol.parse_signed_event(request)
    except MalformedEvent as err:
        log.warning("refused malformed event: %s", err)
        return Reply.text(Result.BAD_REQUEST, str(err))

    device_id = signed.kid.hex()
    device = session.scalars(
        select(Device).where(Device.device_id == device_id).with_for_update()
    ).one_or_none()
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
        earlier = session.scalars(
            select(Event).where(Event.device_pk == device.id, Event.seq == event.seq)
        ).one_or_none()
        if earlier is not None and earlier.tag == signed.tag:
            log.info("device %s seq %d: retransmission, same answer", device_id, event.seq)
            return answer(result=Result(earlier.result), order=earlier.order_id,
                          state=earlier.order_state)
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
    if event.battery_mv is not None:
        device.battery_mv = event.battery_mv
    if event.fw is not None:
        device.fw_version = event.fw

    result, order = _order_decision(session, device, event)
    state = order.state if order else None
    session.add(Event(
        device_pk=device.id, seq=event.seq, kind=int(event.kind), slot=event.slot,
        qty=event.qty, remaining=event.remaining, battery_mv=event.battery_mv,
        tag=signed.tag, result=int(result), order_id=order.id if order else None,
        order_state=state,
    ))
    log.info("device %s seq %d %s: %s %s%s", device_id, event.seq, event.kind.name.lower(),
             result.dotted, result.outcome, f" (order {order.id})" if order else "")
    return answer(result=result, order=order.id if order else None, state=state)


def _order_decision(session: Session, device: Device, event: protocol.Event):
    if event.kind is not Kind.PRESS:
        return Result.CHANGED, None
    slot = session.scalars(
        select(Slot).where(Slot.device_pk == device.id, Slot.index == event.slot)
    ).one_or_none()
    if slot is None:
        return Result.CHANGED, None  # press on a slot with no product: nothing to order
    open_order = session.scalars(
        select(Order)
        .where(Order.device_pk == device.id, Order.slot_index == event.slot,
               Order.state.in_(orders.OPEN_STATES))
        .order_by(Order.id.desc())
        .limit(1)
    ).first()
    if open_order is not None:
        return Result.VALID, open_order
    order = orders.create(
        session, actor=f"device:{device.device_id}", household_id=device.household_id,
        device_pk=device.id, slot_index=slot.index, product_sku=slot.product_sku,
        quantity=event.qty or slot.quantity,
    )
    return Result.CREATED, order
