"""SQLAlchemy 2.x models. Schema changes go through Alembic (backend/storage/migrations)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from backend.storage.db import utcnow


class Base(DeclarativeBase):
    pass


class Household(Base):
    __tablename__ = "households"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Order policies (docs/orders.md): the hold window lets a press be cancelled.
    hold_window_s: Mapped[int] = mapped_column(Integer, default=900, server_default="900")
    allow_multiple_open: Mapped[bool] = mapped_column(Boolean, default=False,
                                                      server_default=false())
    max_orders_per_day: Mapped[int | None] = mapped_column(Integer, default=5)
    monthly_limit_cents: Mapped[int | None] = mapped_column(Integer)
    # Optional household webhook for notifications; the secret is never returned.
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    # How prices, amounts and times read on its pages and notifications (Babel locale,
    # IANA time zone), and how far above the price confirmed for a slot an order may go
    # without asking again (percent; 0: not a cent more).
    locale: Mapped[str] = mapped_column(String(35), default="en", server_default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    price_tolerance_pct: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    devices: Mapped[list[Device]] = relationship(back_populates="household")


class User(Base):
    """A person who logs in to the web app: a household member or an operator.

    `role` is "household" (sees only `household_id`'s devices, orders, notifications)
    or "operator" (manufacturer staff: batches, fleet, revocation; no household).
    Passwords are stored only as a standard salted hash (backend/accounts/users.py).
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-case
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="household",
                                      server_default="household")
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)


class AuthThrottle(Base):
    """Failed attempts per key ("login:<email>", "claim:<household id>", ...) and the
    lockout they lead to. Kept in the database so every web process shares it."""

    __tablename__ = "auth_throttle"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)


class ApiToken(Base):
    """A bearer token for the JSON API. Only its SHA-256 is stored.

    A household token has `household_id`; an operator token has `user_id` of an
    operator and no household. Tokens issued at login carry the user.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Refused from then on (REPLENISH_API_TOKEN_DAYS after issue; backend/accounts/tokens.py).
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)


class Batch(Base):
    """A provisioning run: who made which devices, when, for which firmware."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    model: Mapped[str] = mapped_column(String(50))
    count: Mapped[int] = mapped_column(Integer)
    firmware_version: Mapped[str] = mapped_column(String(50))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Board profile (hardware/boards/<board>.json) and the SHA-256 over the compiled
    # firmware tree the batch was built for (provisioning/bundle.py).
    board: Mapped[str | None] = mapped_column(String(50))
    firmware_sha256: Mapped[str | None] = mapped_column(String(64))


class Device(Base):
    __tablename__ = "devices"
    # No index on last_seen_at (or last_seq): every event writes both, and on PostgreSQL
    # that write stays in place only while no indexed column changes (migration 0012).

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(16), unique=True)  # hex of the COSE kid
    serial: Mapped[str] = mapped_column(String(100), unique=True)
    model: Mapped[str] = mapped_column(String(50))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    # Device key wrapped under the key-encryption key (backend/accounts/keys.py); never plain.
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    claim_code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | revoked
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime)
    battery_mv: Mapped[int | None] = mapped_column(Integer)
    fw_version: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    test_mode: Mapped[bool] = mapped_column(Boolean, default=False,  # orders never leave
                                            server_default=false())
    low_battery_notified: Mapped[bool] = mapped_column(Boolean, default=False,
                                                       server_default=false())
    dropped_events: Mapped[int | None] = mapped_column(Integer)  # reported by the device
    offline_notified: Mapped[bool] = mapped_column(Boolean, default=False,
                                                   server_default=false())
    # Provisioning life cycle (provisioning/cli.py): flashed over USB, key rotated,
    # revoked. Ingest refuses a revoked device by its status alone.
    flashed_at: Mapped[datetime | None] = mapped_column(DateTime)
    flashed_firmware: Mapped[str | None] = mapped_column(String(50))
    key_rotated_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(200))

    household: Mapped[Household | None] = relationship(back_populates="devices")
    slots: Mapped[list[Slot]] = relationship(
        back_populates="device", order_by="Slot.index", cascade="all, delete-orphan"
    )


class Slot(Base):
    """What one button or sensor channel of a device reorders."""

    __tablename__ = "slots"
    __table_args__ = (UniqueConstraint("device_pk", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    index: Mapped[int] = mapped_column(Integer)
    product_sku: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    kind: Mapped[str] = mapped_column(String(20), default="button",  # button | sensor
                                      server_default="button")
    safety_days: Mapped[float] = mapped_column(Float, default=2.0,  # sensor safety stock
                                               server_default="2.0")
    # Consent (docs/orders.md): the price per pack the household agreed to for this
    # product; an order above it (plus the household's tolerance) waits for them.
    confirmed_price_minor: Mapped[int | None] = mapped_column(Integer)
    confirmed_currency: Mapped[str | None] = mapped_column(String(3))
    # Sensor slots, in the product's unit: order when the level falls below the floor
    # (even before the forecast has data); order enough whole packs to reach the target.
    min_level: Mapped[int | None] = mapped_column(BigInteger)
    target_level: Mapped[int | None] = mapped_column(BigInteger)

    device: Mapped[Device] = relationship(back_populates="slots")


class Event(Base):
    """An authenticated event and the answer it got (replayed for retransmissions)."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("device_pk", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[int] = mapped_column(Integer)
    slot: Mapped[int] = mapped_column(Integer)
    qty: Mapped[int | None] = mapped_column(Integer)
    remaining: Mapped[int | None] = mapped_column(BigInteger)
    battery_mv: Mapped[int | None] = mapped_column(Integer)
    tag: Mapped[bytes] = mapped_column(LargeBinary(32))
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    result: Mapped[int] = mapped_column(Integer)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    order_state: Mapped[str | None] = mapped_column(String(20))
    blocked: Mapped[int | None] = mapped_column(Integer)  # policies.Blocked


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        # The lead-time estimate (backend/orders/sensors.py) and ingest's open-order
        # lookup per batch (backend/ingest/batch_sql.py).
        Index("ix_orders_product_delivered", "product_sku", "delivered_at"),
        Index("ix_orders_device_slot", "device_pk", "slot_index"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    slot_index: Mapped[int] = mapped_column(Integer)
    product_sku: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(20), default="press",  # press | sensor
                                        server_default="press")
    is_test: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    unit_price_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    total_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    hold_until: Mapped[datetime | None] = mapped_column(DateTime)
    merchant: Mapped[str | None] = mapped_column(String(50))
    merchant_ref: Mapped[str | None] = mapped_column(String(100))
    failure_reason: Mapped[str | None] = mapped_column(String(50))
    placed_at: Mapped[datetime | None] = mapped_column(DateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Snapshot of the product as ordered (the catalogue may change afterwards); prices
    # above are minor units of `currency`.
    product_name: Mapped[str | None] = mapped_column(String(200))
    product_brand: Mapped[str | None] = mapped_column(String(100))
    pack_amount: Mapped[int | None] = mapped_column(Integer)
    pack_unit: Mapped[str | None] = mapped_column(String(10))
    currency: Mapped[str | None] = mapped_column(String(3))
    # Why it waits (or waited) for the household: price_increased | unavailable.
    consent_reason: Mapped[str | None] = mapped_column(String(30))
    confirmed_price_minor: Mapped[int | None] = mapped_column(Integer)  # the slot's, then

    history: Mapped[list[OrderTransition]] = relationship(
        back_populates="order", order_by="OrderTransition.id"
    )


class OrderTransition(Base):
    """Audit trail: every state change of an order, when and by whom."""

    __tablename__ = "order_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(String(200))

    order: Mapped[Order] = relationship(back_populates="history")


class Product(Base):
    """The catalogue: what a slot can reorder, at what price, in which unit.

    Managed by operators (backend/orders/catalogue.py: API, CLI, CSV import); a merchant
    adapter updates price and availability. `price_cents` is the price of one pack in
    minor units of `currency` (ISO 4217: cents for EUR, yen for JPY), whatever its name.
    """

    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(String(10), default="pcs")  # g | ml | doses | pcs
    package_amount: Mapped[int] = mapped_column(Integer, default=1)  # units per package
    price_cents: Mapped[int] = mapped_column(Integer)
    default_lead_days: Mapped[float] = mapped_column(Float, default=3.0)
    brand: Mapped[str | None] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3), default="EUR", server_default="EUR")
    gtin: Mapped[str | None] = mapped_column(String(14), unique=True)
    image_url: Mapped[str | None] = mapped_column(String(500))
    available: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)


class OutboxItem(Base):
    """A side effect written with the state change that causes it (transactional outbox)."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    payload: Mapped[str] = mapped_column(Text)  # JSON
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending|done|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(DateTime)


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    message: Mapped[str] = mapped_column(String(500))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    device_pk: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(DateTime)


class SimStock(Base):
    """The built-in warehouse's stock per product."""

    __tablename__ = "sim_stock"

    sku: Mapped[str] = mapped_column(String(100), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer)
    restock_at: Mapped[datetime | None] = mapped_column(DateTime)


class SimOrder(Base):
    """The built-in warehouse's side of an order, keyed by the idempotency key."""

    __tablename__ = "sim_orders"

    idempotency_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    sku: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)
    # Indexed: the simulator picks the orders still moving every round.
    status: Mapped[str] = mapped_column(String(20), index=True)  # accepted|...|delivered
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class MerchantCallback(Base):
    """Callback event ids already applied: a replayed callback is refused."""

    __tablename__ = "merchant_callbacks"
    __table_args__ = (UniqueConstraint("merchant", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant: Mapped[str] = mapped_column(String(50))
    event_id: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class WebSession(Base):
    """A logged-in browser. The cookie holds a random id; only its SHA-256 is here.
    A new id at every log-in (no session fixation); log-out deletes the row."""

    __tablename__ = "web_sessions"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


# -- Fleet: status history, firmware releases, rollouts (docs/fleet.md) ---------------

class DeviceStatus(Base):
    """One status heartbeat, as reported (the device row keeps last seen and the latest
    battery, firmware and dropped count)."""

    __tablename__ = "device_status"
    __table_args__ = (Index("ix_device_status_device_at", "device_pk", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    battery_mv: Mapped[int | None] = mapped_column(Integer)
    fw_version: Mapped[str | None] = mapped_column(String(50))
    rssi_dbm: Mapped[int | None] = mapped_column(Integer)
    queued: Mapped[int | None] = mapped_column(Integer)
    dropped: Mapped[int | None] = mapped_column(Integer)
    wakes: Mapped[int | None] = mapped_column(BigInteger)
    ota: Mapped[int | None] = mapped_column(Integer)  # protocol.OtaReport
    release_id: Mapped[int | None] = mapped_column(Integer)


class Release(Base):
    """A signed firmware release for a model, and who it goes to.

    `manifest` is the signed envelope the devices verify (Ed25519 under the
    manufacturer key); the backend never holds that private key."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("model", "build"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(50))
    version: Mapped[str] = mapped_column(String(50))
    build: Mapped[int] = mapped_column(Integer)  # devices take only newer builds
    manifest: Mapped[bytes] = mapped_column(LargeBinary)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    percent: Mapped[int] = mapped_column(Integer, default=100, server_default="100")
    state: Mapped[str] = mapped_column(String(20), default="active",  # active | paused
                                       server_default="active")
    paused_reason: Mapped[str | None] = mapped_column(String(200))
    max_failures: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    min_battery_mv: Mapped[int] = mapped_column(Integer, default=2600, server_default="2600")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ReleaseFile(Base):
    """One compiled module of a release, served over CoAP Block2 (GET /fw/<id>/<path>)."""

    __tablename__ = "release_files"
    __table_args__ = (UniqueConstraint("release_id", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    path: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)


class DeviceUpdate(Base):
    """Where one device stands with one release: offered, installed, rolled_back, refused."""

    __tablename__ = "device_updates"
    __table_args__ = (UniqueConstraint("release_id", "device_pk"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    state: Mapped[str] = mapped_column(String(20))
    offers: Mapped[int] = mapped_column(Integer, default=0)
    offered_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
