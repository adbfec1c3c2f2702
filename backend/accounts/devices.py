"""Claiming, configuring and listing devices."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.accounts import claim_codes
from backend.errors import Conflict, NotFound, ReplenishError
from backend.storage.db import utcnow
from backend.storage.models import Device, Household, Product, Slot

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


SLOT_KINDS = ("button", "sensor")


def configure_slot(session: Session, device: Device, index: int, product_sku: str,
                   quantity: int, kind: str = "button", safety_days: float = 2.0) -> Slot:
    if index < 0 or quantity < 1 or not product_sku.strip():
        raise ReplenishError("slot must be >= 0, quantity >= 1 and the product not empty")
    if kind not in SLOT_KINDS or not 0 <= safety_days <= 60:
        raise ReplenishError(f"kind must be one of {SLOT_KINDS}, safety_days 0..60")
    if session.get(Product, product_sku.strip()) is None:
        raise NotFound(f"no product {product_sku.strip()!r} in the catalogue")
    slot = session.scalars(
        select(Slot).where(Slot.device_pk == device.id, Slot.index == index)
    ).one_or_none()
    if slot is None:
        slot = Slot(device_pk=device.id, index=index)
        session.add(slot)
    slot.product_sku, slot.quantity = product_sku.strip(), quantity
    slot.kind, slot.safety_days = kind, safety_days
    return slot


def find(session: Session, device_ref: str) -> Device:
    """A device by its id (16 hex digits) or its serial, for manufacturer commands."""
    device = session.scalars(
        select(Device).where((Device.device_id == device_ref.lower())
                             | (Device.serial == device_ref))
    ).one_or_none()
    if device is None:
        raise NotFound(f"no device with id or serial {device_ref!r}")
    return device


REASON_MAX = 200


def revoke(session: Session, device: Device, reason: str | None = None) -> bool:
    """Refuse the device's events from now on (ingest reads the status per event).

    Returns False if it was revoked already. Its orders and events stay as they are.
    The way back is `reinstate`: a new key, flashed onto the device.
    """
    if device.status == "revoked":
        return False
    device.status = "revoked"
    device.revoked_at = utcnow()
    device.revoked_reason = (reason or "").strip()[:REASON_MAX] or None
    log.warning("device %s revoked: %s", device.device_id, device.revoked_reason or "no reason")
    return True


def reinstate(session: Session, device: Device, wrapped_key: bytes) -> None:
    """Take a revoked device back into service under a new key (its old key, maybe
    leaked, never verifies again). The new identity must be flashed onto the device."""
    if device.status != "revoked":
        raise Conflict(f"device {device.device_id} is not revoked")
    device.status = "active"
    device.revoked_at = device.revoked_reason = None
    device.wrapped_key = wrapped_key
    device.key_rotated_at = utcnow()
    log.warning("device %s reinstated with a new key", device.device_id)


def rotate_key(session: Session, device: Device, wrapped_key: bytes) -> None:
    """Store a new wrapped key. The old key stops verifying when this commits.

    last_seq is kept: the device's sequence counter lives in its own flash, outside
    the identity, and continues after the new identity is copied on, so no sequence
    number repeats for either key and old events cannot be replayed under the new one.
    """
    if device.status == "revoked":
        raise Conflict(f"device {device.device_id} is revoked; its key is not rotated")
    device.wrapped_key = wrapped_key
    device.key_rotated_at = utcnow()
    log.info("device %s: key rotated", device.device_id)


def record_flashed(session: Session, device: Device, firmware_version: str) -> None:
    device.flashed_at = utcnow()
    device.flashed_firmware = firmware_version
    log.info("device %s flashed with firmware %s", device.device_id, firmware_version)
