"""Claiming, configuring and listing devices."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db import utcnow
from backend.errors import Conflict, NotFound, ReplenishError
from backend.models import Device, Household, Slot
from provisioning import claim_codes

log = logging.getLogger(__name__)


def claim(session: Session, household: Household, code: str) -> Device:
    if not claim_codes.is_valid(code):
        raise ReplenishError("that is not a valid claim code: check it against the label")
    device = session.scalars(
        select(Device).where(Device.claim_code_sha256 == claim_codes.code_hash(code))
    ).one_or_none()
    if device is None:
        raise NotFound("no device has that claim code")
    if device.household_id is not None:
        raise Conflict("this device is already claimed")
    if device.status != "active":
        raise Conflict("this device has been revoked")
    device.household_id = household.id
    device.claimed_at = utcnow()
    log.info("device %s claimed by household %d", device.device_id, household.id)
    return device


def owned(session: Session, household: Household, device_id: str) -> Device:
    """The household's device, or NotFound (also for a stranger's device)."""
    device = session.scalars(
        select(Device).where(Device.device_id == device_id,
                             Device.household_id == household.id)
    ).one_or_none()
    if device is None:
        raise NotFound(f"no device {device_id} in this household")
    return device


def configure_slot(session: Session, device: Device, index: int, product_sku: str,
                   quantity: int) -> Slot:
    if index < 0 or quantity < 1 or not product_sku.strip():
        raise ReplenishError("slot must be >= 0, quantity >= 1 and the product not empty")
    slot = session.scalars(
        select(Slot).where(Slot.device_pk == device.id, Slot.index == index)
    ).one_or_none()
    if slot is None:
        slot = Slot(device_pk=device.id, index=index)
        session.add(slot)
    slot.product_sku, slot.quantity = product_sku.strip(), quantity
    return slot


def list_for(session: Session, household: Household) -> list[Device]:
    return list(session.scalars(
        select(Device).where(Device.household_id == household.id).order_by(Device.id)
    ))
