"""A household's devices: list with state and warnings, claim (typed or QR), rename,
and what each slot reorders."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from backend.accounts import devices as device_service
from backend.accounts import users as accounts
from backend.errors import NotFound, ReplenishError
from backend.orders import removal
from backend.storage.db import utcnow
from backend.storage.models import Device, Product
from backend.web.device_health import LOW, battery_reading, health_of
from backend.web.pages import (
    db,
    form_error,
    household_required,
    my_household,
    paginate,
    whole_number,
    writing,
)

bp = Blueprint("devices", __name__)

log = logging.getLogger(__name__)

NAME_MAX = 200
QUANTITY_MAX = 1000


@dataclass(frozen=True)
class DeviceState:
    never_seen: bool  # claimed but not heard from yet: a note, not a warning
    offline: bool
    low_battery: bool


def state_of(device: Device) -> DeviceState:
    """Warnings as the order worker sees them (REPLENISH_OFFLINE_AFTER_S, _LOW_BATTERY_MV)."""
    settings = current_app.config["SETTINGS"]
    limit = utcnow() - timedelta(seconds=settings.offline_after_s)
    active = device.status == "active"
    offline = device.last_seen_at is not None and device.last_seen_at < limit
    low = battery_reading(device.battery_mv, settings.low_battery_mv) == LOW
    return DeviceState(never_seen=active and device.last_seen_at is None,
                       offline=active and offline, low_battery=low)


def owned(device_id: str, session=None) -> Device:
    """The logged-in household's device, or NotFound (also for a stranger's)."""
    return device_service.owned(session or db(), my_household(), device_id)


def catalogue() -> list[Product]:
    return list(db().scalars(select(Product).order_by(Product.name)))


def health(devices: list[Device]) -> dict:
    return health_of(db(), devices, current_app.config["SETTINGS"].low_battery_mv)


def device_page(found: Device) -> dict:
    products = catalogue()
    return {"device": found, "state": state_of(found), "products": products,
            "health": health([found])[found.id],
            "products_by_sku": {p.sku: p for p in products}, "household": my_household()}


@bp.get("/devices")
@household_required
def devices():
    page = paginate(select(Device).where(Device.household_id == g.user.household_id)
                    .options(selectinload(Device.slots)).order_by(Device.id))
    return render_template("household/devices.html", page=page, state_of=state_of,
                           health=health(page.items),
                           products_by_sku={p.sku: p for p in catalogue()},
                           removed=request.args.get("removed"))


@bp.route("/devices/claim", methods=["GET", "POST"])
@household_required
def claim():
    if request.method == "GET":
        return render_template("household/claim.html", code="")
    code = request.form.get("code", "")
    try:
        with accounts.attempt(current_app.config["WRITER_SESSIONS"]) as s:
            device = accounts.claim_device(s, my_household(), code)
            device_id = device.device_id
    except ReplenishError as err:
        return form_error("household/claim.html", err, code=code)
    return redirect(url_for("pages.devices.device", device_id=device_id, claimed=1))


@bp.get("/claim/<code>")
@household_required
def claim_from_qr(code: str):
    """The URL in the label's QR code: after log-in, confirm with one press (a GET
    never changes anything)."""
    return render_template("household/claim.html", code=code[:40], from_qr=True)


@bp.get("/devices/<device_id>")
@household_required
def device(device_id: str):
    found = owned(device_id)
    return render_template("household/device.html", **device_page(found),
                           claimed=request.args.get("claimed"))


@bp.post("/devices/<device_id>/name")
@household_required
def rename(device_id: str):
    name = request.form.get("name", "").strip()
    try:
        if len(name) > NAME_MAX:
            raise ReplenishError(f"the name must be at most {NAME_MAX} characters")
        if not name.isprintable():
            raise ReplenishError("the name must not contain control characters")
        with writing() as s:
            owned(device_id, s).name = name or None
    except ReplenishError as err:
        return form_error("household/device.html", err, **device_page(owned(device_id)))
    return redirect(url_for("pages.devices.device", device_id=device_id))


def _whole(text: str, what: str, low: int, high: int) -> int:
    number = whole_number(text)
    if number is None or not low <= number <= high:
        raise ReplenishError(f"{what} must be a whole number from {low} to {high}")
    return number


def _number(text: str, what: str, low: float, high: float) -> float:
    try:
        value = float((text or "").strip())
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also refuses NaN
        raise ReplenishError(f"{what} must be a number from {low:g} to {high:g}")
    return value


@bp.post("/devices/<device_id>/remove")
@household_required
def remove(device_id: str):
    """Give the device up (a ticked box confirms): back to unclaimed."""
    try:
        if request.form.get("confirm") != "on":
            raise ReplenishError("tick the box to confirm removing the device")
        with writing() as s:
            cancelled = removal.remove_device(s, owned(device_id, s), g.user.household_id)
    except NotFound:
        raise
    except ReplenishError as err:
        return form_error("household/device.html", err, **device_page(owned(device_id)))
    log.info("household %d removed device %s (%d orders cancelled)", g.user.household_id,
             device_id, cancelled)
    return redirect(url_for("pages.devices.devices", removed=device_id))


@bp.post("/devices/<device_id>/slots")
@household_required
def configure(device_id: str):
    form = request.form
    try:
        if owned(device_id).status != "active":
            raise ReplenishError("this device is revoked: it can no longer be set up")
        index = _whole(form.get("slot", "0"), "the slot", 0, 15)
        quantity = _whole(form.get("quantity", ""), "the quantity", 1, QUANTITY_MAX)
        kind = form.get("kind", "button")
        if kind not in device_service.SLOT_KINDS:
            raise ReplenishError("choose button or sensor")
        safety = _number(form.get("safety_days", "2") or "2", "the safety stock (days)", 0, 60)
        # The option carries the price it showed: saving confirms that price, and if the
        # catalogue's changed meanwhile nothing is saved (the page shows the new one).
        sku, _, shown = form.get("product_sku", "").partition("|")
        if db().get(Product, sku) is None:
            raise ReplenishError("choose a product from the list")
        levels = {name: (None if not (form.get(name) or "").strip() else
                         _whole(form.get(name), what, low, 2**31 - 1))
                  for name, what, low in (("min_level", "the minimum level", 0),
                                          ("target_level", "the refill level", 1))}
        with writing() as s:
            device_service.configure_slot(s, owned(device_id, s), index, sku, quantity,
                                          kind=kind, safety_days=safety,
                                          agreed_price_minor=whole_number(shown),
                                          **levels)
    except ReplenishError as err:
        return form_error("household/device.html", err, **device_page(owned(device_id)))
    log.info("household %d configured device %s slot %d", g.user.household_id,
             device_id, index)
    return redirect(url_for("pages.devices.device", device_id=device_id))
