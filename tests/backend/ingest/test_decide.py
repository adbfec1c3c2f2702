"""The event decision (backend/ingest/decide.py) called directly on a migrated database,
without aiocoap or the writer process: every refusal, the sequence rules, what an
accepted event records and which order it leads to. Fast: `make mutate` runs these for
the module; the same rules over real CoAP are in test_ingest.py."""

from __future__ import annotations

import dataclasses
import secrets

import pytest
from sqlalchemy import select

from backend import protocol
from backend.accounts import devices, households
from backend.accounts.keys import Keyring
from backend.ingest.decide import UNAUTHORIZED_TEXT, IngestConfig, decide
from backend.orders.policies import Blocked
from backend.protocol import Kind, Result, WireEvent
from backend.storage.models import (Batch, Device, DeviceStatus, Event, Notification,
                                    Order, OrderTransition)
from tests.conftest import DATABASES

pytestmark = pytest.mark.parametrize("db_url", DATABASES, indirect=True)

DEVICE_ID = "00112233445566dd"
KID = bytes.fromhex(DEVICE_ID)
LOW_MV = IngestConfig().low_battery_mv


@pytest.fixture
def keyring(settings):
    return Keyring(bytes.fromhex(settings.kek_hex))


@pytest.fixture
def key():
    return secrets.token_bytes(32)


@pytest.fixture
def home(sessions, keyring, key):
    """A household (no hold window, no limits) owning the device; slot 0 orders two
    DETERGENT-1L, slot 1 is a detergent sensor with a floor at 500 g."""
    with sessions() as session, session.begin():
        household, _ = households.create(session, "decide")
        household.hold_window_s, household.max_orders_per_day = 0, None
        batch = Batch(name="decide", model="button", count=1, firmware_version="0",
                      created_by="test")
        session.add(batch)
        session.flush()
        device = Device(device_id=DEVICE_ID, serial="decide-00001", model="button",
                        batch_id=batch.id, wrapped_key=keyring.wrap(DEVICE_ID, key),
                        claim_code_sha256="d" * 64, household_id=household.id)
        session.add(device)
        session.flush()
        devices.configure_slot(session, device, 0, "DETERGENT-1L", 2)
        devices.configure_slot(session, device, 1, "DETERGENT-2KG", 1, kind="sensor",
                               min_level=500)
        return household.id, device.id


def event(key, seq, kind=Kind.PRESS, slot=0, **extra) -> bytes:
    return protocol.encode_event(key, KID, WireEvent(seq=seq, kind=kind, slot=slot, **extra))


def send(sessions, keyring, request, config=None):
    with sessions() as session, session.begin():
        return decide(session, keyring, request, config)


def answer(key, request, reply) -> protocol.Answer:
    assert reply.authenticated
    got = protocol.decode_answer(key, protocol.parse_signed_event(request).tag, reply.payload)
    assert got.result is reply.result
    return got


def device_row(sessions) -> Device:
    with sessions() as session:
        device = session.scalars(select(Device).where(Device.device_id == DEVICE_ID)).one()
        session.expunge(device)
        return device


def rows(sessions, model, *where):
    with sessions() as session:
        found = session.scalars(select(model).where(*where).order_by(model.id)).all()
        session.expunge_all()
        return found


def test_a_press_creates_an_order_and_records_everything_the_event_said(
        sessions, keyring, key, home):
    request = event(key, 1, qty=3, remaining=40, battery_mv=LOW_MV + 500, fw="0.3.1",
                    dropped=4)
    reply = send(sessions, keyring, request)
    got = answer(key, request, reply)
    (order,) = rows(sessions, Order)
    assert (got.seq, got.result, got.order, got.state, got.blocked, got.last_seq) == (
        1, Result.CREATED, order.id, "confirmed", None, None)
    assert (order.household_id, order.device_pk, order.slot_index, order.source,
            order.quantity, order.product_sku, order.is_test) == (
        home[0], home[1], 0, "press", 3, "DETERGENT-1L", False)
    assert rows(sessions, OrderTransition)[0].actor == f"device:{DEVICE_ID}"
    (row,) = rows(sessions, Event)
    assert (row.device_pk, row.seq, row.kind, row.slot, row.qty, row.remaining,
            row.battery_mv, row.result, row.order_id, row.order_state, row.blocked) == (
        home[1], 1, int(Kind.PRESS), 0, 3, 40, LOW_MV + 500, int(Result.CREATED),
        order.id, "confirmed", None)
    assert row.tag == protocol.parse_signed_event(request).tag
    assert row.received_at is not None
    device = device_row(sessions)
    assert (device.last_seq, device.battery_mv, device.fw_version, device.dropped_events,
            device.offline_notified) == (1, LOW_MV + 500, "0.3.1", 4, False)
    assert device.last_seen_at is not None
    assert rows(sessions, Notification, Notification.kind == "low_battery") == []


def test_without_qty_the_slot_quantity_and_a_hold_window_leaves_it_pending(
        sessions, keyring, key, home):
    with sessions() as session, session.begin():
        session.get(Device, home[1]).household.hold_window_s = 60
        session.get(Device, home[1]).test_mode = True
    request = event(key, 1)
    got = answer(key, request, send(sessions, keyring, request))
    (order,) = rows(sessions, Order)
    assert (got.result, got.state, order.quantity, order.is_test) == (
        Result.CREATED, "pending", 2, True)


def test_fields_the_event_leaves_out_leave_the_device_as_it_was(sessions, keyring, key,
                                                                  home):
    with sessions() as session, session.begin():
        device = session.get(Device, home[1])
        device.battery_mv, device.fw_version, device.dropped_events = 2900, "0.1.0", 7
        device.offline_notified = True
    send(sessions, keyring, event(key, 1, kind=Kind.STATUS))
    device = device_row(sessions)
    assert (device.battery_mv, device.fw_version, device.dropped_events,
            device.offline_notified) == (2900, "0.1.0", 7, False)


def test_an_event_has_one_time_its_device_row_event_row_and_status_row_share(
        sessions, keyring, key, home):
    send(sessions, keyring, event(key, 1, kind=Kind.STATUS, battery_mv=LOW_MV + 500))
    (recorded,), (status,) = rows(sessions, Event), rows(sessions, DeviceStatus)
    assert device_row(sessions).last_seen_at == recorded.received_at == status.received_at


def test_a_second_press_gets_the_open_order_unless_the_household_allows_more(
        sessions, keyring, key, home):
    first = event(key, 1)
    created = answer(key, first, send(sessions, keyring, first))
    second = event(key, 2)
    again = answer(key, second, send(sessions, keyring, second))
    assert (again.result, again.order, again.state) == (Result.VALID, created.order,
                                                        "confirmed")
    other_slot = event(key, 3, slot=2)  # nothing configured there
    assert answer(key, other_slot, send(sessions, keyring, other_slot)) == protocol.Answer(
        seq=3, result=Result.CHANGED)
    with sessions() as session, session.begin():
        session.get(Device, home[1]).household.allow_multiple_open = True
    third = event(key, 4)
    more = answer(key, third, send(sessions, keyring, third))
    assert more.result is Result.CREATED and more.order != created.order
    assert len(rows(sessions, Order)) == 2


@pytest.mark.parametrize("kind", [Kind.BOOT, Kind.STATUS])
def test_boot_and_status_never_order(sessions, keyring, key, home, kind):
    request = event(key, 1, kind=kind)
    assert answer(key, request, send(sessions, keyring, request)).result is Result.CHANGED
    assert rows(sessions, Order) == []
    assert rows(sessions, Event)[0].kind == int(kind)


def test_a_level_below_the_floor_orders_once_and_only_on_a_sensor_slot(
        sessions, keyring, key, home):
    def level(seq, slot, remaining):
        request = event(key, seq, kind=Kind.LEVEL, slot=slot, remaining=remaining)
        return answer(key, request, send(sessions, keyring, request))

    with sessions() as session, session.begin():  # a floor it would cross on a sensor
        devices.configure_slot(session, session.get(Device, home[1]), 0, "DETERGENT-1L", 2,
                               min_level=500)
    assert level(1, 0, 10).result is Result.CHANGED  # a button slot never orders on levels
    assert level(2, 1, 1500).result is Result.CHANGED
    assert level(3, 1, 100).result is Result.CHANGED  # one knock below the floor: no order
    assert rows(sessions, Order) == []
    got = level(4, 1, 90)  # the second reading below the floor
    (order,) = rows(sessions, Order)
    assert (got.result, got.order, order.source, order.slot_index, order.quantity) == (
        Result.CREATED, order.id, "sensor", 1, 1)
    assert level(5, 1, 50) == protocol.Answer(seq=5, result=Result.CHANGED)  # one is open
    press_on_sensor = event(key, 6, slot=1)
    assert answer(key, press_on_sensor, send(sessions, keyring, press_on_sensor)).result \
        is Result.VALID


def test_a_level_on_a_sensor_with_a_target_orders_the_packs_missing(sessions, keyring, key,
                                                                       home):
    with sessions() as session, session.begin():
        device = session.get(Device, home[1])
        devices.configure_slot(session, device, 1, "DETERGENT-2KG", 1, kind="sensor",
                               min_level=500, target_level=6000)
    low = event(key, 1, kind=Kind.LEVEL, slot=1, remaining=100)  # the first reading
    assert answer(key, low, send(sessions, keyring, low)).result is Result.CREATED
    (order,) = rows(sessions, Order)
    assert order.quantity == 3  # (6000 - 100) g in 2 kg packs, rounded up


def test_a_press_over_the_daily_limit_is_recorded_blocked_and_the_household_told(
        sessions, keyring, key, home):
    with sessions() as session, session.begin():
        session.get(Device, home[1]).household.max_orders_per_day = 0
        session.get(Device, home[1]).name = "Laundry"
    request = event(key, 1, qty=3)
    got = answer(key, request, send(sessions, keyring, request))
    assert (got.result, got.order, got.state, got.blocked) == (
        Result.CHANGED, None, None, int(Blocked.DAILY_LIMIT))
    assert rows(sessions, Order) == []
    assert rows(sessions, Event)[0].blocked == int(Blocked.DAILY_LIMIT)
    (note,) = rows(sessions, Notification, Notification.kind == "order_blocked")
    assert (note.household_id, note.device_pk) == (home[0], home[1])
    assert note.message == ("Laundry: no order for 3 x Laundry detergent, "
                            "daily limit reached.")
    retransmitted = answer(key, request, send(sessions, keyring, request))
    assert retransmitted == got


def test_a_retransmission_gets_the_same_answer_and_changes_nothing(sessions, keyring, key,
                                                                    home):
    request = event(key, 5)
    first = answer(key, request, send(sessions, keyring, request))
    assert answer(key, request, send(sessions, keyring, request)) == first
    assert (len(rows(sessions, Order)), len(rows(sessions, Event))) == (1, 1)


def test_an_old_or_equal_seq_with_another_tag_is_a_conflict_with_the_last_seq(
        sessions, keyring, key, home):
    # Same seq, other content: one replay whose tag sorts below the stored one and one
    # above (only equal tags are a retransmission). The stored event is the median of
    # three by tag, so both sides exist whatever the random key makes of the tags.
    below, first, above = sorted((event(key, 5, slot=n) for n in range(3)),
                                 key=lambda r: protocol.parse_signed_event(r).tag)
    send(sessions, keyring, first)
    for request in (below, above, event(key, 4, slot=1)):
        seq = protocol.parse_signed_event(request)  # the answer echoes the seq sent
        expected = protocol.Answer(seq=protocol.decode_event(seq.payload).seq,
                                   result=Result.CONFLICT, last_seq=5)
        assert answer(key, request, send(sessions, keyring, request)) == expected
    never_seen = event(key, 3)  # below last_seq, no earlier event with this seq
    assert answer(key, never_seen, send(sessions, keyring, never_seen)).result \
        is Result.CONFLICT
    following = event(key, 6, kind=Kind.STATUS)
    assert answer(key, following, send(sessions, keyring, following)).result \
        is Result.CHANGED
    assert device_row(sessions).last_seq == 6


def test_a_revoked_device_is_forbidden_and_its_seq_not_consumed(sessions, keyring, key,
                                                                 home):
    with sessions() as session, session.begin():
        session.get(Device, home[1]).status = "revoked"
    request = event(key, 1)
    assert answer(key, request, send(sessions, keyring, request)) == protocol.Answer(
        seq=1, result=Result.FORBIDDEN)
    assert device_row(sessions).last_seq == 0
    assert rows(sessions, Event) == []


def test_an_unclaimed_device_is_forbidden_and_its_seq_consumed(sessions, keyring, key,
                                                                home):
    with sessions() as session, session.begin():
        session.get(Device, home[1]).household_id = None
    request = event(key, 1, battery_mv=LOW_MV - 1)
    assert answer(key, request, send(sessions, keyring, request)) == protocol.Answer(
        seq=1, result=Result.FORBIDDEN)
    device = device_row(sessions)
    assert (device.last_seq, device.last_seen_at, device.battery_mv) == (1, None, None)
    assert rows(sessions, Event) == []


def test_each_decision_is_one_debug_line_with_its_order_if_any(sessions, keyring, key, home,
                                                              caplog):
    """The decision's DEBUG line (only built when DEBUG is on: it costs a few us per
    event), for an event that ordered and for one that did not."""
    with caplog.at_level("DEBUG", logger="backend.ingest.decide"):
        created = answer(key, request := event(key, 1), send(sessions, keyring, request))
        send(sessions, keyring, event(key, 2, kind=Kind.STATUS))
    lines = [r.getMessage() for r in caplog.records if r.name == "backend.ingest.decide"
             and r.levelname == "DEBUG"]
    assert lines == [f"device {DEVICE_ID} seq 1 press: 2.01 ordered (order {created.order})",
                     f"device {DEVICE_ID} seq 2 status: 2.04 recorded"]


def test_refusals_before_the_mac_is_checked(sessions, keyring, key, home, caplog):
    reply = send(sessions, keyring, b"\xa1\x01")
    assert (reply.result, reply.authenticated) == (Result.BAD_REQUEST, False)
    assert reply.payload.decode() in caplog.text
    stranger = protocol.encode_event(key, b"\x99" * 8, WireEvent(seq=1, kind=Kind.PRESS,
                                                                  slot=0))
    assert send(sessions, keyring, stranger) == protocol_reply(Result.UNAUTHORIZED,
                                                               UNAUTHORIZED_TEXT)
    wrong_key = protocol.encode_event(secrets.token_bytes(32), KID,
                                      WireEvent(seq=1, kind=Kind.PRESS, slot=0))
    assert send(sessions, keyring, wrong_key) == protocol_reply(Result.UNAUTHORIZED,
                                                                UNAUTHORIZED_TEXT)
    other_kek = Keyring(secrets.token_bytes(32))
    assert send(sessions, other_kek, event(key, 1)) == protocol_reply(
        Result.UNAVAILABLE, "server key error")
    assert device_row(sessions).last_seq == 0
    assert rows(sessions, Event) == []


def protocol_reply(result, text):
    from backend.ingest.reply import Reply
    return Reply.text(result, text)


def test_a_signed_event_that_does_not_decode(sessions, keyring, key, home):
    import cbor2

    def signed(fields) -> bytes:
        return protocol._mac0(key, {protocol._HDR_KID: KID},
                              cbor2.dumps(fields, canonical=True), b"")

    unknown_kind = signed({1: 7, 2: 99, 3: 0})
    reply = send(sessions, keyring, unknown_kind)
    assert answer(key, unknown_kind, reply) == protocol.Answer(seq=7,
                                                               result=Result.BAD_REQUEST)
    no_seq = send(sessions, keyring, signed({2: 99, 3: 0}))
    assert (no_seq.result, no_seq.authenticated) == (Result.BAD_REQUEST, False)
    assert device_row(sessions).last_seq == 0
    assert rows(sessions, Event) == []


def test_low_battery_is_told_once_and_again_after_new_batteries(sessions, keyring, key,
                                                                 home):
    def status(seq, mv):
        send(sessions, keyring, event(key, seq, kind=Kind.STATUS, battery_mv=mv))
        notes = rows(sessions, Notification, Notification.kind == "low_battery")
        return len(notes), device_row(sessions).low_battery_notified

    assert status(1, LOW_MV + 300) == (0, False)
    assert status(2, LOW_MV) == (0, False)  # at the threshold: not low yet
    assert status(3, LOW_MV - 1) == (1, True)
    note = rows(sessions, Notification, Notification.kind == "low_battery")[0]
    assert (note.household_id, note.device_pk) == (home[0], home[1])
    assert note.message == f"decide-00001: battery low ({LOW_MV - 1} mV), replace it soon."
    assert status(4, LOW_MV - 50) == (1, True)  # told once
    assert status(5, LOW_MV + 199) == (1, True)  # within the hysteresis: not reset
    assert status(6, LOW_MV + 200) == (1, False)  # new batteries
    assert status(7, LOW_MV - 1) == (2, True)
    assert status(8, LOW_MV + 250) == (2, False)
    assert status(9, LOW_MV - 1) == (3, True)
    # Low under a configured threshold of LOW_MV + 1000 (the default would reset it).
    send(sessions, keyring, event(key, 10, kind=Kind.STATUS, battery_mv=LOW_MV + 300),
         IngestConfig(low_battery_mv=LOW_MV + 1000))
    assert device_row(sessions).low_battery_notified is True


def test_the_ingest_config_cannot_be_changed_by_one_decision(db_url):
    """One IngestConfig serves every decision of a writer: none may alter it."""
    config = IngestConfig(low_battery_mv=LOW_MV)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.low_battery_mv = 0
    assert config == IngestConfig() and hash(config) == hash(IngestConfig())
