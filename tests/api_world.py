"""A populated database and the real Flask app on it, for API tests that call the app
in-process (WSGI): two households with accounts, devices, orders, notifications and level
history, a third household owning nothing, and an operator."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from backend.accounts import devices, tokens
from backend.accounts import users as accounts
from backend.accounts.keys import load_keyring
from backend.config import Settings
from backend.orders import lifecycle as orders
from backend.orders import notifications
from backend.protocol import Kind
from backend.storage import db
from backend.storage.models import Device, Event, Household
from backend.web import create_app
from provisioning.batch import provision_batch
from tests import migrated

PASSWORD = "correct horse battery"


@dataclass
class Party:
    """A household account and what it owns (ids as the API shows them)."""

    email: str
    token: str
    household_id: int
    device_ids: list[str] = field(default_factory=list)
    # [pending, confirmed, awaiting consent (to confirm), awaiting consent (to decline)]
    order_ids: list[int] = field(default_factory=list)
    notification_ids: list[int] = field(default_factory=list)
    claim_codes: list[str] = field(default_factory=list)


@dataclass
class ApiWorld:
    app: Flask
    sessions: sessionmaker
    settings: Settings
    owner: Party
    other: Party  # a second household with the same kinds of things
    stranger: Party  # a household owning nothing
    operator_token: str
    batch_id: int
    unclaimed_device_id: str
    unclaimed_code: str

    def headers(self, token: str) -> dict:
        return {"Authorization": f"Bearer {token}"}


def _party(session, made, name: str) -> Party:
    email = f"{name.lower()}-{secrets.token_hex(3)}@example.org"
    user = accounts.register(session, email, PASSWORD, name)
    household = session.get(Household, user.household_id)
    household.max_orders_per_day = None
    party = Party(email, tokens.issue_for_user(session, user), household.id)
    now = db.utcnow()
    for provisioned in made:
        device = devices.claim(session, household, provisioned.claim_code)
        devices.configure_slot(session, device, 0, "DETERGENT-1L", 2)
        devices.configure_slot(session, device, 1, "COFFEE-BEANS-1KG", 1, kind="sensor")
        device.last_seen_at, device.battery_mv, device.fw_version = now, 2900, "1.0.0"
        party.device_ids.append(device.device_id)
        party.claim_codes.append(provisioned.claim_code)
        for hours in range(8):
            session.add(Event(device_pk=device.id, seq=hours + 1, kind=int(Kind.LEVEL),
                              slot=1, remaining=900 - 40 * hours, battery_mv=2900,
                              tag=secrets.token_bytes(32), result=68,
                              received_at=now - timedelta(hours=8 - hours)))
        for hold in (900, 0):  # one pending (cancellable), one confirmed
            order = orders.create(session, actor=f"device:{device.device_id}",
                                  hold_window_s=hold, household_id=household.id,
                                  device_pk=device.id, slot_index=0,
                                  product_sku="DETERGENT-1L", quantity=2,
                                  unit_price_cents=899, total_cents=1798)
            party.order_ids.append(order.id)
        for _ in range(2):  # waiting for the household (the price rose since it chose)
            order = orders.create(session, actor=f"device:{device.device_id}",
                                  hold_window_s=0, household_id=household.id,
                                  device_pk=device.id, slot_index=0,
                                  product_sku="DETERGENT-1L", quantity=2,
                                  unit_price_cents=899, total_cents=1798,
                                  product_name="Laundry detergent", pack_amount=1000,
                                  pack_unit="ml", currency="EUR",
                                  confirmed_price_minor=799,
                                  consent_reason="price_increased")
            party.order_ids.append(order.id)
        note = notifications.notify(session, household.id, "low_battery",
                                    f"{device.device_id}: battery low", device_pk=device.id)
        party.notification_ids.append(note.id)
    session.flush()
    return party


def build(tmp: Path, url: str) -> ApiWorld:
    """A new database at `url`, populated, and the app on it (called in-process)."""
    migrated.migrate(url)
    settings = Settings(data_dir=tmp, database_url=url, kek_hex=secrets.token_hex(32))
    engine = db.make_engine(url)
    sessions = db.make_sessionmaker(engine)
    writer = db.make_sessionmaker(engine, writer=True)
    app = create_app(sessions, writer, settings)
    return populate(app, sessions, writer, load_keyring(settings, create=True), tmp)


def populate(app: Flask, sessions: sessionmaker, writer: sessionmaker, keyring,
             tmp: Path) -> ApiWorld:
    """The parties and the operator in the database behind `app` (e.g. a running backend)."""
    with writer() as session, session.begin():
        made = provision_batch(session, keyring, model="button", count=3, out=tmp / "bundles",
                               coap_host="127.0.0.1", coap_port=5683, labels=False,
                               name=f"api-{secrets.token_hex(3)}")
        owner = _party(session, made[0:1], "Owners")
        other = _party(session, made[1:2], "Others")
        stranger = _party(session, [], "Strangers")
        operator = accounts.create_operator(session, f"ops-{secrets.token_hex(3)}@example.org",
                                            PASSWORD)
        operator_token = tokens.issue_for_user(session, operator)
        batch_id = session.scalar(select(Device.batch_id).where(
            Device.device_id == made[0].device_id))
    return ApiWorld(app, sessions, app.config["SETTINGS"], owner, other, stranger,
                    operator_token, batch_id, made[2].device_id, made[2].claim_code)
