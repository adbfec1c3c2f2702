"""A household's devices: claim, rename, slots, state, level history, forecast."""

from __future__ import annotations

import re
from datetime import timedelta

from flask import Blueprint, current_app, g
from sqlalchemy import select

from backend.accounts import devices
from backend.accounts import users as accounts
from backend.errors import NotFound
from backend.orders import removal, sensors
from backend.protocol import Kind
from backend.storage.db import utcnow
from backend.storage.models import Device, Event, Household, Product, Slot
from backend.web.api.common import SLOT, db, household_required, iso, page, writing
from backend.web.api.validation import INT32_MAX, Body, Field
from backend.web.device_health import LOW, battery_reading

bp = Blueprint("devices", __name__)

DEVICE_ID_PATTERN = re.compile(r"[0-9a-f]{16}")

CLAIM = Body({"code": Field(str, "The claim code from the device's label, e.g. "
                            "'ABCD-EFGH-JKMN-P' (case, dashes and spaces do not matter), "
                            "or the URL in its QR code (…/claim/<code>).", required=True,
                            min_length=1, max_length=300, write_only=True)},
             example={"code": "7K3M-Q9TD-2HXC-B"})
DEVICE_CHANGES = Body({
    "name": Field(str, "A name for the device; empty or null removes it.", nullable=True,
                  max_length=200),
    "test_mode": Field(bool, "Test mode: its orders are marked test and only ever go to "
                       "the built-in simulator."),
}, example={"name": "Laundry shelf"})
SLOT_BODY = Body({
    "product_sku": Field(str, "A product from GET /products.", required=True, min_length=1,
                         max_length=100),
    "quantity": Field(int, "Packages per order (default 1).", minimum=1, maximum=100),
    "kind": Field(str, "button (orders on a press, the default) or sensor (orders at the "
                  "reorder point from level reports).", choices=devices.SLOT_KINDS),
    "safety_days": Field(float, "Sensor slots: days of use kept as safety stock "
                         "(default 2).", minimum=0, maximum=60),
    "price_minor": Field(int, "The price per pack the household was shown and agrees "
                         "to (minor units of the product's currency). If the catalogue's "
                         "price differs, nothing changes (409). Left out: today's price is "
                         "recorded and returned. Presses above it wait for consent.",
                         minimum=0, maximum=INT32_MAX),
    "min_level": Field(int, "Sensor slots: order when the level falls below this (in the "
                       "product's unit), even before the forecast has data; null: none.",
                       nullable=True, minimum=0, maximum=INT32_MAX),
    "target_level": Field(int, "Sensor slots: order enough whole packs to bring the level "
                          "up to this (in the product's unit) instead of `quantity`; null: "
                          "none.", nullable=True, minimum=1, maximum=INT32_MAX),
}, example={"product_sku": "DETERGENT-1L", "quantity": 2})


def device_state(device: Device) -> dict:
    """What a household or an operator sees of a device's health."""
    settings = current_app.config["SETTINGS"]
    silent_since = utcnow() - timedelta(seconds=settings.offline_after_s)
    battery = battery_reading(device.battery_mv, settings.low_battery_mv)
    return {
        "last_seen_at": iso(device.last_seen_at),
        "battery_mv": device.battery_mv,
        "battery": battery,
        "fw_version": device.fw_version,
        "dropped_events": device.dropped_events,
        # Never heard from is not offline: a new device simply has not been pressed yet.
        "offline": device.last_seen_at is not None and device.last_seen_at < silent_since,
        "low_battery": battery == LOW,
    }


def device_json(device: Device) -> dict:
    return {
        "device_id": device.device_id,
        "serial": device.serial,
        "model": device.model,
        "name": device.name,
        "status": device.status,
        **device_state(device),
        "test_mode": device.test_mode,
        "slots": [slot_json(s) for s in device.slots],
    }


def slot_json(slot: Slot) -> dict:
    return {"slot": slot.index, "product_sku": slot.product_sku, "quantity": slot.quantity,
            "kind": slot.kind, "safety_days": slot.safety_days,
            "confirmed_price_minor": slot.confirmed_price_minor,
            "confirmed_currency": slot.confirmed_currency,
            "min_level": slot.min_level, "target_level": slot.target_level}


def owned(session, device_id: str) -> Device:
    """The household's device or 404: a stranger's device and a malformed id look alike."""
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise NotFound(f"no device {device_id[:16]!r} in this household")
    return devices.owned(session, g.household, device_id)


def configured_slot(device: Device, index: int) -> Slot:
    slot = next((s for s in device.slots if s.index == index), None)
    if slot is None:
        raise NotFound(f"slot {index} of this device is not configured")
    return slot


@bp.get("/devices")
@household_required
def list_devices():
    query = select(Device).where(Device.household_id == g.household.id)
    return page(db(), query, Device.id, "devices", device_json, descending=False)


@bp.post("/devices/claim")
@household_required
def claim_device():
    """Claim by the label's code. Wrong codes count toward the household's lockout.

    The device is looked up by the SHA-256 of the normalized code (an indexed equality
    on the stored hash), never by comparing the code itself character by character:
    how long the lookup takes depends on the hash, and a guess that shares a prefix with
    a real code has an unrelated hash, so timing cannot lead a guesser towards a code.
    Together with 60 random bits per code and the lockout after 5 wrong codes, that is
    what makes guessing hopeless.
    """
    code = CLAIM.parse()["code"]
    if "/claim/" in code:  # the QR code's URL was scanned: the code is its last part
        code = code.rstrip("/").rsplit("/", 1)[-1]
    with accounts.attempt(current_app.config["WRITER_SESSIONS"]) as session:
        household = session.get(Household, g.household.id)
        answer = device_json(accounts.claim_device(session, household, code))
    return answer, 201


@bp.get("/devices/<device_id>")
@household_required
def get_device(device_id: str):
    return device_json(owned(db(), device_id))


@bp.patch("/devices/<device_id>")
@household_required
def update_device(device_id: str):
    changes = DEVICE_CHANGES.parse()
    with writing() as session:
        device = owned(session, device_id)
        if "name" in changes:
            device.name = (changes["name"] or "").strip() or None
        if "test_mode" in changes:
            device.test_mode = changes["test_mode"]
        return device_json(device)


@bp.delete("/devices/<device_id>")
@household_required
def remove_device(device_id: str):
    """Give the device up: it goes back to unclaimed (events refused until claimed again
    with its label's code); pending and awaiting orders from it are cancelled."""
    with writing() as session:
        removal.remove_device(session, owned(session, device_id), g.household.id)
    return "", 204


@bp.put(f"/devices/<device_id>/slots/<{SLOT}:index>")
@household_required
def configure_slot(device_id: str, index: int):
    data = SLOT_BODY.parse()
    with writing() as session:
        device = owned(session, device_id)
        slot = devices.configure_slot(session, device, index, data["product_sku"],
                                      data.get("quantity", 1),
                                      kind=data.get("kind", "button"),
                                      safety_days=data.get("safety_days", 2.0),
                                      agreed_price_minor=data.get("price_minor"),
                                      min_level=data.get("min_level"),
                                      target_level=data.get("target_level"))
        return slot_json(slot)


@bp.get(f"/devices/<device_id>/slots/<{SLOT}:index>/levels")
@household_required
def level_history(device_id: str, index: int):
    """The slot's level reports, newest first."""
    device = owned(db(), device_id)
    configured_slot(device, index)
    query = select(Event).where(Event.device_pk == device.id, Event.slot == index,
                                Event.kind == int(Kind.LEVEL))
    return page(db(), query, Event.id, "readings",
                lambda e: {"id": e.id, "at": iso(e.received_at), "remaining": e.remaining,
                           "battery_mv": e.battery_mv})


@bp.get(f"/devices/<device_id>/slots/<{SLOT}:index>/forecast")
@household_required
def slot_forecast(device_id: str, index: int):
    device = owned(db(), device_id)
    slot = configured_slot(device, index)
    now = utcnow()
    history = sensors.readings(db(), device, slot, now)
    estimate = sensors.forecast_for(db(), device, slot, now=now)
    latest = sensors.latest_reading(history)
    explanation = sensors.explain(estimate, slot, db().get(Product, slot.product_sku),
                                  history, g.household.locale, g.household.timezone)
    return {"left_now": latest.remaining if latest else None,
            "left_now_at": iso(latest.at) if latest else None,
            "explanation": explanation,"device_id": device_id, "slot": index, "product_sku": slot.product_sku,
            "rate_per_day": estimate.rate_per_day, "remaining": estimate.remaining,
            "run_out_at": iso(estimate.run_out_at),
            "lead_time_days": estimate.lead_time_days,
            "safety_stock": estimate.safety_stock, "reorder_point": estimate.reorder_point,
            "should_order": estimate.should_order,
            "last_refill_at": iso(estimate.last_refill_at),
            "readings_used": estimate.readings_used, "reason": estimate.reason}
