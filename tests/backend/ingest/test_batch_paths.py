"""The group commit's bulk paths write exactly what the per-event path writes (issue 18).

Two databases are built the same way, with the same device keys, so the same request
bytes mean the same thing in both. One decides a mixed batch through `BatchWriter`
(per-batch lookups, driver-level statements, orders and audit rows without the ORM,
status rows, histories and lead times once per batch); the other decides the same
events one by one through `decide` with the per-event `Lookups`, each in its own
transaction, which is how the code worked before there was a batch path. The answers
must be byte for byte the same and every row they leave must be the same (timestamps
aside), with no fallback to the per-event path on either database.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import pytest
from sqlalchemy import DateTime, select

from backend import protocol
from backend.accounts.keys import Keyring
from backend.ingest.decide import decide
from backend.ingest.pipeline import BatchWriter
from backend.protocol import Kind, Result, WireEvent
from backend.storage import db
from backend.storage.models import (Batch, Device, DeviceStatus, DeviceUpdate, Event,
                                    Household, Notification, Order, OrderTransition,
                                    OutboxItem, Product, Release, Slot)
from tests import migrated
from tests.conftest import DATABASES

pytestmark = pytest.mark.parametrize("db_url", DATABASES, indirect=True)

SKU = "DETERGENT-1L"
# name: (household, slot kind, status, last_seq)
DEVICES = {
    "first": ("hold", "button", "active", 0),
    "twice": ("hold", "button", "active", 0),
    "open": ("hold", "button", "active", 0),
    "stale": ("hold", "button", "active", 5),
    "retx": ("hold", "button", "active", 0),
    "revoked": ("hold", "button", "revoked", 0),
    "now": ("no-hold", "button", "active", 0),
    "limit-a": ("limited", "button", "active", 0),
    "limit-b": ("limited", "button", "active", 0),
    "sensor-low": ("hold", "sensor", "active", 10),
    "sensor-ok": ("hold", "sensor", "active", 10),
    "sensor-two": ("no-hold", "sensor", "active", 10),
    "beat-low": ("hold", "button", "active", 0),
    "beat-offer": ("no-hold", "button", "active", 0),
    "dear": ("hold", "button", "active", 0),  # confirmed below today's price: consent
}
HOUSEHOLDS = {  # hold window, daily limit, webhook
    "hold": (900, None, None),
    "no-hold": (0, None, "https://household.example/hook"),
    "limited": (900, 1, None),
}


def identity(name: str) -> tuple[bytes, bytes]:
    digest = hashlib.sha256(f"batch-paths:{name}".encode()).digest()
    return digest[:8], hashlib.sha256(digest).digest()  # kid, key


def event(name: str, seq: int, kind: Kind = Kind.PRESS, **fields) -> bytes:
    kid, key = identity(name)
    return protocol.encode_event(key, kid, WireEvent(seq=seq, kind=kind, slot=0, **fields))


def build(url: str, keyring: Keyring) -> None:
    """The same world in every database: households, devices, slots, a sensor's level
    history, an open order, delivered orders to learn the lead time from, a release."""
    now = db.utcnow()
    engine = db.make_engine(url)
    try:
        with db.make_sessionmaker(engine, writer=True)() as session, session.begin():
            batch = Batch(name="paths", model="button", count=len(DEVICES),
                          firmware_version="1.0", created_by="test")
            session.add(batch)
            homes = {}
            for name, (hold, limit, hook) in HOUSEHOLDS.items():
                homes[name] = Household(name=name, hold_window_s=hold,
                                        webhook_url=hook, webhook_secret="s" if hook else None)
                session.add(homes[name])
            session.flush()
            for name, (_hold, limit, _hook) in HOUSEHOLDS.items():
                homes[name].max_orders_per_day = limit  # None at insert means the default
            pks = {}
            for number, (name, (home, kind, status, last_seq)) in enumerate(DEVICES.items()):
                kid, key = identity(name)
                device = Device(device_id=kid.hex(), serial=f"paths-{number:03d}", model="button",
                                batch_id=batch.id, wrapped_key=keyring.wrap(kid.hex(), key),
                                claim_code_sha256=hashlib.sha256(kid).hexdigest(),
                                household_id=homes[home].id, name=name, status=status,
                                last_seq=last_seq, fw_version="1.0", battery_mv=3000)
                session.add(device)
                session.flush()
                pks[name] = device.id
                product = session.get(Product, SKU)
                confirmed = product.price_cents - (1 if name == "dear" else 0)
                session.add(Slot(device_pk=device.id, index=0, product_sku=SKU, quantity=2,
                                 kind=kind, safety_days=2.0, confirmed_price_minor=confirmed,
                                 confirmed_currency=product.currency))
            session.add(Order(household_id=homes["hold"].id, device_pk=pks["open"],
                              slot_index=0, product_sku=SKU, quantity=2, state="pending",
                              created_at=now, updated_at=now, hold_until=now))
            for days in (2.0, 2.5, 3.0, 3.5, 4.0):  # lead time learned from these
                created = now - timedelta(days=20 + days)
                session.add(Order(household_id=homes["hold"].id, device_pk=pks["first"],
                                  slot_index=0, product_sku=SKU, quantity=1, state="delivered",
                                  created_at=created, updated_at=created,
                                  delivered_at=created + timedelta(days=days)))
            history = {"sensor-low": [(10 - i, 1000 - 90 * i) for i in range(10)],
                       "sensor-ok": [(10 - i, 1000 - 5 * i) for i in range(10)],
                       # Two readings: a rate needs the batch's first report of it too.
                       "sensor-two": [(3, 500), (2, 400)]}
            for name, readings in history.items():
                for seq, (days_ago, left) in enumerate(readings, start=1):
                    session.add(Event(device_pk=pks[name], seq=seq, kind=int(Kind.LEVEL),
                                      slot=0, remaining=left, tag=secrets.token_bytes(32),
                                      received_at=now - timedelta(days=days_ago),
                                      result=int(Result.CHANGED)))
            session.add(Release(model="button", version="2.0", build=20, manifest=b"m",
                                manifest_sha256="0" * 64, created_by="test"))
    finally:
        engine.dispose()


def requests() -> tuple[list[bytes], list[bytes]]:
    """(an earlier batch, the mixed batch)."""
    retx = event("retx", 1)
    earlier = [retx, event("stale", 6)]
    mixed = [
        event("first", 1),                      # 2.01, pending (hold window)
        event("twice", 1), event("twice", 2),   # 2.01, then suppressed by it: 2.03
        event("open", 1),                       # suppressed by the open order: 2.03
        event("stale", 3),                      # stale sequence number: 4.09
        retx,                                   # committed in the earlier batch: same answer
        event("now", 1), event("now", 1),       # confirmed at once; retransmitted in-batch
        event("revoked", 1),                    # 4.03
        event("limit-a", 1), event("limit-b", 1),  # daily limit 1: the second is blocked
        event("sensor-low", 11, Kind.LEVEL, remaining=100),   # orders (source sensor)
        event("sensor-ok", 11, Kind.LEVEL, remaining=950),    # 2.04
        event("sensor-two", 11, Kind.LEVEL, remaining=300),   # 3 readings: 2.04
        event("sensor-two", 12, Kind.LEVEL, remaining=200),   # 4 with the one above: 2.01
        event("beat-low", 1, Kind.STATUS, battery_mv=2000, fw="1.0", rssi=-60),
        event("beat-offer", 1, Kind.STATUS, battery_mv=3000, fw="1.0", rssi=-50, wakes=7),
        event("dear", 1),                       # 2.01, awaiting the household's consent
    ]
    return earlier, mixed


EXPECTED = [Result.CREATED, Result.CREATED, Result.VALID, Result.VALID, Result.CONFLICT,
            Result.CREATED, Result.CREATED, Result.CREATED, Result.FORBIDDEN,
            Result.CREATED, Result.CHANGED, Result.CREATED, Result.CHANGED, Result.CHANGED,
            Result.CREATED, Result.CHANGED, Result.CHANGED, Result.CREATED]

TABLES = [Device, Slot, Event, Order, OrderTransition, OutboxItem, Notification,
          DeviceStatus, DeviceUpdate, Release]


def snapshot(url: str) -> dict:
    """Every row of the tables a decision writes, without ids of rows whose insertion
    order may differ and without timestamps."""
    engine = db.make_engine(url)
    out = {}
    try:
        with engine.connect() as conn:
            for model in TABLES:
                table = model.__table__
                columns = [c for c in table.c if not isinstance(c.type, DateTime)
                           and c.name not in ("id", "tag", "wrapped_key")]
                rows = conn.execute(select(*columns)).all()
                out[table.name] = sorted((tuple(map(repr, row)) for row in rows))
    finally:
        engine.dispose()
    return out


def per_event(url: str, keyring: Keyring, batch: list[bytes]) -> list:
    engine = db.make_engine(url)
    try:
        sessions = db.make_sessionmaker(engine, writer=True)
        replies = []
        for request in batch:
            with sessions() as session, session.begin():
                replies.append(decide(session, keyring, request))
        return replies
    finally:
        engine.dispose()


def batched(url: str, keyring: Keyring, batches: list[list[bytes]]) -> tuple[list, int]:
    engine = db.make_engine(url, pre_ping=False)  # as the writer process's
    try:
        writer = BatchWriter(db.make_sessionmaker(engine, writer=True), keyring)
        replies = [writer.commit(batch) for batch in batches]
        return replies, writer.fallbacks
    finally:
        engine.dispose()


@pytest.fixture
def twin(request, db_url, tmp_path):
    """A second database of the same kind, at the head revision."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'twin.db'}"
    else:
        url = request.getfixturevalue("postgres_server").new_database()
    migrated.migrate(db_url)
    migrated.migrate(url)
    return url


def test_a_mixed_batch_writes_what_the_per_event_path_writes(db_url, twin):
    keyring = Keyring(secrets.token_bytes(32))
    build(db_url, keyring)
    build(twin, keyring)
    earlier, mixed = requests()

    (first_replies, replies), fallbacks = batched(db_url, keyring, [earlier, mixed])
    per_event(twin, keyring, earlier)
    expected = per_event(twin, keyring, mixed)

    assert fallbacks == 0, "an ordinary batch must be decided by the batch path"
    assert [r.result for r in first_replies] == [Result.CREATED, Result.CREATED]
    assert [r.result for r in replies] == EXPECTED
    assert [(r.result, r.payload) for r in replies] == [
        (r.result, r.payload) for r in expected], "answers differ from the per-event path"
    got, want = snapshot(db_url), snapshot(twin)
    for table in want:
        assert got[table] == want[table], f"{table} differs from the per-event path"


def test_the_mixed_batch_leaves_the_rows_its_answers_promise(db_url, twin):
    """What the comparison above rests on: the per-event path itself wrote the audit
    trail, outbox and notifications the lifecycle asks for (else two empty tables
    would compare equal)."""
    keyring = Keyring(secrets.token_bytes(32))
    build(db_url, keyring)
    earlier, mixed = requests()
    batched(db_url, keyring, [earlier, mixed])
    engine = db.make_engine(db_url)
    try:
        with engine.connect() as conn:
            transitions = conn.execute(select(OrderTransition.to_state)).scalars().all()
            outbox = sorted(conn.execute(select(OutboxItem.kind)).scalars().all())
            notes = sorted(conn.execute(select(Notification.kind)).scalars().all())
            statuses = conn.execute(select(DeviceStatus.rssi_dbm)).scalars().all()
            sources = sorted(conn.execute(select(Order.source).where(
                Order.state.in_(["pending", "confirmed"]))).scalars().all())
    finally:
        engine.dispose()
    # Orders: first, twice, retx, stale(6) and 2 sensors, limit-a, now (confirmed).
    assert transitions.count("pending") == 8  # built orders have none
    assert transitions.count("confirmed") == 2  # "now" and "sensor-two": no hold window
    assert outbox == ["household.webhook"] * 2 + ["order.place"] * 2
    assert transitions.count("awaiting_consent") == 1  # "dear": placed only with consent
    assert notes == ["low_battery", "order_awaiting_consent", "order_blocked",
                     "order_placed", "order_placed"]
    assert sorted(statuses) == [-60, -50]
    assert sources == ["press"] * 7 + ["sensor"] * 2
