"""Provision a benchmark fleet fast: N claimed devices, slot 0 configured, in bulk.

The same rows `provision_batch` + `devices.claim` + `devices.configure_slot` write
(keys wrapped under the KEK by `Keyring.wrap`), but inserted through SQLAlchemy Core
in chunks and without bundle files, so 100,000 devices take seconds. The household
keeps its orders in a long hold window and has no daily limit: a device's first press
creates an order (2.01), its next presses are suppressed by that open order (2.03).
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import insert, select

from backend.accounts.keys import Keyring
from backend.storage import db
from backend.storage.models import Batch, Device, Household, Product, Slot
from devtools.bench.loadgen import Device as LoadDevice

PRODUCT = "DETERGENT-1L"  # in the catalogue from the migrations
_CHUNK = 5000


def provision_fleet(db_url: str, kek: bytes, count: int, name: str = "bench") -> list[LoadDevice]:
    db.upgrade(db_url)
    keyring = Keyring(kek)
    engine = db.make_engine(db_url)
    now = db.utcnow()
    fleet: list[LoadDevice] = []
    try:
        with engine.begin() as conn:
            batch_id = conn.execute(insert(Batch).values(
                name=f"{name}-{secrets.token_hex(3)}", model="button", count=count,
                firmware_version="bench", created_by="bench")).inserted_primary_key[0]
            household_id = conn.execute(insert(Household).values(
                name="Bench household", hold_window_s=86400, max_orders_per_day=None,
                allow_multiple_open=False)).inserted_primary_key[0]
            for start in range(0, count, _CHUNK):
                rows = []
                for number in range(start, min(count, start + _CHUNK)):
                    kid, key = secrets.token_bytes(8), secrets.token_bytes(32)
                    device_id = kid.hex()
                    fleet.append(LoadDevice(kid, key))
                    rows.append(dict(
                        device_id=device_id, serial=f"{name}-{batch_id}-{number:06d}",
                        model="button", batch_id=batch_id,
                        wrapped_key=keyring.wrap(device_id, key),
                        claim_code_sha256=hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
                        household_id=household_id, status="active", last_seq=0,
                        created_at=now, claimed_at=now, test_mode=False,
                        low_battery_notified=False, offline_notified=False))
                conn.execute(insert(Device), rows)
            ids = conn.execute(select(Device.id).where(Device.batch_id == batch_id)
                               .order_by(Device.id)).scalars().all()
            # As configure_slot records it: the price shown is the price confirmed, so
            # presses are placed (not held for consent, docs/orders.md).
            price, currency = conn.execute(select(Product.price_cents, Product.currency)
                                           .where(Product.sku == PRODUCT)).one()
            for start in range(0, len(ids), _CHUNK):
                conn.execute(insert(Slot), [
                    dict(device_pk=pk, index=0, product_sku=PRODUCT, quantity=1,
                         kind="button", safety_days=2.0, confirmed_price_minor=price,
                         confirmed_currency=currency)
                    for pk in ids[start:start + _CHUNK]])
    finally:
        engine.dispose()
    return fleet
