"""A fleet's real day: many claimed devices, each event from a different one, a mix by kind.

Issue 18. A real fleet is not 100 buttons pressed again and again: most events are
sensor level reports and status heartbeats from devices that speak a few times a day,
a few are presses, about one in a hundred creates an order. Here every device sends
exactly one event in the whole run (no device repeats across phases), and what that
event is decides its answer:

    level       60 %  a sensor slot's level report (the forecast runs)          2.04
    heartbeat   30 %  a status heartbeat (status history, update offer)         2.04
    suppressed   9 %  a press on a slot whose order is still open               2.03
    first        1 %  a press on a slot with no open order: a new order         2.01

`provision_fleet_day` writes the devices in bulk (households of `HOUSEHOLD_SIZE`,
slots, the open orders the suppressed presses find, and delivered orders of the
product so the lead-time estimate has history to learn from) and returns one pool of
load devices per kind; `FleetWorkload` draws from the pools, each device once.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections import deque
from datetime import timedelta

from sqlalchemy import insert, select

from backend import protocol
from backend.accounts.keys import Keyring
from backend.protocol import Kind, Result, WireEvent
from backend.storage import db
from backend.storage.models import (Batch, Device, Household, Order, OrderTransition, Product,
                                    Slot)
from devtools.bench.fleet import PRODUCT
from devtools.bench.loadgen import Device as LoadDevice
from devtools.bench.loadgen import Request, Workload

KINDS = ("level", "heartbeat", "suppressed", "first")
MIX = {"level": 60, "heartbeat": 30, "suppressed": 9, "first": 1}  # per 100 events
EXPECTED = {"level": int(Result.CHANGED), "heartbeat": int(Result.CHANGED),
            "suppressed": int(Result.VALID), "first": int(Result.CREATED)}
HOUSEHOLD_SIZE = 10
DELIVERED_PER_DEVICE = 0.05  # delivered orders of the product, per device (lead time)
_CHUNK = 5000


def split(count: int, mixed_share: float = 0.4) -> dict[str, int]:
    """How many devices of each kind: `mixed_share` of the fleet in the mix's
    proportions, the rest in equal parts so that each kind can also run alone."""
    mixed = int(count * mixed_share)
    alone = (count - mixed) // len(KINDS)
    return {kind: mixed * MIX[kind] // 100 + alone for kind in KINDS}


def provision_fleet_day(db_url: str, kek: bytes, count: int, name: str = "fleetday",
                        seed: int = 18, mixed_share: float = 0.4) -> dict[str, list[LoadDevice]]:
    """`count` claimed devices, split by kind (`split`); returns the load devices per kind."""
    db.upgrade(db_url)
    keyring = Keyring(kek)
    engine = db.make_engine(db_url)
    now = db.utcnow()
    rng = random.Random(seed)
    sizes = split(count, mixed_share)
    roles = [kind for kind in KINDS for _ in range(sizes[kind])]
    rng.shuffle(roles)  # households mix kinds, as real ones do
    pools: dict[str, list[LoadDevice]] = {kind: [] for kind in KINDS}
    try:
        with engine.begin() as conn:
            batch_id = conn.execute(insert(Batch).values(
                name=f"{name}-{secrets.token_hex(3)}", model="button", count=len(roles),
                firmware_version="bench", created_by="bench")).inserted_primary_key[0]
            households = []
            for start in range(0, len(roles), HOUSEHOLD_SIZE * _CHUNK):
                n = min(_CHUNK, -(-(len(roles) - start) // HOUSEHOLD_SIZE))
                conn.execute(insert(Household), [dict(
                    name="Bench household", hold_window_s=86400, max_orders_per_day=None,
                    allow_multiple_open=False) for _ in range(n)])
            households = conn.execute(select(Household.id).order_by(Household.id)
                                      .limit(-(-len(roles) // HOUSEHOLD_SIZE))).scalars().all()
            kinds_by_serial = {}
            for start in range(0, len(roles), _CHUNK):
                rows = []
                for number in range(start, min(len(roles), start + _CHUNK)):
                    kid, key = secrets.token_bytes(8), secrets.token_bytes(32)
                    device_id = kid.hex()
                    serial = f"{name}-{batch_id}-{number:07d}"
                    kinds_by_serial[serial] = roles[number]
                    pools[roles[number]].append(LoadDevice(kid, key))
                    rows.append(dict(
                        device_id=device_id, serial=serial, model="button", batch_id=batch_id,
                        wrapped_key=keyring.wrap(device_id, key),
                        claim_code_sha256=hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
                        household_id=households[number // HOUSEHOLD_SIZE], status="active",
                        last_seq=0, created_at=now, claimed_at=now, test_mode=False,
                        low_battery_notified=False, offline_notified=False, fw_version="bench"))
                conn.execute(insert(Device), rows)
            devices = conn.execute(select(Device.id, Device.serial, Device.household_id)
                                   .where(Device.batch_id == batch_id).order_by(Device.id)).all()
            slots, orders, owners = [], [], []
            # Slots chosen at today's price, as configure_slot records it: first presses
            # are placed, not held for consent (backend/orders/consent.py).
            price, currency = conn.execute(select(Product.price_cents, Product.currency)
                                           .where(Product.sku == PRODUCT)).one()
            for pk, serial, household_id in devices:
                kind = kinds_by_serial[serial]
                slots.append(dict(device_pk=pk, index=0, product_sku=PRODUCT, quantity=1,
                                  kind="sensor" if kind == "level" else "button",
                                  safety_days=2.0, confirmed_price_minor=price,
                                  confirmed_currency=currency))
                if kind == "suppressed":  # its open order, as a first press left it
                    orders.append(_order(pk, household_id, "pending", now))
                elif kind == "heartbeat" and rng.random() < DELIVERED_PER_DEVICE * 4:
                    owners.append((pk, household_id))
            for start in range(0, len(slots), _CHUNK):
                conn.execute(insert(Slot), slots[start:start + _CHUNK])
            delivered = int(len(roles) * DELIVERED_PER_DEVICE)
            for i in range(min(delivered, len(owners))):
                pk, household_id = owners[i]
                created = now - timedelta(days=rng.uniform(5, 50))
                orders.append(_order(pk, household_id, "delivered", created,
                                     delivered=created + timedelta(days=rng.uniform(1.5, 4))))
            for start in range(0, len(orders), _CHUNK):
                conn.execute(insert(Order), orders[start:start + _CHUNK])
            ids = conn.execute(select(Order.id, Order.state, Order.created_at)
                               .order_by(Order.id)).all()
            transitions = [dict(order_id=oid, from_state=None, to_state="pending",
                                at=created, actor="bench") for oid, _state, created in ids]
            for start in range(0, len(transitions), _CHUNK):
                conn.execute(insert(OrderTransition), transitions[start:start + _CHUNK])
    finally:
        engine.dispose()
    return pools


def _order(device_pk: int, household_id: int, state: str, created, delivered=None) -> dict:
    return dict(household_id=household_id, device_pk=device_pk, slot_index=0,
                product_sku=PRODUCT, quantity=1, state=state, created_at=created,
                updated_at=delivered or created, source="press", is_test=False,
                unit_price_cents=0, total_cents=0,
                hold_until=created + timedelta(days=1), delivered_at=delivered,
                placed_at=created if delivered else None)


def wire_event(kind: str, seq: int, rng: random.Random) -> WireEvent:
    if kind == "level":
        return WireEvent(seq=seq, kind=Kind.LEVEL, slot=0, remaining=rng.randint(400, 900),
                         battery_mv=rng.randint(2900, 3300))
    if kind == "heartbeat":
        return WireEvent(seq=seq, kind=Kind.STATUS, slot=0, battery_mv=rng.randint(2900, 3300),
                         fw="bench", rssi=-rng.randint(40, 80), queued=0, dropped=0,
                         wakes=rng.randint(1, 10_000))
    return WireEvent(seq=seq, kind=Kind.PRESS, slot=0)


def encode(device: LoadDevice, kind: str, rng: random.Random) -> bytes:
    seq = device.next_seq
    device.next_seq += 1
    return protocol.encode_event(device.key, device.kid, wire_event(kind, seq, rng))


class FleetWorkload(Workload):
    """Each device sends one event in the whole run, drawn from per-kind pools in the
    proportions of `mix` (by default the fleet day's; one kind alone with {kind: 1}).

    Every request carries the answer code its kind must get; the load generator counts
    any other code, or a MAC that does not verify, in `errors`. Devices taken by one
    workload are gone from the pools: no device repeats across phases or workloads."""

    def __init__(self, pools: dict[str, list[LoadDevice]], mix: dict[str, int] | None = None,
                 seed: int = 18):
        self._pools = pools
        self._rng = random.Random(seed)
        self._pattern = [kind for kind, share in (mix or MIX).items() for _ in range(share)]
        self._position = len(self._pattern)
        self.kinds: list[str] = []
        super().__init__([], verify=True)
        self.exhausted_kind: str | None = None

    def _next_kind(self) -> str:
        if self._position >= len(self._pattern):
            self._rng.shuffle(self._pattern)
            self._position = 0
        kind = self._pattern[self._position]
        self._position += 1
        return kind

    def prepare(self, total: int) -> None:
        """Encode `total` more events, one per device not used before."""
        for _ in range(total):
            kind = self._next_kind()
            pool = self._pools[kind]
            if not pool:
                self.exhausted_kind = kind
                return
            device = pool.pop()
            index = len(self.devices)
            self.devices.append(device)
            self.kinds.append(kind)
            payload = encode(device, kind, self._rng)
            self.queues.append(deque([Request(index, device.next_seq - 1, payload,
                                              payload[-protocol.TAG_BYTES:], EXPECTED[kind])]))

    def by_kind(self, requests) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        for r in requests:
            counts[self.kinds[r.device]] += 1
        return counts
