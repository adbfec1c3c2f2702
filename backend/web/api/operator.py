"""Operators (manufacturer staff): provisioning batches, the fleet, revocation.

Only tokens of users with role "operator" get in; a household's token gets 403
Forbidden. The paths are public in the OpenAPI document anyway, so a 404 would hide
nothing, and a 403 tells an integrator plainly that the token is the problem.
Operators see a device's health and provisioning, never whose it is or what it orders.
"""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import case, func, select

from backend.accounts import devices
from backend.errors import Conflict, NotFound
from backend.orders import catalogue
from backend.storage.models import Batch, Device, Product
from backend.web.api.common import ID, db, iso, operator_required, page, writing
from backend.web.api.devices import DEVICE_ID_PATTERN, device_state
from backend.web.api.validation import (
    INT32_MAX,
    Body,
    Field,
    query_int,
    query_text,
    query_time,
)

bp = Blueprint("operator", __name__)

DEVICE_STATUSES = ("active", "revoked")


def batch_json(batch: Batch, made: int | None, claimed: int | None,
               revoked: int | None) -> dict:
    return {"id": batch.id, "name": batch.name, "model": batch.model, "count": batch.count,
            "firmware_version": batch.firmware_version, "board": batch.board,
            "firmware_sha256": batch.firmware_sha256, "created_by": batch.created_by,
            "created_at": iso(batch.created_at), "devices": made or 0,
            "claimed": claimed or 0, "revoked": revoked or 0}


def fleet_json(device: Device) -> dict:
    return {"device_id": device.device_id, "serial": device.serial, "model": device.model,
            "batch_id": device.batch_id, "status": device.status,
            "claimed": device.household_id is not None, **device_state(device),
            "created_at": iso(device.created_at), "flashed_at": iso(device.flashed_at),
            "flashed_firmware": device.flashed_firmware,
            "key_rotated_at": iso(device.key_rotated_at),
            "revoked_at": iso(device.revoked_at)}


def _batches():
    counts = (select(Device.batch_id, func.count().label("made"),
                     func.count(Device.household_id).label("claimed"),
                     func.sum(case((Device.status == "revoked", 1), else_=0)).label("revoked"))
              .group_by(Device.batch_id).subquery())
    return (select(Batch, counts.c.made, counts.c.claimed, counts.c.revoked)
            .outerjoin(counts, counts.c.batch_id == Batch.id))


@bp.get("/operator/batches")
@operator_required
def list_batches():
    return page(db(), _batches(), Batch.id, "batches", batch_json)


@bp.get(f"/operator/batches/<{ID}:batch_id>")
@operator_required
def get_batch(batch_id: int):
    row = db().execute(_batches().where(Batch.id == batch_id)).one_or_none()
    if row is None:
        raise NotFound(f"no batch {batch_id}")
    return batch_json(*row)


@bp.get("/operator/devices")
@operator_required
def fleet():
    """The fleet, filtered; all filters combine (AND)."""
    query = select(Device)
    if (model := query_text("model", 50)) is not None:
        query = query.where(Device.model == model)
    if (fw := query_text("fw_version", 50)) is not None:
        query = query.where(Device.fw_version == fw)
    if (status := query_text("status", 20, DEVICE_STATUSES)) is not None:
        query = query.where(Device.status == status)
    if (batch_id := query_int("batch_id", None, 1, INT32_MAX)) is not None:
        query = query.where(Device.batch_id == batch_id)
    if (before := query_time("last_seen_before")) is not None:
        # As on the fleet page: a device never seen counts as seen before any date.
        query = query.where((Device.last_seen_at < before) | Device.last_seen_at.is_(None))
    if (after := query_time("last_seen_after")) is not None:
        query = query.where(Device.last_seen_at >= after)
    if (below := query_int("battery_below", None, 0, 100_000)) is not None:
        query = query.where(Device.battery_mv < below)
    return page(db(), query, Device.id, "devices", fleet_json, descending=False)


def _device(session, device_id: str) -> Device:
    device = None
    if DEVICE_ID_PATTERN.fullmatch(device_id):
        device = session.scalars(select(Device).where(Device.device_id == device_id)
                                 ).one_or_none()
    if device is None:
        raise NotFound(f"no device {device_id[:16]!r}")
    return device


@bp.get("/operator/devices/<device_id>")
@operator_required
def fleet_device(device_id: str):
    return fleet_json(_device(db(), device_id))


@bp.post("/operator/devices/<device_id>/revoke")
@operator_required
def revoke(device_id: str):
    """Refuse the device's events from now on (as `replenish provision revoke`).
    Revoking a revoked device changes nothing and answers the same."""
    with writing() as session:
        device = _device(session, device_id)
        devices.revoke(session, device)
        return fleet_json(device)


# -- the catalogue ------------------------------------------------------------------------

def _product_fields(required: bool) -> dict:
    return {
        "name": Field(str, "What the product is called, without the pack size "
                      "('Coffee beans').", required=required, min_length=1, max_length=200),
        "brand": Field(str, "The brand; null for none.", nullable=True, max_length=100),
        "unit": Field(str, "The unit amounts are in (sensor readings too).",
                      required=required, choices=catalogue.display.UNITS),
        "package_amount": Field(int, "Units in one pack (1000 for a 1 kg pack in g).",
                                required=required, minimum=1, maximum=catalogue.PACK_MAX),
        "currency": Field(str, "ISO 4217 code of the price, e.g. EUR.", required=required,
                          min_length=3, max_length=3),
        "price_minor": Field(int, "Price of one pack in minor units of the currency "
                             "(3798 for EUR 37.98).", required=required, minimum=0,
                             maximum=INT32_MAX),
        "gtin": Field(str, "GTIN-8/12/13/14 with its check digit; null for none.",
                      nullable=True, max_length=14),
        "image_url": Field(str, "http(s) URL of a picture; null for none.", nullable=True,
                           max_length=500),
        "available": Field(bool, "Can be ordered now (orders for an unavailable product "
                           "wait for the household)."),
        "default_lead_days": Field(float, "Days from order to delivery until deliveries "
                                   "teach better.", minimum=0,
                                   maximum=catalogue.LEAD_DAYS_MAX),
    }


CSV_MAX = 80_000
NEW_PRODUCT = Body({"sku": Field(str, "Stock-keeping unit: A-Z, 0-9, '.', '_', '-'.",
                                 required=True, min_length=1, max_length=100),
                    **_product_fields(True)}, noun="product field",
                   example={"sku": "TEA-GREEN-100", "name": "Green tea", "brand": "Leaf & Co",
                            "unit": "pcs", "package_amount": 100, "currency": "EUR",
                            "price_minor": 499})
PRODUCT_CHANGES = Body(_product_fields(False), noun="product field",
                       example={"price_minor": 2099, "available": True})
CSV_IMPORT = Body({"csv": Field(str, "CSV text with a header row: "
                                + ", ".join(catalogue.CSV_COLUMNS) + " (sku, name, "
                                "pack_size, unit, currency and price required; price as a "
                                "decimal, e.g. 37.98). At most 80,000 characters (with "
                                "JSON escapes still under the app's 1 MiB body limit); "
                                "larger catalogues: `replenish catalogue import` or "
                                "several requests.", required=True, min_length=1,
                                max_length=CSV_MAX, multiline=True)},
                  example={"csv": "sku,name,pack_size,unit,currency,price\n"
                                  "TEA-GREEN-100,Green tea,100,pcs,EUR,4.99\n"})


@bp.post("/operator/products")
@operator_required
def add_product():
    data = NEW_PRODUCT.parse()
    with writing() as session:
        if session.get(Product, data["sku"]) is not None:
            raise Conflict(f"product {data['sku']} exists; PATCH it")
        product, _ = catalogue.upsert(session, data)
        return catalogue.product_json(product), 201


@bp.patch("/operator/products/<sku>")
@operator_required
def change_product(sku: str):
    data = PRODUCT_CHANGES.parse()
    if not catalogue.SKU.fullmatch(sku):
        raise NotFound(f"no product {sku[:100]!r} in the catalogue")
    with writing() as session:
        product, _ = catalogue.upsert(session, {"sku": sku, **data}, create=False)
        return catalogue.product_json(product)


@bp.post("/operator/products/import")
@operator_required
def import_products():
    """Add or change many products from CSV (all or nothing)."""
    text = CSV_IMPORT.parse()["csv"]
    with writing() as session:
        added, changed = catalogue.import_csv(session, text)
    return {"added": added, "changed": changed}
